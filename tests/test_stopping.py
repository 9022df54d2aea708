"""Training that knows when to stop: ``--epochs auto`` (the default for your own data), the stop
rule over metric sequences, the time cap with a clock of the test's own, the summary that says
why a run stopped, the best weights kept and used by default, the same stop for the same seed,
and kill-and-resume that stops at the same epoch with the same weights."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_runner import run_cli, user_error
from conftest import scripted
from vaekit.config.files import read_settings
from vaekit.config.limits import (
    AUTO_MAX_EPOCHS,
    AUTO_MAX_MINUTES,
    AUTO_PATIENCE,
    DATASET_NAMES,
    DEFAULT_EPOCHS,
)
from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.data import RawData
from vaekit.data.pipeline import TrainingData
from vaekit.errors import ConfigError
from vaekit.runs import best_weights, config_file, loading
from vaekit.runs.metrics import read_metrics
from vaekit.train.loop import LoopState, fit, stop_reason
from vaekit.train.start import engine_for

DRIVER = Path(__file__).with_name("kill_driver.py")
#: A small Gaussian model of 6 columns: a few milliseconds an epoch on the NumPy engine.
TINY = ["--likelihood", "gaussian", "--scale", "standardize", "--hidden", "8", "--latent-dim",
        "2", "--engine", "numpy", "--batch-size", "50", "--quiet"]  # fmt: skip
MODEL = ModelConfig(input_shape=(6,), hidden=(8,), latent_dim=2, likelihood="gaussian")


def table(n: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    return z @ rng.standard_normal((2, 6)) + 0.3 * rng.standard_normal((n, 6))


@pytest.fixture
def tiny_csv(tmp_path) -> Path:
    """200 rows of 6 correlated columns, with a header."""
    path = tmp_path / "tiny.csv"
    header = ",".join(f"c{i}" for i in range(6))
    np.savetxt(path, table(), delimiter=",", header=header, comments="")
    return path


# --- the stop rule ------------------------------------------------------------------------


def expected_stop(losses: list[float], patience: int, limit: int) -> tuple[int, str]:
    """The rule written out plainly: after each epoch, stop when ``patience`` epochs passed
    since the lowest loss so far (a tie is no improvement), else at ``limit`` epochs."""
    best, best_epoch = math.inf, 0
    for epoch, loss in enumerate(losses, start=1):
        if loss < best:
            best, best_epoch = loss, epoch
        if patience and epoch - best_epoch >= patience:
            return epoch, "patience"
        if epoch >= limit:
            return epoch, "epochs"
    raise AssertionError("the sequence is too short for this case")


def sequences() -> dict[str, list[float]]:
    rng = np.random.default_rng(7)
    walk = 300 + np.cumsum(rng.normal(-0.2, 1.0, 400))
    return {
        "falling": [100 - i for i in range(400)],
        "flat": [5.0] * 400,
        "V": [10 - i for i in range(6)] + [5 + i for i in range(394)],
        "ties": [3.0, 2.0, 2.0, 2.0, 1.0] + [1.0] * 395,
        "late gain": [9, 8, 8.5, 8.4, 8.3, 8.2, 7.9] + [7.9] * 393,
        "noisy": list(walk),
        "nan": [4.0, float("nan"), 3.0] + [3.5] * 397,
    }


@pytest.mark.parametrize("name", list(sequences()))
@pytest.mark.parametrize("patience", [1, 2, 3, 5, 10])
@pytest.mark.parametrize("epochs", ["auto", 7, 60])
def test_the_stop_rule_over_a_grid_of_held_out_sequences(name, patience, epochs, monkeypatch):
    losses = sequences()[name]
    config = TrainConfig(data="x.csv", epochs=epochs, patience=patience)
    limit = AUTO_MAX_EPOCHS if epochs == "auto" else epochs
    want = expected_stop(losses + [losses[-1]] * AUTO_MAX_EPOCHS, patience, limit)
    state = LoopState.fresh(0)
    while (reason := stop_reason(config, state)) is None:
        state.epoch += 1
        state.improve(losses[min(state.epoch, len(losses)) - 1])
    assert (state.epoch, reason) == want
    assert state.best_epoch == 1 + int(np.nanargmin(losses[: state.epoch]))


@pytest.mark.parametrize("minutes", [0, 0.5, 1, 2.5])
@pytest.mark.parametrize("epoch_seconds", [1.0, 20.0, 45.0])
def test_the_time_cap_stops_after_the_first_epoch_that_ends_past_it(minutes, epoch_seconds):
    config = TrainConfig(data="x.csv", epochs="auto", max_minutes=minutes)
    state = LoopState.fresh(0)
    while stop_reason(config, state) is None:
        state.epoch += 1
        state.seconds += epoch_seconds
        state.improve(100.0 - state.epoch)  # always improving: only the clock stops it
    assert stop_reason(config, state) == "time"
    assert state.epoch == max(1, math.ceil(60 * minutes / epoch_seconds))


def tiny_data(config: TrainConfig) -> TrainingData:
    return TrainingData.prepare(config, RawData(x=table(), y=None, name="t"), None)


def test_fit_stops_by_patience_and_marks_the_last_record(monkeypatch):
    scripted(monkeypatch, [5.0, 3.0, 4.0, 3.5, 3.2, 1.0])
    config = TrainConfig(data="t", engine="numpy", epochs="auto", patience=3, batch_size=50)
    history = fit(engine_for(MODEL, config), config, tiny_data(config))
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5]
    assert [r.get("stopped") for r in history] == [None] * 4 + ["patience"]


def test_fit_with_a_clock_of_its_own_stops_by_the_time_cap():
    ticks = itertools.count(step=25.0)  # every reading of the clock 25 s later: 25 s an epoch
    config = TrainConfig(data="t", engine="numpy", epochs="auto", max_minutes=1, batch_size=50)
    state = LoopState.fresh(0)
    history = fit(
        engine_for(MODEL, config), config, tiny_data(config), state=state, clock=ticks.__next__
    )
    assert [r["seconds"] for r in history] == [25.0, 25.0, 25.0]
    assert history[-1]["stopped"] == "time" and state.seconds == 75.0


# --- the settings -------------------------------------------------------------------------


@pytest.mark.parametrize("data", [*DATASET_NAMES, "/data/x.csv", "folder", "<array>"])
@pytest.mark.parametrize("val_fraction", [None, 0.0, 0.2])
def test_auto_is_the_default_for_your_own_data_that_holds_examples_out(data, val_fraction):
    config = TrainConfig(data=data, val_fraction=val_fraction)
    own = data not in DATASET_NAMES and val_fraction != 0
    assert config.epochs == ("auto" if own else DEFAULT_EPOCHS)
    assert (config.keep, config.patience, config.max_minutes) == (
        ("best", AUTO_PATIENCE, AUTO_MAX_MINUTES) if own else ("last", 0, None)
    )
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


@pytest.mark.parametrize(
    "values, words",
    [
        ({"epochs": "autox"}, "epochs must be a positive whole number or auto, got 'autox'"),
        ({"epochs": 0}, "or auto, got 0"),
        ({"epochs": -3}, "or auto"),
        ({"epochs": 2.5}, "or auto"),
        ({"epochs": True}, "or auto"),
        ({"epochs": "AUTO"}, "or auto"),
        ({"epochs": "auto", "keep": "last"}, "keep must be best"),
        ({"epochs": "auto", "patience": 0}, "patience must be 1 or more"),
        ({"max_minutes": -1}, "max_minutes must be 0 or more"),
        ({"max_minutes": float("inf")}, "max_minutes must be a finite number"),
    ],
)
def test_bad_stopping_settings_are_refused_in_one_line(values, words):
    with pytest.raises(ConfigError, match=words) as caught:
        TrainConfig(data="x.csv", **values)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "name, text",
    [
        ("s.toml", '[train]\nepochs = "auto"\npatience = 4\nmax_minutes = 2.5\n'),
        ("s.json", '{"train": {"epochs": "auto", "patience": 4, "max_minutes": 2.5}}'),
    ],
)
def test_settings_files_take_epochs_auto(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    settings = read_settings(tmp_path / name)
    config = TrainConfig(data="mnist-small", **settings.train)
    assert (config.epochs, config.patience, config.max_minutes, config.keep) == (
        "auto", 4, 2.5, "best"
    )  # fmt: skip
    (tmp_path / "bad.toml").write_text('[train]\nepochs = "autox"\n')
    with pytest.raises(ConfigError, match="bad.toml: epochs must be .* or auto"):
        TrainConfig(**read_settings(tmp_path / "bad.toml").train)


# --- the command line ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--epochs", "autox"], "'autox' is neither a whole number nor auto"),
        (["--epochs", "0"], "0 is outside the range 1"),
        (["--epochs", "auto", "--val-fraction", "0"], "--epochs auto follows the held-out score"),
        (["--epochs", "auto", "--keep", "last"], "keep must be best"),
        (["--max-minutes", "-2"], "max_minutes must be 0 or more"),
    ],
)
def test_bad_epochs_on_the_command_line_are_one_line_and_write_nothing(
    tiny_csv, tmp_path, capsys, flags, words
):
    line = user_error(capsys, "train", "--data", tiny_csv, *flags, *TINY, "--out", tmp_path / "r")
    assert words in line
    assert not (tmp_path / "r").exists()


def stop_line(out: str) -> str:
    """The summary's line that says why the run stopped."""
    (line,) = [line for line in out.splitlines() if line.startswith("stopped after")]
    return line


