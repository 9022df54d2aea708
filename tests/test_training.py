import json
import re
import shutil

import numpy as np
import pytest

from conftest import quick_config
from vaekit.cli import main
from vaekit.config.settings import ModelConfig
from vaekit.data.pipeline import TrainingData
from vaekit.errors import ConfigError, DataError, TrainingDiverged
from vaekit.runs import checkpoint, layout
from vaekit.runs.metrics import read_metrics
from vaekit.train.loop import kl_weight
from vaekit.train.start import resume_run, start_run


def _quiet(_line):
    pass


def _train(tmp_path, model, data, name="run", **overrides):
    return start_run(
        model, quick_config(**overrides), tmp_path / name, data=data, progress=False, log=_quiet
    )


def test_training_lowers_the_loss_and_writes_the_run(tmp_path, small_model, small_data):
    history = _train(tmp_path, small_model, small_data, epochs=3)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["test_loss"] < history[0]["test_loss"] - 5
    assert history[-1]["loss"] < history[0]["loss"]
    run = tmp_path / "run"
    for name in (
        "config.json",
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
        "metrics.jsonl",
        "samples.png",
        "reconstructions.png",
        "figures/samples-epoch-003.png",
    ):
        assert (run / name).is_file(), name
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines == history
    assert set(lines[0]) >= {"epoch", "loss", "recon", "kl", "test_loss", "seconds"}


def test_same_seed_same_losses_different_seed_different(tmp_path, small_model, small_data):
    strip = [
        {k: v for k, v in h.items() if k != "seconds"}
        for h in _train(tmp_path, small_model, small_data, "a")
    ]
    again = [
        {k: v for k, v in h.items() if k != "seconds"}
        for h in _train(tmp_path, small_model, small_data, "b")
    ]
    other = _train(tmp_path, small_model, small_data, "c", seed=4)
    assert strip == again
    assert other[0]["loss"] != strip[0]["loss"]


