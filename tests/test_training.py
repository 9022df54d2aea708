import json

import numpy as np
import pytest

from conftest import quick_config
from vaekit import checkpoint
from vaekit.config import ModelConfig
from vaekit.errors import ConfigError, DataError, TrainingDiverged
from vaekit.training import TrainingData, kl_weight, resume_run, start_run


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
    monkeypatch.setattr(TrainingData, "load", classmethod(lambda cls, config: data))
    return resume_run(run_dir, progress=False, log=_quiet, **kwargs)


def test_resume_of_finished_run_redraws_its_figures_and_says_how_to_train_longer(
    monkeypatch, tmp_path, small_model, small_data
):
    run = tmp_path / "run"
    _train(tmp_path, small_model, small_data, epochs=2)
    (run / "samples.png").unlink()  # as if killed while drawing the final figures
    lines = []
    monkeypatch.setattr(TrainingData, "load", classmethod(lambda cls, config: small_data))
    records = resume_run(run, progress=False, log=lines.append)
    assert [r["epoch"] for r in records] == [1, 2]
    assert (run / "samples.png").is_file()
    assert "has trained all 2 epochs" in lines[0] and "--epochs" in lines[0]
    with pytest.raises(ConfigError, match="already trained 2 epochs"):
        _resume(monkeypatch, run, small_data, epochs=1)
    assert [h["epoch"] for h in _resume(monkeypatch, run, small_data, epochs=3)] == [1, 2, 3]


def test_non_empty_run_dir_is_refused_unless_forced(tmp_path, small_model, small_data):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("precious")
    with pytest.raises(ConfigError, match="not empty"):
        _train(tmp_path, small_model, small_data, epochs=1)
    assert [p.name for p in run.iterdir()] == ["keep.txt"]
    start_run(
        small_model,
        quick_config(epochs=1),
        run,
        data=small_data,
        force=True,
        progress=False,
        log=_quiet,
    )
    assert (run / "keep.txt").read_text() == "precious"


def test_divergence_stops_with_epoch_and_step_and_keeps_last_checkpoint(
    monkeypatch, tmp_path, small_data
):
    model = ModelConfig(hidden=(64,), latent_dim=8)
    data = TrainingData(train=small_data.train.copy(), test=small_data.test)
    _train(tmp_path, model, data, epochs=1)
    data.train[250:] = np.nan  # batch 3 of epoch 2 (ordered by the permutation) will see NaN
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step \d+.*epoch 1"):
        _resume(monkeypatch, tmp_path / "run", data, epochs=2)
    assert json.loads((tmp_path / "run" / "state.json").read_text())["epoch"] == 1


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
