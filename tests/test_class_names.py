"""Class names end to end: read from folders, CSVs, .npz files and named sets, kept by a run in
classes.json, shown in tables and figures and taken by ``--label``, and the estimator's
``classes_``."""

import csv
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from cli_runner import run_cli, user_error
from vaekit.cli import main
from vaekit.data import classes, load_raw
from vaekit.data.datasets import CLASS_NAMES
from vaekit.draw import figures
from vaekit.errors import ConfigError, DataError

TINY = ["--hidden", "16", "--latent-dim", "2", "--epochs", "1", "--quiet", "--batch-size", "16"]
#: Folder names of every kind: plain, spaces, a comma, quotes, unicode, names that are numbers
#: (sorted as text: "10" before "2"), a dollar sign (matplotlib's math), and a name whose bytes
#: are not UTF-8 (added where the file system allows it).
FOLDERS = ["bag", "ankle boot", "a,b", 'say "hi"', "größe 日本", "10", "2", "$5 $6"]
NOT_UTF8 = b"caf\xe9"


def write_images(folder, n, rng, size=8):
    os.makedirs(os.fsencode(folder), exist_ok=True)
    for i in range(n):
        pixels = rng.integers(0, 256, size=(size, size), dtype=np.uint8)
        Image.fromarray(pixels).save(
            os.fsdecode(os.path.join(os.fsencode(folder), b"%02d.png" % i))
        )


def class_folder(root, names, rng, per_class=6):
    """A folder of tiny grey images, one sub-folder per name (str, or bytes for a raw name)."""
    for name in names:
        path = os.path.join(os.fsencode(root), name if isinstance(name, bytes) else name.encode())
        write_images(path, per_class, rng)
    return root


def folder_names(tmp_path) -> list:
    """FOLDERS, and NOT_UTF8 when the file system takes that name."""
    try:
        os.mkdir(os.path.join(os.fsencode(tmp_path), NOT_UTF8))
        os.rmdir(os.path.join(os.fsencode(tmp_path), NOT_UTF8))
    except OSError:
        return list(FOLDERS)
    return [*FOLDERS, NOT_UTF8]


def expected_names(names) -> tuple:
    """The names a run keeps for these folders, in code order (sorted by file name)."""
    as_str = sorted(os.fsdecode(n) if isinstance(n, bytes) else n for n in names)
    return tuple(classes.as_text(n) for n in as_str)


@pytest.fixture(scope="module")
def named_run(tmp_path_factory):
    """A conditional 1-epoch run on a folder whose class sub-folders have every kind of name."""
    root = tmp_path_factory.mktemp("names")
    names = folder_names(root)
    data = class_folder(root / "data", names, np.random.default_rng(0))
    run = root / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--conditional", *TINY]) == 0
    return run, data, expected_names(names)