@pytest.mark.parametrize("binarize", ["none", "dynamic"])
def test_resume_after_interruption_equals_uninterrupted(
    monkeypatch, tmp_path, small_model, small_data, binarize
):
    _train(tmp_path, small_model, small_data, "whole", epochs=3, binarize=binarize)

    def crash_after_first_epoch(line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        start_run(
            small_model,
            quick_config(epochs=3, binarize=binarize),
            tmp_path / "cut",
            data=small_data,
            progress=False,
            log=crash_after_first_epoch,
        )
    history = _resume(monkeypatch, tmp_path / "cut", small_data)
    assert [h["epoch"] for h in history] == [1, 2, 3]  # the whole run's records
    whole = checkpoint.load_weights(tmp_path / "whole", small_model)
    cut = checkpoint.load_weights(tmp_path / "cut", small_model)
    for name, array in whole.items():
        np.testing.assert_array_equal(cut[name], array, err_msg=name)
    epochs = [
        json.loads(line)["epoch"]
        for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == [1, 2, 3]


def _resume(monkeypatch, run_dir, data, **kwargs):
    """resume_run loads data by name; hand it the fixture's arrays instead."""
    monkeypatch.setattr(TrainingData, "load", classmethod(lambda cls, config, **_: data))
    return resume_run(run_dir, progress=False, log=_quiet, **kwargs)


def test_resume_of_finished_run_redraws_its_figures_and_says_how_to_train_longer(
    monkeypatch, tmp_path, small_model, small_data
):
    run = tmp_path / "run"
    _train(tmp_path, small_model, small_data, epochs=2)
    (run / "samples.png").unlink()  # as if killed while drawing the final figures
    lines = []
    monkeypatch.setattr(TrainingData, "load", classmethod(lambda cls, config, **_: small_data))
    records = resume_run(run, progress=False, log=lines.append)
    assert [r["epoch"] for r in records] == [2]  # the checkpoint's epoch, nothing more to train
    assert (run / "samples.png").is_file()
    assert "has trained all 2 epochs" in lines[0] and "--epochs" in lines[0]
    with pytest.raises(ConfigError, match="already trained 2 epochs"):
        _resume(monkeypatch, run, small_data, epochs=1)
    assert [h["epoch"] for h in _resume(monkeypatch, run, small_data, epochs=3)] == [2, 3]
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3]


def test_non_empty_run_dir_is_refused_unless_forced(tmp_path, small_model, small_data):
    run = tmp_path / "run"
    _train(tmp_path, small_model, small_data, epochs=1)
    (run / "keep.txt").write_text("precious")
    with pytest.raises(ConfigError, match="not empty"):
        _train(tmp_path, small_model, small_data, epochs=1)
    config = quick_config(epochs=1)
    start_run(small_model, config, run, data=small_data, force=True, progress=False, log=_quiet)
    assert (run / "keep.txt").read_text() == "precious"


def test_a_folder_holding_only_the_lock_and_vaekit_temporaries_counts_as_empty(
    tmp_path, small_model, small_data
):
    """What a run killed before its first whole file leaves: a new run may start there."""
    run = tmp_path / "run"
    run.mkdir()
    (run / layout.LOCK_FILE).write_text("")
    (run / "config.json.tmp").write_text('{"format": "vaek')
    _train(tmp_path, small_model, small_data, epochs=1)
    assert not (run / "config.json.tmp").exists() and layout.is_run(run)


TRAIN_ONE_EPOCH = [
    "train",
    "--data",
    "mnist-small",
    "--engine",
    "numpy",
    "--epochs",
    "1",
    "--quiet",
]


def _snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_force_refuses_a_folder_that_is_not_a_vaekit_run(tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "figures").mkdir(parents=True)
    (mine / "config.json").write_text('{"format": "my-notes"}')
    (mine / "metrics.jsonl").write_text('{"epoch": 1, "loss": 1.0}\n')
    (mine / "figures" / "samples-epoch-001.png").write_bytes(b"my picture")
    before = _snapshot(tmp_path)
    argv = [*TRAIN_ONE_EPOCH]
    assert main([*argv, "--out", str(mine), "--force"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no vaekit run" in err[0], err
    assert _snapshot(tmp_path) == before


def test_force_never_deletes_through_a_symbolic_link(tmp_path, capsys):
    run, user = tmp_path / "run", tmp_path / "user"
    argv = [*TRAIN_ONE_EPOCH]
    assert main([*argv, "--out", str(run)]) == 0
    user.mkdir()
    (user / "samples-epoch-001.png").write_bytes(b"my picture")
    (user / "notes.txt").write_text("mine")
    shutil.rmtree(run / "figures")
    (run / "figures").symlink_to(user, target_is_directory=True)
    before = _snapshot(user)
    assert main([*argv, "--out", str(run), "--force"]) == 0
    assert _snapshot(user) == before
    assert not (run / "figures").is_symlink()


def test_force_keeps_the_users_files_inside_figures(tmp_path):
    run = tmp_path / "run"
    argv = [*TRAIN_ONE_EPOCH]
    assert main([*argv, "--sample-every", "1", "--out", str(run)]) == 0
    assert (run / "figures" / "samples-epoch-001.png").is_file()
    (run / "figures" / "poster.png").write_bytes(b"mine")
    assert main([*argv, "--sample-every", "5", "--out", str(run), "--force"]) == 0
    assert [p.name for p in (run / "figures").iterdir()] == ["poster.png"]


def test_divergence_stops_with_epoch_and_step_and_keeps_last_checkpoint(
    monkeypatch, tmp_path, small_data
):
    model = ModelConfig(hidden=(64,), latent_dim=8)
    data = TrainingData(train=small_data.train.copy(), test=small_data.test)
    _train(tmp_path, model, data, epochs=1)
    data.train[250:] = np.nan  # batch 3 of epoch 2 (ordered by the permutation) will see NaN
    with pytest.raises(TrainingDiverged) as diverged:
        _resume(monkeypatch, tmp_path / "run", data, epochs=2)
    message = str(diverged.value)
    assert re.search(r"epoch 2, step \d+; the checkpoint of epoch 1 is kept in ", message), message
    assert "--force" in message and "--lr 0.0001" in message, message  # --resume takes no --lr
    assert json.loads((tmp_path / "run" / "state.json").read_text())["epoch"] == 1


def test_divergence_at_the_first_step_says_nothing_was_kept(tmp_path, small_data):
    data = TrainingData(train=small_data.train.copy(), test=small_data.test)
    data.train[:] = np.nan
    with pytest.raises(TrainingDiverged) as diverged:
        _train(tmp_path, ModelConfig(hidden=(8,), latent_dim=2), data, epochs=1)
    message = str(diverged.value)
    assert "epoch 1, step 1; no epoch was saved; start again" in message, message
    assert "--force" in message and "checkpoint" not in message, message
    assert not (tmp_path / "run" / "state.json").exists()


def test_data_must_fit_the_model_and_likelihood(tmp_path, small_model, small_data):
    with pytest.raises(ConfigError, match="shape"):
        _train(tmp_path, ModelConfig(input_shape=(10,), hidden=(4,), latent_dim=2), small_data)
    loud = TrainingData(train=small_data.train * 2, test=None)
    with pytest.raises(DataError, match="gaussian"):
        _train(tmp_path, small_model, loud)
    assert not (tmp_path / "run").exists()  # nothing written before validation


def test_kl_warmup_schedule():
    assert kl_weight(1.0, 0, 1, 10) == 1.0
    assert kl_weight(2.0, 2, 5, 10) == pytest.approx(0.5)
    assert kl_weight(2.0, 2, 20, 10) == 2.0 and kl_weight(2.0, 2, 99, 10) == 2.0


def test_warmup_is_recorded_per_epoch(tmp_path, small_model, small_data):
    history = _train(tmp_path, small_model, small_data, epochs=2, kl_warmup=2)
    assert history[0]["beta"] == pytest.approx(0.5) and history[1]["beta"] == 1.0


def test_learning_rate_decays_per_epoch(tmp_path, small_model, small_data, monkeypatch):
    from vaekit.engines.torch import TorchEngine

    seen = []
    original = TorchEngine.set_learning_rate
    monkeypatch.setattr(
        TorchEngine, "set_learning_rate", lambda self, lr: (seen.append(lr), original(self, lr))
    )
    _train(tmp_path, small_model, small_data, epochs=3, lr=0.01, lr_decay=0.5)
    assert seen == pytest.approx([0.01, 0.005, 0.0025])
