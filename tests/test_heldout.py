"""Held-out data: the seeded validation split, its score every epoch, the best checkpoint
(--keep best, --checkpoint best), early stopping (--patience) and its resumption, bit-exact
resumption with a validation split, and anomaly flags calibrated on the held-out data
(score --threshold-fpr)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cli_runner import run_cli, user_error
from conftest import scripted
from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.data import RawData
from vaekit.data.pipeline import TrainingData
from vaekit.data.splits import validation_split
from vaekit.runs import best_weights, checkpoint, config_file, loading
from vaekit.runs.metrics import read_metrics
from vaekit.train import loop, start
from vaekit.train.loop import LoopState
from vaekit.train.start import resume_run, start_run

TINY = ["--hidden", "8", "--latent-dim", "2", "--batch-size", "50", "--quiet"]
MODEL = ModelConfig(input_shape=(1, 8, 8), hidden=(16,), latent_dim=2)


@pytest.fixture
def images(tmp_path):
    """300 random 8×8 images of 8-bit levels, as a .npy file."""
    x = np.random.default_rng(0).integers(0, 256, size=(300, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    return tmp_path / "x.npy"


def config(data, **overrides) -> TrainConfig:
    values = dict(data=str(data), engine="numpy", epochs=3, batch_size=50, seed=4)
    return TrainConfig(**{**values, **overrides})


def quiet(line: str) -> None:
    pass


def test_the_validation_split_is_seeded_disjoint_and_scaled_by_the_training_part():
    rng = np.random.default_rng(1)
    raw = RawData(x=rng.normal(5, 3, (100, 4)), y=np.arange(100) % 3, name="t")
    data = TrainingData.prepare(config("t", scale="standardize"), raw, None)
    train_idx, val_idx = validation_split(100, 0.1, seed=4)
    assert len(val_idx) == 10 and not set(train_idx) & set(val_idx)
    assert sorted([*train_idx, *val_idx]) == list(range(100))
    mean, std = raw.x[train_idx].mean(0), raw.x[train_idx].std(0)
    np.testing.assert_allclose(data.val, (raw.x[val_idx] - mean) / std, atol=1e-5)
    np.testing.assert_allclose(data.train, (raw.x[train_idx] - mean) / std, atol=1e-5)
    np.testing.assert_array_equal(data.val_labels, raw.y[val_idx])
    assert data.held_out()[2] == "validation"
    again = TrainingData.prepare(config("t", scale="standardize"), raw, None)
    np.testing.assert_array_equal(again.val, data.val)
    other = TrainingData.prepare(config("t", scale="standardize", seed=5), raw, None)
    assert not np.array_equal(other.val, data.val)
    # a test split is the held-out data unless a validation fraction is asked for
    with_test = TrainingData.prepare(config("t"), raw, raw)
    assert with_test.val is None and with_test.held_out()[2] == "test"


def test_resume_with_a_validation_split_is_bit_exact(images, tmp_path):
    cfg = config(images, epochs=3)
    start_run(MODEL, cfg, tmp_path / "whole", progress=False, log=quiet)

    def crash(line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        start_run(MODEL, cfg, tmp_path / "cut", progress=False, log=crash)
    history = resume_run(tmp_path / "cut", progress=False, log=quiet)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    whole = checkpoint.load_weights(tmp_path / "whole", MODEL)
    cut = checkpoint.load_weights(tmp_path / "cut", MODEL)
    for name, array in whole.items():
        np.testing.assert_array_equal(cut[name], array, err_msg=name)
    metrics = read_metrics(tmp_path / "cut")
    assert all("val_loss" in m and np.isfinite(m["val_loss"]) for m in metrics)
    assert [m["val_loss"] for m in metrics] == [
        m["val_loss"] for m in read_metrics(tmp_path / "whole")
    ]


def test_keep_best_keeps_the_weights_of_the_lowest_held_out_loss(images, tmp_path, monkeypatch):
    scripted(monkeypatch, [5.0, 3.0, 4.0])
    start_run(MODEL, config(images, keep="best"), tmp_path / "run", progress=False, log=quiet)
    losses = [m["val_loss"] for m in read_metrics(tmp_path / "run")]
    best = best_weights.read_best(tmp_path / "run")
    assert losses == [5.0, 3.0, 4.0]
    assert best["epoch"] == 1 + int(np.argmin(losses)) == 2
    assert best["loss"] == 3.0 and best["split"] == "val"
    # the best weights are those an identical run has after 2 epochs
    scripted(monkeypatch, [5.0, 3.0])
    start_run(MODEL, config(images, epochs=2), tmp_path / "two", progress=False, log=quiet)
    two = checkpoint.load_weights(tmp_path / "two", MODEL)
    engine = loading.open_run(tmp_path / "run", which="best")
    last = loading.open_run(tmp_path / "run", which="last")
    assert loading.weights_of(tmp_path / "run") == "best"  # the default of a run that kept them
    for name, array in engine.get_weights().items():
        np.testing.assert_array_equal(array, two[name], err_msg=name)
    assert any(
        not np.array_equal(array, last.get_weights()[name])
        for name, array in engine.get_weights().items()
    )
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert (state["best_epoch"], state["best_loss"]) == (2, 3.0)


def test_patience_stops_early_and_a_resumed_run_stops_again_at_once(images, tmp_path, monkeypatch):
    lines: list[str] = []
    scripted(monkeypatch, [5.0, 3.0, 4.0, 3.5, 1.0])
    cfg = config(images, epochs=10, patience=2)
    history = start_run(MODEL, cfg, tmp_path / "run", progress=False, log=lines.append)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]  # epochs 3, 4: no better than 3.0
    assert history[-1]["stopped"] == "patience"
    assert (tmp_path / "run" / "samples.png").is_file()  # the final figures are drawn
    lines.clear()
    records = resume_run(tmp_path / "run", progress=False, log=lines.append)
    assert [r["epoch"] for r in records] == [4]  # nothing more trained
    assert lines[0] == (
        f"{tmp_path / 'run'} has stopped after epoch 4: the held-out -ELBO has not improved for "
        "2 epochs; the best held-out -ELBO was epoch 2's (3.00 nats); drawing its figures (pass "
        "--patience with a number larger than 2 to train on)"
    )
    # a larger patience on --resume goes on loop
    records = resume_run(tmp_path / "run", patience=3, progress=False, log=quiet)
    assert [r["epoch"] for r in records][:2] == [4, 5]


def test_loop_state_round_trips_its_best_and_reads_old_checkpoints():
    state = LoopState.fresh(0)
    state.epoch = 3
    assert state.improve(2.5) and not state.improve(2.5) and state.best_epoch == 3
    again = LoopState.from_json(json.loads(json.dumps(state.to_json())))
    assert (again.best_loss, again.best_epoch) == (2.5, 3)
    old = {k: v for k, v in state.to_json().items() if not k.startswith("best")}
    assert LoopState.from_json(old).best_epoch is None
    for bad in ({"best_loss": 1.0, "best_epoch": None}, {"best_loss": "x", "best_epoch": 1}):
        with pytest.raises(Exception, match="best_loss"):
            LoopState.from_json({**state.to_json(), **bad})
    assert not state.stalled(0) and not state.stalled(1)
    state.epoch = 4
    assert state.stalled(1) and not state.stalled(2)


def test_patience_and_keep_best_without_held_out_data_are_refused(images, tmp_path, capsys):
    for flags in (["--patience", "2"], ["--keep", "best"]):
        line = user_error(
            capsys, "train", "--data", images, "--val-fraction", "0", *flags, *TINY,
            "--out", tmp_path / "r",
        )  # fmt: skip
        assert flags[0] in line and "--val-fraction" in line
        assert not (tmp_path / "r").exists()


def test_checkpoint_best_through_the_command_line(images, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = run_cli(
        capsys, "train", "--data", images, "--epochs", "3", "--keep", "best", *TINY, "--out", run
    )
    assert code == 0, err
    assert "best held-out -ELBO" in out
    best = best_weights.read_best(run)
    losses = [m["val_loss"] for m in read_metrics(run)]
    assert best["epoch"] == 1 + int(np.argmin(losses))
    # the held-out −ELBO of the best weights, measured again, is the recorded one
    code, out, err = run_cli(capsys, "evaluate", run, "--checkpoint", "best", "--json", "--quiet")
    assert code == 0, err
    result = json.loads(out)
    assert result["protocol"]["split"] == "val"
    assert -result["elbo"] == pytest.approx(best["loss"], rel=1e-6)
    # a run that kept no best says so in one line
    code, _, err = run_cli(capsys, "train", "--data", images, "--epochs", "1", *TINY, "--out",
                           tmp_path / "plain")  # fmt: skip
    assert code == 0, err
    line = user_error(capsys, "evaluate", tmp_path / "plain", "--checkpoint", "best")
    assert "kept no best checkpoint" in line
    # the best files belong to the run: --force replaces them
    code, _, err = run_cli(
        capsys, "train", "--data", images, "--epochs", "1", *TINY, "--out", run, "--force"
    )
    assert code == 0, err
    assert best_weights.read_best(run) is None and not (run / "best.safetensors").exists()


def test_an_old_config_without_a_validation_fraction_trains_on_every_example(images, tmp_path):
    run = tmp_path / "run"
    start_run(MODEL, config(images, epochs=1), run, progress=False, log=quiet)
    record = json.loads((run / "config.json").read_text())
    del record["train"]["val_fraction"]
    (run / "config.json").write_text(json.dumps(record))
    assert config_file.read_config(run)[1].val_fraction == 0.0


def test_threshold_fpr_flags_at_most_that_share_of_the_held_out_data(images, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(capsys, "train", "--data", images, "--epochs", "1", *TINY, "--out", run)[0] == 0
    _, val_idx = validation_split(300, 0.1, seed=0)
    np.save(tmp_path / "val.npy", np.load(images)[val_idx])
    noise = np.random.default_rng(3).integers(0, 256, size=(5, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "noise.npy", noise)
    held = [float(r["log_px"]) for r in score(capsys, run, tmp_path / "val.npy")]
    for p in (0.1, 0.5):
        rows = score(
            capsys, run, tmp_path / "val.npy", tmp_path / "noise.npy", "--threshold-fpr", p
        )
        threshold = float(np.quantile(held, p, method="lower"))
        assert {float(r["threshold"]) for r in rows} == {round(threshold, 4)}
        flagged = [int(r["anomaly"]) for r in rows if r["input"].endswith("val.npy")]
        assert len(flagged) == 30 and sum(flagged) <= p * 30
        assert all(
            int(r["anomaly"]) == (float(r["log_px"]) < threshold)
            for r in rows
            if abs(float(r["log_px"]) - threshold) > 1e-3  # the CSV rounds to 4 decimals
        )
    code, out, err = run_cli(capsys, "score", run, tmp_path / "noise.npy", "--threshold-fpr",
                             "0.1", "--out", tmp_path / "s.csv", "--quiet")  # fmt: skip
    assert code == 0, err
    assert "anomaly threshold" in out and "30 validation examples" in out and "flagged" in out
    header = (tmp_path / "s.csv").read_text().splitlines()[0]
    assert header == "input,index,label,log_px,threshold,anomaly"


def score(capsys, *argv) -> list[dict]:
    code, out, err = run_cli(capsys, "score", *argv, "--iw-samples", "5", "--quiet")
    assert code == 0, err
    return list(csv.DictReader(out.splitlines()))


@pytest.mark.parametrize("value", ["0", "1", "-0.1", "1.5", "nan", "x"])
def test_hostile_threshold_fpr_values_are_refused(images, tmp_path, capsys, value):
    line = user_error(capsys, "score", tmp_path / "nowhere", images, "--threshold-fpr", value)
    assert "--threshold-fpr" in line


def test_threshold_fpr_needs_held_out_data(images, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data", images, "--epochs", "1", "--val-fraction", "0", *TINY]
    assert run_cli(capsys, *argv, "--out", run)[0] == 0
    line = user_error(capsys, "score", run, images, "--threshold-fpr", "0.01")
    assert "holds out no data" in line and "--val-fraction" in line


def test_resume_keeps_the_data_settings_but_patience_may_change(images, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(capsys, "train", "--data", images, "--epochs", "1", *TINY, "--out", run)[0] == 0
    for flags in (["--val-fraction", "0.2"], ["--scale", "minmax"], ["--keep", "best"]):
        line = user_error(capsys, "train", "--resume", "--out", run, *flags)
        assert flags[0] in line and "differ" in line
    code, _, err = run_cli(
        capsys, "train", "--resume", "--out", run, "--epochs", "2", "--patience", "3", "--quiet"
    )
    assert code == 0, err
    assert config_file.read_config(run)[1].patience == 3


@pytest.mark.parametrize("binarize", ["none", "threshold", "dynamic"])
def test_streamed_training_data_train_as_data_held_in_memory(images, binarize):
    from vaekit.data.readers import read_file

    cfg = config(images, epochs=1, binarize=binarize)
    raw = read_file(images)
    assert not isinstance(raw.x, np.ndarray)  # read from the file on demand
    weights = []
    for stream in (True, False):
        data = TrainingData.prepare(cfg, raw, None, stream=stream)
        assert data.streamed == stream and isinstance(data.train, np.ndarray) != stream
        engine = start.engine_for(MODEL, cfg)
        history = loop.fit(engine, cfg, data)
        weights.append((engine.get_weights(), history[0]["val_loss"]))
    (streamed, streamed_val), (held, held_val) = weights
    assert streamed_val == held_val
    for name, array in held.items():
        np.testing.assert_array_equal(streamed[name], array, err_msg=name)


def test_static_binarization_of_streamed_data_is_refused(images):
    from vaekit.data.readers import read_file
    from vaekit.errors import ConfigError

    with pytest.raises(ConfigError, match="--binarize dynamic or threshold"):
        TrainingData.prepare(
            config(images, binarize="static"), read_file(images), None, stream=True
        )