def train(capsys, data, out, *flags) -> str:
    code, text, err = run_cli(capsys, "train", "--data", data, *TINY, *flags, "--out", out)
    assert code == 0, err
    return text


def test_auto_trains_until_patience_runs_out_keeps_and_uses_the_best_weights(
    tiny_csv, tmp_path, capsys
):
    run = tmp_path / "run"
    out = train(capsys, tiny_csv, run, "--patience", "2")
    train_config = config_file.read_config(run)[1]
    assert (train_config.epochs, train_config.keep, train_config.patience) == ("auto", "best", 2)
    records = read_metrics(run)
    losses = [r["val_loss"] for r in records]
    best = best_weights.read_best(run)
    stopped = records[-1]["epoch"]
    assert records[-1]["stopped"] == "patience" and stopped - best["epoch"] == 2
    assert best["epoch"] == 1 + int(np.argmin(losses))
    assert stop_line(out) == (
        f"stopped after epoch {stopped}: the held-out -ELBO has not improved for 2 epochs; "
        f"keeping epoch {best['epoch']}'s weights ({best['loss']:.2f} nats)"
    )
    assert "every command uses these weights unless given --checkpoint last" in out
    # commands load the best weights unless told otherwise
    assert loading.weights_of(run) == "best"
    used = loading.open_run(run).get_weights()
    kept = loading.open_run(run, which="best").get_weights()
    last = loading.open_run(run, which="last").get_weights()
    assert all(np.array_equal(used[k], kept[k]) for k in kept)
    assert not all(np.array_equal(used[k], last[k]) for k in last)
    code, text, err = run_cli(capsys, "evaluate", run, "--json", "--quiet")
    assert code == 0, err
    assert -json.loads(text)["elbo"] == pytest.approx(best["loss"], rel=1e-6)