def read_csv(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_the_run_keeps_the_folder_names_code_by_code(named_run):
    run, _, names = named_run
    record = json.loads((run / "classes.json").read_text(encoding="utf-8"))
    assert [e["name"] for e in record["classes"]] == list(names)
    assert classes.load(run) == names
    assert json.loads((run / "config.json").read_text())["model"]["n_classes"] == len(names)


def test_encode_and_score_write_the_class_names(named_run, capsys, tmp_path):
    run, _, names = named_run
    out = tmp_path / "latents.csv"
    code, _, err = run_cli(capsys, "encode", run, "--split", "all", "--out", out)
    assert code == 0, err
    labels = [row["label"] for row in read_csv(out.read_text(encoding="utf-8"))]
    assert sorted(set(labels)) == sorted(names) and labels == [n for n in names for _ in range(6)]
    code, text, err = run_cli(capsys, "score", run, run.parent / "data", "--iw-samples", "2")
    assert code == 0, err
    assert [row["label"] for row in read_csv(text)] == labels
    npz = tmp_path / "latents.npz"
    assert run_cli(capsys, "encode", run, "--split", "all", "--out", npz)[0] == 0
    with np.load(npz, allow_pickle=False) as stored:
        assert stored["classes"].tolist() == list(names)
        assert stored["classes"][stored["y"]].tolist() == labels


def test_sample_takes_each_class_by_name(named_run, capsys, tmp_path):
    run, _, names = named_run
    for code, name in enumerate(names):
        by_name, by_number = tmp_path / f"{code}-name.npy", tmp_path / f"{code}-number.npy"
        assert run_cli(capsys, "sample", run, "-n", "3", "--label", name, "--npy", by_name)[0] == 0
        assert (
            run_cli(capsys, "sample", run, "-n", "3", "--label", code, "--npy", by_number)[0] == 0
        )
        # "2" is the name of a class whose code is not 2: the name wins, so compare by code.
        if name not in [str(c) for c in range(len(names))]:
            assert np.array_equal(np.load(by_name), np.load(by_number))
    assert (run / f"samples-label{names.index('bag')}-n3-seed0.png").is_file()


def test_traverse_takes_a_class_by_name(named_run, capsys, tmp_path):
    run, _, _ = named_run
    out = tmp_path / "t.npy"
    code, _, err = run_cli(capsys, "traverse", run, "--label", "ankle boot", "--npy", out)
    assert code == 0, err


@pytest.mark.parametrize("command", ["sample", "traverse"])
@pytest.mark.parametrize("label", ["Bag", "shoe", "99", "-1", ""])
def test_an_unknown_label_is_one_line_naming_the_choices(named_run, capsys, command, label):
    run, _, names = named_run
    line = user_error(capsys, command, run, "--label", label)
    assert f"--label {label!r} is not one of this model's classes" in line
    assert names[0] in line


def test_the_scatter_legend_names_the_classes(named_run):
    _, _, names = named_run
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(len(names)), 5)
    fig, _ = figures.latent_scatter(rng.standard_normal((len(labels), 2)), labels, names=names)
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [figures.plain(n) for n in names]
    fig, _ = figures.latent_scatter(rng.standard_normal((len(labels), 2)), labels)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts == [str(c) for c in range(len(names))]  # without names: the numbers


def test_a_folder_with_some_of_the_classes_gets_the_runs_codes(named_run, capsys, tmp_path):
    run, _, names = named_run
    part = class_folder(tmp_path / "part", ['say "hi"', "bag"], np.random.default_rng(2), 2)
    out = tmp_path / "part.npz"
    code, _, err = run_cli(capsys, "encode", run, "--data", part, "--out", out)
    assert code == 0, err
    with np.load(out) as stored:
        assert stored["y"].tolist() == [names.index("bag")] * 2 + [names.index('say "hi"')] * 2
    other = class_folder(tmp_path / "other", ["hat"], np.random.default_rng(3), 2)
    line = user_error(capsys, "encode", run, "--data", other, "--out", tmp_path / "o.npz")
    assert "'hat', which the run does not know" in line


def test_resuming_on_renamed_class_folders_is_refused(tmp_path, capsys):
    data = class_folder(tmp_path / "data", ["cat", "dog"], np.random.default_rng(4))
    run = tmp_path / "run"
    assert run_cli(capsys, "train", "--data", data, "--out", run, *TINY)[0] == 0
    os.rename(data / "dog", data / "wolf")
    before = (run / "classes.json").read_bytes()
    line = user_error(capsys, "train", "--resume", "--out", run, "--epochs", "2")
    assert "cat, wolf" in line and "cat, dog" in line
    assert (run / "classes.json").read_bytes() == before


def test_a_csv_of_class_names(tmp_path, capsys):
    rows = ["a,b,label"] + [
        f"{i % 3},{i % 5}, {['zebra', 'ant', 'ant,x'][i % 3]} " for i in range(30)
    ]
    rows = [rows[0]] + [r.replace(" ant,x ", '"ant,x"') for r in rows[1:]]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    raw = load_raw(str(tmp_path / "t.csv"))
    assert raw.classes == ("ant", "ant,x", "zebra")
    assert raw.y[:3].tolist() == [2, 0, 1] and raw.x.shape == (30, 2)
    run = tmp_path / "run"
    argv = ["train", "--data", tmp_path / "t.csv", "--out", run, "--scale", "minmax", *TINY]
    assert run_cli(capsys, *argv)[0] == 0
    assert classes.load(run) == ("ant", "ant,x", "zebra")


def test_a_csv_still_refuses_words_among_its_features(tmp_path):
    (tmp_path / "t.csv").write_text("a,label\n1,cat\nx,dog\n")
    with pytest.raises(DataError, match="line 3 column 1 .'a'. holds 'x', which is not a number"):
        load_raw(str(tmp_path / "t.csv"))
    (tmp_path / "e.csv").write_text("a,label\n1,cat\n2, \n")
    with pytest.raises(DataError, match="line 3 column 2 has no label"):
        load_raw(str(tmp_path / "e.csv"))


