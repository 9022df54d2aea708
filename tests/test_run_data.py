"""A run and its data through the command line: paths stored absolute, --resume from anywhere
and with its own command, data directories that are only read, downloads only into the cache,
and commands that default to the run's own data set. Nothing here reaches the network."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pooch
import pytest
import requests

from vaekit.cli import main
from vaekit.data import datasets, write_idx
from vaekit.data.idx import read_idx_bytes

TINY = ["--hidden", "8", "--latent-dim", "3", "--batch-size", "20", "--quiet"]
COMMANDS_READING_DATA = ("reconstruct", "evaluate", "encode", "manifold", "scatter", "interpolate")
STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    """No network (pooch records each download it is asked for and fails it the way requests
    does, with hundreds of characters), no data directory from the environment, an empty user
    cache of the test's own, and no system copy of fashion-mnist."""
    calls = []

    def refuse(url, known_hash, fname, path, downloader):
        calls.append(url)
        raise requests.ConnectionError(
            f"HTTPSConnectionPool(host='example', port=443): Max retries exceeded with url: "
            f"{url} (Caused by NameResolutionError(...: Failed to resolve ...))" + " ..." * 120
        )

    monkeypatch.setattr(pooch, "retrieve", refuse)
    monkeypatch.delenv("VAEKIT_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    monkeypatch.setattr(datasets, "_SYSTEM_DIRS", {})
    return calls


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """``tmp_path/shared/data``, whose mnist/ holds a tiny fake MNIST (60 train, 20 test images)
    that vaekit trusts for this test."""
    root = tmp_path / "shared" / "data"
    (root / "mnist").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for images, labels, n in ((STEMS[0], STEMS[1], 60), (STEMS[2], STEMS[3], 20)):
        for stem, array in (
            (images, rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)),
            (labels, (np.arange(n) % 10).astype(np.uint8)),
        ):
            path = root / "mnist" / f"{stem}.gz"
            write_idx(path, array)
            digest = hashlib.sha256(read_idx_bytes(path)).hexdigest()
            monkeypatch.setitem(datasets._CONTENT_SHA256["mnist"], stem, digest)
    return root


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys, *argv) -> str:
    code, out, err = cli(capsys, *argv)
    assert code == 0, (out, err)
    return out


