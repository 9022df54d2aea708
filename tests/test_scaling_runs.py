"""Runs that scale explicitly: raw tabular values trained with a stored standardization, every
command applying the same scaling to its inputs, the Bernoulli refusal, and folders of images of
any size and colour (resized and centre-cropped as the run says, for later inputs too)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from cli_runner import run_cli, user_error
from vaekit.cli import main
from vaekit.data import scaling as scaling_module
from vaekit.data.readers import read_file
from vaekit.data.splits import validation_split
from vaekit.measure.evaluation import iwae_log_likelihood
from vaekit.runs import loading

TINY = ["--hidden", "8", "--latent-dim", "2", "--batch-size", "50", "--quiet"]


def write_table(path, rows: np.ndarray, labels: np.ndarray) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["age", "income", "label"])
        for (age, income), label in zip(rows, labels, strict=True):
            writer.writerow([f"{age:.1f}", f"{income:.2f}", int(label)])


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """200 rows of raw values (ages 0–100, incomes 1e4–1e5, a label column) and a run trained
    on them with a Gaussian likelihood and a stored standardization."""
    root = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(5)
    ages = rng.uniform(0, 100, 200)
    incomes = 1e4 + 9e4 * rng.beta(2, 5, 200)
    rows = np.stack([ages, incomes], axis=1)
    labels = (ages > 50).astype(int)
    write_table(root / "people.csv", rows, labels)
    run = root / "run"
    argv = ["train", "--data", root / "people.csv", "--likelihood", "gaussian"]
    argv += ["--scale", "standardize", "--epochs", "2", *TINY, "--out", run]
    assert main([str(a) for a in argv]) == 0
    return root, run, rows, labels


def scores(capsys, *argv) -> list[dict]:
    code, out, err = run_cli(capsys, "score", *argv, "--quiet")
    assert code == 0, err
    return list(csv.DictReader(out.splitlines()))


def test_a_standardized_table_stores_the_statistics_of_its_training_rows(table):
    root, run, rows, _ = table
    stored = json.loads((run / "scaling.json").read_text())
    train_idx, val_idx = validation_split(200, 0.1, seed=0)
    assert len(val_idx) == 20
    raw = read_file(root / "people.csv").x[train_idx].astype(np.float64)
    assert stored["method"] == "standardize" and stored["shape"] == [2]
    np.testing.assert_allclose(stored["shift"], raw.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stored["scale"], raw.std(axis=0), rtol=1e-6)
    config = json.loads((run / "config.json").read_text())["train"]
    assert config["scale"] == "standardize" and config["val_fraction"] is None
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all("val_loss" in m and "test_loss" not in m for m in metrics)


def test_score_and_encode_apply_the_run_scaling_to_every_input(table, capsys, tmp_path):
    root, run, rows, labels = table
    whole = scores(capsys, run, root / "people.csv", "--iw-samples", "10", "--seed", "3")
    assert [int(r["index"]) for r in whole] == list(range(200))  # an INPUT is scored whole
    # the same numbers by hand: the stored scaling, the engine, the same k and seed
    engine = loading.open_run(run)
    scaling = scaling_module.Scaling.load(run)
    x = scaling.apply(read_file(root / "people.csv").x)
    by_hand = iwae_log_likelihood(engine, x, 10, seed=3)
    np.testing.assert_allclose([float(r["log_px"]) for r in whole], by_hand, atol=1e-4)
    # the first rows alone score as they do in the whole file (same batch positions; k = 1)
    write_table(tmp_path / "first.csv", rows[:30], labels[:30])
    full = scores(capsys, run, root / "people.csv", "--iw-samples", "1")
    first = scores(capsys, run, tmp_path / "first.csv", "--iw-samples", "1")
    assert [r["log_px"] for r in first] == [r["log_px"] for r in full[:30]]
    # encode: a row's posterior mean is the same alone and in the whole file
    for source, out in ((root / "people.csv", "all.npy"), (tmp_path / "first.csv", "few.npy")):
        code, _, err = run_cli(capsys, "encode", run, "--data", source, "--out", tmp_path / out)
        assert code == 0, err
    everything, few = np.load(tmp_path / "all.npy"), np.load(tmp_path / "few.npy")
    np.testing.assert_allclose(few, everything[:30], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(everything, engine.encode(x)[0], rtol=1e-5, atol=1e-6)


def test_sample_npy_is_in_raw_units(table, capsys, tmp_path):
    _, run, rows, _ = table
    code, _, err = run_cli(capsys, "sample", run, "-n", "500", "--npy", tmp_path / "s.npy")
    assert code == 0, err
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (500, 2)
    # decoder means of a standardized model, mapped back: ages and incomes, not z-scores
    assert 10 < samples[:, 0].mean() < 90 and 1e4 < samples[:, 1].mean() < 1e5


def test_bernoulli_on_raw_values_is_refused_and_names_the_fix(table, capsys, tmp_path):
    root, *_ = table
    line = user_error(
        capsys, "train", "--data", root / "people.csv", *TINY, "--out", tmp_path / "r"
    )
    assert "outside [0, 1]" in line and "--scale minmax" in line
    assert "--likelihood gaussian" in line
    assert not (tmp_path / "r").exists()
    # minmax puts the training rows in [0, 1] (and clips later ones to it): Bernoulli trains
    code, _, err = run_cli(
        capsys, "train", "--data", root / "people.csv", "--scale", "minmax", "--epochs", "1",
        *TINY, "--out", tmp_path / "minmax",
    )  # fmt: skip
    assert code == 0, err
    # a run on values in [0, 1] as they are refuses a later input outside [0, 1], in one line
    write_table(tmp_path / "unit.csv", np.random.default_rng(0).random((60, 2)), np.zeros(60))
    code, _, err = run_cli(
        capsys, "train", "--data", tmp_path / "unit.csv", "--epochs", "1", *TINY,
        "--out", tmp_path / "unit",
    )  # fmt: skip
    assert code == 0, err
    write_table(tmp_path / "far.csv", np.array([[0.5, 7.0]]), np.array([0]))
    line = user_error(capsys, "score", tmp_path / "unit", tmp_path / "far.csv")
    assert "outside [0, 1]" in line and "far.csv" in line and "--likelihood gaussian" in line


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--scale", "log"], "invalid choice"),
        (["--image-size", "0", "32"], "outside the range"),
        (["--image-size", "32"], "expected 2 arguments"),
        (["--image-size", "9999", "32"], "outside the range"),
        (["--image-mode", "cmyk"], "invalid choice"),
        (["--val-fraction", "0.9"], "val_fraction must be at most 0.5"),
        (["--val-fraction", "-0.1"], "val_fraction"),
        (["--val-fraction", "nan"], "val_fraction"),
        (["--val-fraction", "x"], "invalid float"),
        (["--keep", "first"], "invalid choice"),
        (["--patience", "-1"], "outside the range"),
        (["--patience", "1.5"], "not a whole number"),
    ],
)
def test_hostile_data_flags_are_refused_in_one_line(capsys, tmp_path, flags, words):
    line = user_error(capsys, "train", "--data", "mnist-small", *flags, "--out", tmp_path / "r")
    assert words in line
    assert not (tmp_path / "r").exists()


def shapes(folder, sizes, mode="RGB", seed=0):
    """A folder of PNGs of coloured rectangles, one per size (W, H)."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i, (w, h) in enumerate(sizes):
        image = np.zeros((h, w, 3), dtype=np.uint8)
        colour = rng.integers(60, 256, 3)
        top, left = rng.integers(0, h // 2), rng.integers(0, w // 2)
        image[top : top + h // 2, left : left + w // 2] = colour
        Image.fromarray(image).convert(mode).save(folder / f"img{i:03d}.png")
    return folder


def test_a_folder_of_64x64_rgb_images_trains_with_the_conv_model(tmp_path, capsys):
    folder = shapes(tmp_path / "rgb", [(64, 64)] * 40)
    run = tmp_path / "run"
    code, out, err = run_cli(
        capsys, "train", "--data", folder, "--arch", "conv", "--conv-channels", "4", "8",
        "--latent-dim", "4", "--epochs", "1", "--batch-size", "16", "--quiet", "--out", run,
    )  # fmt: skip
    assert code == 0, err
    assert "36 examples, 4 held out (validation)" in out and "scale unit" in out
    model = json.loads((run / "config.json").read_text())["model"]
    assert model["input_shape"] == [3, 64, 64] and model["arch"] == "conv"
    assert json.loads((run / "scaling.json").read_text())["method"] == "unit"
    assert (run / "samples.png").is_file()


def test_images_of_mixed_sizes_train_at_image_size_and_later_inputs_are_resized(tmp_path, capsys):
    sizes = [(40, 30), (30, 40), (50, 50), (33, 47)] * 6
    folder = shapes(tmp_path / "mixed", sizes, mode="L")
    run = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "train", "--data", folder, "--image-size", "32", "32", "--epochs", "1",
        *TINY, "--out", run,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["model"]["input_shape"] == [1, 32, 32]
    odd = shapes(tmp_path / "new", [(90, 70)], mode="RGB", seed=9) / "img000.png"
    rows = scores(capsys, run, odd, "--iw-samples", "5")
    assert len(rows) == 1 and np.isfinite(float(rows[0]["log_px"]))
    # read as the run reads images: brought to 32×32, grey, levels / 255
    from vaekit.data.readers import read_image

    x = read_image(odd, (32, 32), "grey")[None].astype(np.float32) / 255
    engine = loading.open_run(run)
    expected = iwae_log_likelihood(engine, x, 5, seed=0)[0]
    assert float(rows[0]["log_px"]) == pytest.approx(expected, abs=1e-3)