def test_an_npz_names_its_classes(tmp_path):
    x, y = np.zeros((4, 3), np.float32), np.array([1, 0, 1, 2])
    np.savez(tmp_path / "d.npz", x=x, y=y, classes=np.array(["cat", "dog", "emu"]))
    raw = load_raw(str(tmp_path / "d.npz"))
    assert raw.classes == ("cat", "dog", "emu") and raw.y.tolist() == [1, 0, 1, 2]
    np.savez(tmp_path / "few.npz", x=x, y=y, classes=np.array(["cat", "dog"]))
    with pytest.raises(DataError, match="label 2 but names only 2 classes"):
        load_raw(str(tmp_path / "few.npz"))
    np.savez(tmp_path / "num.npz", x=x, y=y, classes=np.arange(3))
    with pytest.raises(DataError, match="1-D array of strings"):
        load_raw(str(tmp_path / "num.npz"))


def test_named_sets_name_their_classes(mnist_small):
    assert load_raw("mnist-small").classes == tuple("0123456789")
    assert CLASS_NAMES["fashion-mnist"][7] == "Sneaker" and len(CLASS_NAMES["fashion-mnist"]) == 10
    assert load_raw("shapes-small").classes is None  # no labels: its factors are no classes


LABEL_KINDS = [
    ("strings", np.array(["sneaker", "bag", "coat"])),
    ("ints", np.array([3, 7, 11])),
    ("codes", np.array([0, 1, 2])),
    ("floats", np.array([0.5, 1.5, 2.5])),
    ("series", "pandas"),
]


@pytest.mark.parametrize(("kind", "values"), LABEL_KINDS)
def test_the_estimator_keeps_its_classes(kind, values, tmp_path):
    from vaekit.api.estimator import VAE

    rng = np.random.default_rng(5)
    x = rng.random((60, 6)).astype(np.float32)
    if kind == "series":
        pandas = pytest.importorskip("pandas")
        values = np.array(["b", "a", "c"], dtype=object)
        y = pandas.Series(values[np.arange(60) % 3])
    else:
        y = values[np.arange(60) % 3]
    vae = VAE(hidden=(8,), latent_dim=2, conditional=True, epochs=1, batch_size=20)
    vae.fit(x, y)
    expected = np.unique(np.asarray(y))
    assert vae.classes_.tolist() == expected.tolist() and vae.model_config_.n_classes == 3
    name = str(expected[1].item() if hasattr(expected[1], "item") else expected[1])
    assert vae.sample(2, labels=expected[1]).shape == (2, 6)
    assert vae.transform(x[:4], np.asarray(y)[:4]).shape == (4, 2)
    vae.save(tmp_path / "m")
    assert classes.load(tmp_path / "m")[1] == name
    loaded = VAE.load(tmp_path / "m")
    assert loaded.classes_.tolist() == vae.classes_.tolist()
    assert loaded.classes_.dtype.kind == vae.classes_.dtype.kind or kind == "series"
    np.testing.assert_array_equal(
        loaded.sample(2, seed=1, labels=expected[1]), vae.sample(2, seed=1, labels=expected[1])
    )
    with pytest.raises(ConfigError, match="not one of this model"):
        vae.sample(2, labels="no such class")


def test_the_estimator_of_a_digit_run_takes_digits_as_numbers(tmp_path, capsys):
    from vaekit.api.estimator import VAE

    run = tmp_path / "run"
    argv = ["train", "--data", "mnist-small", "--out", run, "--conditional", *TINY[:-2]]
    assert run_cli(capsys, *argv, "--batch-size", "500")[0] == 0
    assert classes.load(run) == tuple("0123456789")
    vae = VAE.load(run)
    assert vae.classes_.tolist() == list(range(10))
    assert vae.sample(2, labels=4).shape == (2, 1, 28, 28)


def test_tensorboard_records_the_class_names_once():
    from vaekit.train.tracking import class_table

    table = class_table(["bag", "a|b", "two\nlines"])
    assert table.splitlines() == [
        "| code | name |",
        "| --- | --- |",
        "| 0 | bag |",
        "| 1 | a&#124;b |",
        "| 2 | two lines |",
    ]