def refused(capsys, *argv) -> str:
    """The one line of a refused command (exit code 2, no traceback), without its prefix."""
    code, out, err = cli(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error: "), err
    return lines[0].removeprefix("vaekit: error: ")


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for folders)."""
    return {str(p): (p.read_bytes() if p.is_file() else None) for p in [root, *root.rglob("*")]}


def stored(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())["train"]


def epochs_done(run: Path) -> int:
    return len((run / "metrics.jsonl").read_text().splitlines())


# --- 1. runs travel ------------------------------------------------------------------------------


def test_data_paths_are_stored_absolute_and_resume_from_anywhere(
    tmp_path, monkeypatch, capsys, data_dir, offline
):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    np.save(work / "x.npy", np.random.default_rng(1).random((40, 6), dtype=np.float32))
    monkeypatch.chdir(work)
    ok(capsys, "train", "--data", "mnist", "--data-dir", "../shared/data", "--epochs", "1", *TINY,
       "--out", "named")  # fmt: skip
    ok(capsys, "train", "--data", "x.npy", "--epochs", "1", *TINY, "--out", "file")
    assert stored(work / "named")["data_dir"] == str(data_dir)
    assert stored(work / "named")["data"] == "mnist"
    assert stored(work / "file")["data"] == str(work / "x.npy")
    assert stored(work / "file")["data_dir"] is None

    monkeypatch.chdir(elsewhere)
    for run in ("named", "file"):
        ok(capsys, "train", "--resume", "--out", f"../work/{run}", "--epochs", "2", "--quiet")
        assert epochs_done(work / run) == 2
    assert list(elsewhere.iterdir()) == []  # no ../shared/data made here
    assert stored(work / "named")["data_dir"] == str(data_dir)
    assert offline == []


def test_resume_after_the_data_moved(tmp_path, monkeypatch, capsys, data_dir, offline):
    """The run's stored directory is used while it holds the data; once the data moved,
    resuming falls through to $VAEKIT_DATA_DIR and the cache, and --data-dir DIR says where
    it is now, which the run remembers."""
    monkeypatch.chdir(tmp_path)
    ok(capsys, "train", "--data", "mnist", "--data-dir", data_dir, "--epochs", "1", *TINY,
       "--out", "run")  # fmt: skip
    moved = tmp_path / "moved" / "data"
    moved.parent.mkdir()
    shutil.move(data_dir, moved)
    before = snapshot(tmp_path)

    message = refused(capsys, "train", "--resume", "--out", "run", "--epochs", "2")
    cache = datasets.resolve_data_dir() / "mnist"
    assert message.startswith(f"mnist is not in the cache {cache} and could not be downloaded")
    assert "(ConnectionError, from 3 mirrors)" in message and "--data-dir DIR" in message
    assert len(message) < 400 and "HTTPSConnectionPool" not in message
    assert len(offline) == 3  # the cache is the one place vaekit downloads to
    assert snapshot(tmp_path) == before
    assert not cache.parent.exists()  # the folders made for the download are gone again

    monkeypatch.setenv("VAEKIT_DATA_DIR", str(moved))
    ok(capsys, "train", "--resume", "--out", "run", "--epochs", "2")
    assert stored(tmp_path / "run")["data_dir"] == str(data_dir)  # the environment is not stored
    monkeypatch.delenv("VAEKIT_DATA_DIR")

    ok(capsys, "train", "--resume", "--out", "run", "--epochs", "3", "--data-dir", "moved/data")
    assert stored(tmp_path / "run")["data_dir"] == str(moved)
    ok(capsys, "train", "--resume", "--out", "run", "--epochs", "4", "--quiet")  # remembered
    assert epochs_done(tmp_path / "run") == 4
    assert len(offline) == 3


def test_old_runs_with_relative_data_paths_still_load(
    tmp_path, monkeypatch, capsys, data_dir, offline
):
    monkeypatch.chdir(tmp_path / "shared")
    ok(capsys, "train", "--data", "mnist", "--data-dir", "data", "--epochs", "1", *TINY,
       "--out", "run")  # fmt: skip
    config = json.loads((tmp_path / "shared" / "run" / "config.json").read_text())
    config["train"]["data_dir"] = "data"  # as vaekit wrote it before paths were made absolute
    (tmp_path / "shared" / "run" / "config.json").write_text(json.dumps(config))
    ok(capsys, "train", "--resume", "--out", "run", "--epochs", "2")
    assert stored(tmp_path / "shared" / "run")["data_dir"] == "data"
    monkeypatch.chdir(tmp_path)  # "data" is not here: the environment's directory is used
    monkeypatch.setenv("VAEKIT_DATA_DIR", str(data_dir))
    ok(capsys, "train", "--resume", "--out", "shared/run", "--epochs", "3")
    assert epochs_done(tmp_path / "shared" / "run") == 3
    assert offline == []


# --- 2. data directories are only read; downloads only into the cache ----------------------------


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_data_directory_without_the_set_creates_nothing(
    tmp_path, monkeypatch, capsys, data_dir, offline, how
):
    monkeypatch.chdir(tmp_path)
    ok(capsys, "train", "--data", "mnist", "--data-dir", data_dir, "--epochs", "1", *TINY,
       "--out", "run")  # fmt: skip
    (tmp_path / "other").mkdir()
    before = snapshot(tmp_path)
    for typed, root in (("typo", tmp_path / "typo"), ("other", tmp_path / "other")):
        where = ["--data-dir", typed] if how == "flag" else []
        if how == "environment":
            monkeypatch.setenv("VAEKIT_DATA_DIR", typed)
        named = "--data-dir" if how == "flag" else "$VAEKIT_DATA_DIR"
        expected = f"mnist not found in {root} ({named}): expected "
        files = "train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz"
        message = refused(capsys, "train", "--data", "mnist", *where, *TINY, "--out", "new")
        assert message.startswith(expected + files + " (or without .gz) in ")
        assert message.endswith(f"{root / 'mnist'}/")
        message = refused(capsys, "evaluate", "run", "--data", "fashion-mnist", *where)
        assert message.startswith(f"fashion-mnist not found in {root} ({named}): expected ")
        assert "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz" in message
    assert snapshot(tmp_path) == before
    assert offline == []


def test_datasets_with_a_mistyped_directory_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = ok(capsys, "datasets", "--data-dir", "typo", "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["mnist"]["present"] is False
    assert list(tmp_path.iterdir()) == []


def test_a_failed_download_is_one_short_line(tmp_path, monkeypatch, capsys, offline):
    monkeypatch.chdir(tmp_path)
    message = refused(capsys, "train", "--data", "fashion-mnist", *TINY, "--out", "run")
    cache = datasets.resolve_data_dir() / "fashion-mnist"
    assert message == (
        f"fashion-mnist is not in the cache {cache} and could not be downloaded (ConnectionError, "
        "from 2 mirrors); pass --data-dir DIR for a directory DIR whose fashion-mnist/ holds "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz; vaekit also looks in /usr/share/datasets/fashion-mnist, "
        "where 'apt-get install dataset-fashion-mnist' (Debian) puts it."
    )
    assert [url.rsplit("/", 1)[1] for url in offline] == ["train-images-idx3-ubyte.gz"] * 2
    assert list(tmp_path.iterdir()) == [] and not cache.parent.exists()


# --- 3. --resume accepts the command it continues --------------------------------------------


def test_resume_accepts_its_own_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", np.random.default_rng(1).random((40, 6), dtype=np.float32))
    first = ["train", "--data", "x.npy", "--seed", "2", "--hidden", "32", "--lr", "1e-3",
             "--decoder-hidden", "32", "--binarize", "none", "--out", "R", "--quiet"]  # fmt: skip
    ok(capsys, *first, "--epochs", "1")
    ok(capsys, *first, "--epochs", "2", "--resume")
    ok(capsys, *first, "--epochs", "3", "--resume", "--data-dir", "anywhere")
    assert epochs_done(tmp_path / "R") == 3
    monkeypatch.chdir(tmp_path / "R")  # the same file, typed from another directory
    ok(capsys, "train", "--data", "../x.npy", "--hidden", "32", "--out", ".", "--resume",
       "--epochs", "4", "--quiet")  # fmt: skip
    assert epochs_done(tmp_path / "R") == 4


def test_resume_continues_on_another_device(tmp_path, monkeypatch, capsys):
    """A run trained on a GPU (its config.json says cuda) resumes on a machine without one when
    --resume is given --device cpu; the device is a place to run, not a setting of the run."""
    monkeypatch.chdir(tmp_path)
    ok(capsys, "train", "--data", "mnist-small", "--epochs", "1", *TINY, "--out", "R")
    config = json.loads((tmp_path / "R" / "config.json").read_text())
    config["train"]["device"] = "cuda"
    (tmp_path / "R" / "config.json").write_text(json.dumps(config))
    assert "cuda" in refused(capsys, "train", "--resume", "--out", "R", "--epochs", "2")
    assert epochs_done(tmp_path / "R") == 1
    ok(capsys, "train", "--resume", "--out", "R", "--epochs", "2", "--device", "cpu", "--quiet")
    assert epochs_done(tmp_path / "R") == 2
    assert json.loads((tmp_path / "R" / "config.json").read_text())["train"]["device"] == "cpu"


def test_resume_accepts_a_preset_command(tmp_path, monkeypatch, capsys, data_dir):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--preset", "tf-mlp", "--data-dir", data_dir, "--hidden", "8", "8",
            "--latent-dim", "3", "--out", "R", "--quiet"]  # fmt: skip
    ok(capsys, *argv, "--epochs", "1")
    ok(capsys, *argv, "--epochs", "2", "--resume")
    assert epochs_done(tmp_path / "R") == 2
    message = refused(capsys, "train", "--preset", "conditional-mlp", "--out", "R", "--resume")
    assert "(from --preset conditional-mlp; the run has" in message
    assert message.endswith("--conditional (the run is unconditional)")


def test_resume_names_each_conflict_with_both_values(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ok(capsys, "train", "--data", "mnist-small", "--epochs", "1", "--seed", "2", "--hidden", "16",
       "--latent-dim", "4", "--batch-size", "500", "--out", "R", "--quiet")  # fmt: skip
    before = snapshot(tmp_path)
    message = refused(capsys, "train", "--data", "mnist-small", "--seed", "3", "--hidden", "16",
                      "--latent-dim", "8", "--out", "R", "--resume")  # fmt: skip
    assert message == (
        "--resume continues R with its own settings; these differ: "
        "--latent-dim 8 (the run has 4), --seed 3 (the run has 2)"
    )
    message = refused(capsys, "train", "--resume", "--out", "R", "--data", "fashion-mnist",
                      "--hidden", "16", "16", "--k", "5", "--conditional", "--force")  # fmt: skip
    assert message == (
        "--resume continues R with its own settings; these differ: --hidden 16 16 (the run has "
        "16), --k 5 (the run has 1), --data fashion-mnist (the run has mnist-small), "
        "--conditional (the run is unconditional), --force (resuming never replaces the run)"
    )
    assert snapshot(tmp_path) == before


# --- 4. commands know their run's data -------------------------------------------------------


def test_commands_default_to_the_runs_own_data(tmp_path, monkeypatch, capsys, data_dir, offline):
    monkeypatch.chdir(tmp_path)
    ok(capsys, "train", "--data", "mnist", "--data-dir", data_dir, "--epochs", "1", *TINY,
       "--out", "run")  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = Path("..") / "run"
    result = json.loads(ok(capsys, "evaluate", run, "--json", "--quiet"))
    assert result["protocol"]["data"] == "mnist" and result["protocol"]["split"] == "test"
    assert result["n"] == 20  # the test split of the run's data set
    ok(capsys, "encode", run, "--out", "z.npy")
    assert np.load("z.npy").shape == (20, 3)
    for argv in (["manifold", run], ["scatter", run, "--quiet"], ["interpolate", run],
                 ["reconstruct", run]):  # fmt: skip
        assert "wrote" in ok(capsys, *argv)
    assert {p.name for p in (tmp_path / "run").glob("*.png")} >= {
        "manifold-n20.png", "scatter-auto-n20.png", "interpolations-linear-seed0.png",
        "reconstructions-n8-seed0.png",
    }  # fmt: skip
    result = json.loads(ok(capsys, "evaluate", run, "--json", "--data", "mnist-small"))
    assert result["protocol"]["data"] == "mnist-small" and result["n"] == 1000  # --data wins
    assert sorted(os.listdir(elsewhere)) == ["z.npy"]
    assert offline == []


def test_commands_default_to_the_file_a_run_was_trained_on(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", np.random.default_rng(1).random((40, 6), dtype=np.float32))
    ok(capsys, "train", "--data", "x.npy", "--epochs", "1", *TINY, "--out", "run")
    monkeypatch.chdir(tmp_path / "run")
    result = json.loads(ok(capsys, "evaluate", ".", "--json"))
    assert result["protocol"]["data"] == str(tmp_path / "x.npy")
    assert result["protocol"]["split"] == "val" and result["n"] == 4  # the held-out 10%
    for split, n in (("train", 36), ("all", 40)):
        result = json.loads(ok(capsys, "evaluate", ".", "--json", "--split", split))
        assert result["protocol"]["split"] == split and result["n"] == n


@pytest.mark.parametrize("command", COMMANDS_READING_DATA)
def test_help_and_readme_show_data_as_optional(capsys, command):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "[--data NAME|PATH]" in " ".join(out.split())
    assert "the run's own data set" in " ".join(out.split())
    commands = Path(__file__).resolve().parents[1] / "docs" / "commands.md"
    synopsis = commands.read_text(encoding="utf-8")
    line = next(r for r in synopsis.splitlines() if r.startswith(f"vaekit {command} RUN"))
    assert "[--data NAME|PATH]" in line