def test_the_time_cap_of_zero_minutes_stops_after_the_first_epoch_and_says_so(
    tiny_csv, tmp_path, capsys
):
    out = train(capsys, tiny_csv, tmp_path / "run", "--max-minutes", "0")
    records = read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in records] == [1] and records[0]["stopped"] == "time"
    assert stop_line(out).startswith(
        "stopped after epoch 1: its epochs took 0 minutes or more (max_minutes), the one stop "
        "that depends on the machine's speed; keeping epoch 1's weights"
    )


def test_a_number_of_epochs_trains_them_all_and_says_nothing_of_stopping(
    tiny_csv, tmp_path, capsys
):
    out = train(capsys, tiny_csv, tmp_path / "run", "--epochs", "2")
    assert "stopped" not in out and loading.weights_of(tmp_path / "run") == "last"
    assert read_metrics(tmp_path / "run")[-1]["stopped"] == "epochs"


def test_the_same_seed_stops_at_the_same_epoch_with_the_same_weights(tiny_csv, tmp_path, capsys):
    for name in ("a", "b"):
        train(capsys, tiny_csv, tmp_path / name, "--patience", "2", "--seed", "5")
    a, b = (read_metrics(tmp_path / name) for name in ("a", "b"))
    assert [r["val_loss"] for r in a] == [r["val_loss"] for r in b] and len(a) > 3
    for which in ("best", "last"):
        wa, wb = (loading.open_run(tmp_path / n, which=which).get_weights() for n in ("a", "b"))
        assert all(np.array_equal(wa[k], wb[k]) for k in wa)


def launch(event: str, argv: list) -> int:
    """vaekit ``argv`` in a process that kills itself (SIGKILL) at ``event`` (kill_driver.py)."""
    argv = [sys.executable, str(DRIVER), event, *map(str, argv)]
    return subprocess.run(argv, capture_output=True, timeout=600).returncode  # a hang guard


def test_kill_and_resume_stops_at_the_same_epoch_with_bit_identical_weights(tiny_csv, tmp_path):
    events = ["write:40", "step:5"]  # inside a save, then before a step of the resumed run
    argv = ["train", "--data", tiny_csv, *TINY, "--patience", "2"]
    assert launch("never", [*argv, "--out", tmp_path / "whole"]) == 0
    run = tmp_path / "killed"
    assert launch(events[0], [*argv, "--out", run]) == -9
    assert (run / "state.json").exists()  # killed after its first checkpoint
    for event in [*events[1:], "never"]:
        code = launch(event, ["train", "--resume", "--out", run, "--quiet"])
        assert code == (0 if event == "never" else -9)
    whole, killed = read_metrics(tmp_path / "whole"), read_metrics(run)
    assert [r["epoch"] for r in killed] == [r["epoch"] for r in whole]
    assert [r["val_loss"] for r in killed] == [r["val_loss"] for r in whole]
    assert killed[-1]["stopped"] == whole[-1]["stopped"] == "patience"
    assert (
        best_weights.read_best(run)["epoch"] == best_weights.read_best(tmp_path / "whole")["epoch"]
    )
    for which in ("best", "last"):
        got = loading.open_run(run, which=which).get_weights()
        want = loading.open_run(tmp_path / "whole", which=which).get_weights()
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{which} {name}")


def test_resuming_a_stopped_auto_run_says_so_or_trains_on_with_more_patience(
    tiny_csv, tmp_path, capsys
):
    run = tmp_path / "run"
    train(capsys, tiny_csv, run, "--patience", "2")
    stopped = read_metrics(run)[-1]["epoch"]
    code, out, err = run_cli(capsys, "train", "--resume", "--out", run)
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith(f"{run} has stopped after epoch {stopped}: the held-out -ELBO")
    assert first.endswith("(pass --patience with a number larger than 2 to train on)")
    assert read_metrics(run)[-1]["epoch"] == stopped  # nothing trained
    code, _, err = run_cli(capsys, "train", "--resume", "--out", run, "--patience", "4", "--quiet")
    assert code == 0, err
    assert read_metrics(run)[-1]["epoch"] > stopped
    assert config_file.read_config(run)[1].patience == 4
    # a time-capped run trains on with a larger cap
    capped = tmp_path / "capped"
    train(capsys, tiny_csv, capped, "--max-minutes", "0")
    code, out, _ = run_cli(capsys, "train", "--resume", "--out", capped)
    assert "(pass --max-minutes with a number larger than 0 to train on)" in out.splitlines()[0]
    resumed = ["train", "--resume", "--out", capped, "--max-minutes", "30", "--patience", "1"]
    assert run_cli(capsys, *resumed, "--quiet")[0] == 0
    assert read_metrics(capped)[-1]["epoch"] > 1


def test_a_checkpoint_keeps_the_training_seconds_and_reads_older_ones():
    state = LoopState.fresh(0)
    state.epoch, state.seconds = 2, 12.5
    assert LoopState.from_json(json.loads(json.dumps(state.to_json()))).seconds == 12.5
    old = {k: v for k, v in state.to_json().items() if k != "seconds"}
    assert LoopState.from_json(old).seconds == 0.0
    for bad in (-1, float("nan"), "1", True):
        with pytest.raises(Exception, match="seconds"):
            LoopState.from_json({**state.to_json(), "seconds": bad})


def test_data_trained_whole_default_to_a_number_of_epochs_and_their_last_weights(
    tmp_path, capsys, tiny_csv
):
    train(capsys, tiny_csv, tmp_path / "plain", "--val-fraction", "0")
    assert config_file.read_config(tmp_path / "plain")[1].epochs == DEFAULT_EPOCHS
    assert loading.weights_of(tmp_path / "plain") == "last"


# --- the estimator ------------------------------------------------------------------------

ESTIMATOR = dict(hidden=(8,), latent_dim=2, likelihood="gaussian", scale="standardize")


def test_the_estimator_trains_auto_by_default_and_ends_with_the_best_weights(capsys):
    from vaekit.api.estimator import VAE

    vae = VAE(engine="numpy", batch_size=50, patience=2, verbose=True, **ESTIMATOR).fit(table())
    assert (vae.train_config_.epochs, vae.train_config_.keep) == ("auto", "best")
    history = vae.history_
    best = 1 + int(np.argmin([r["val_loss"] for r in history]))
    assert history[-1]["stopped"] == "patience" and len(history) - best == 2
    assert stop_line(capsys.readouterr().out).endswith(
        f"keeping epoch {best}'s weights ({history[best - 1]['val_loss']:.2f} nats)"
    )


def test_the_estimator_refuses_auto_without_held_out_rows_and_trains_whole_data_ten_epochs():
    from vaekit.api.estimator import VAE

    with pytest.raises(ConfigError, match="epochs='auto' .* val_fraction=0"):
        VAE(epochs="auto", val_fraction=0.0, engine="numpy", **ESTIMATOR).fit(table(40))
    vae = VAE(val_fraction=0.0, engine="numpy", **ESTIMATOR).fit(table(40))
    assert len(vae.history_) == DEFAULT_EPOCHS
