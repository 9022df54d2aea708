"""The TensorBoard logger: what it writes, read back with TensorBoard's own reader."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.errors import ConfigError, MissingExtra
from vaekit.train import tracking

if os.environ.get("CI") != "true":  # CI installs the tensorboard extra and must run these tests
    pytest.importorskip("tensorboard")

MODEL = ModelConfig(input_shape=(1, 4, 4), hidden=(8, 6), latent_dim=2, decoder_hidden=None)
TRAIN = TrainConfig(epochs=2, lr=0.003, data="mnist-small", image_size=None)


def _reader(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def _scalars(accumulator, tag):
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def _write_a_run(tmp_path):
    logger = tracking.make_logger("tensorboard", tmp_path, MODEL, TRAIN)
    steps = [(1, 10.5, 9.0, 1.5, 0.5, 1e-3), (2, 9.25, 8.0, 1.25, 1.0, 1e-3)]
    for step in steps:
        logger.step(*step)
    records = [
        {"epoch": 1, "step": 2, "loss": 9.5, "recon": 8.5, "kl": 1.0, "beta": 1.0,
         "val_loss": 9.75, "seconds": 0.5, "note": "text", "flag": True},
        {"epoch": 2, "step": 4, "loss": 8.5, "recon": 7.5, "kl": 1.0, "beta": 1.0,
         "val_loss": 9.0, "seconds": 0.25, "test_loss": float("nan")},
    ]  # fmt: skip
    for record in records:
        logger.epoch(record)
    png = tmp_path / "samples.png"
    Image.fromarray(np.arange(30 * 20, dtype=np.uint8).reshape(30, 20)).save(png)
    logger.image("samples", png, 2)
    logger.image("reconstructions", np.full((6, 5, 3), 0.5, dtype=np.float32), 4)
    logger.close(records[-1])
    return steps, records


def test_scalars_images_and_settings_read_back(tmp_path):
    steps, records = _write_a_run(tmp_path)
    accumulator = _reader(tmp_path / tracking.TENSORBOARD_DIR)

    for column, name in enumerate(("loss", "recon", "kl", "beta", "lr"), start=1):
        expected = [(s[0], pytest.approx(s[column], rel=1e-6)) for s in steps]
        assert _scalars(accumulator, f"step/{name}") == expected
    for key in ("epoch", "loss", "recon", "kl", "beta", "val_loss", "seconds"):
        expected = [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in records]
        assert _scalars(accumulator, f"epoch/{key}") == expected  # at the epoch's last step
    tags = accumulator.Tags()["scalars"]
    for absent in ("epoch/step", "epoch/note", "epoch/flag", "epoch/test_loss"):
        assert absent not in tags  # the axis, text, bools and non-finite values are no scalars
    assert _scalars(accumulator, "final/val_loss") == [(4, 9.0)]

    samples = accumulator.Images("samples")
    assert [(i.step, i.height, i.width) for i in samples] == [(2, 30, 20)]
    reconstructions = accumulator.Images("reconstructions")
    assert [(i.step, i.height, i.width) for i in reconstructions] == [(4, 6, 5)]


def test_settings_are_hyperparameters_with_the_final_metrics(tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    _write_a_run(tmp_path)
    accumulator = _reader(tmp_path / tracking.TENSORBOARD_DIR)
    content = accumulator.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metrics = {m.name.tag for m in experiment.experiment.metric_infos}
    assert {"final/loss", "final/val_loss", "final/seconds"} <= metrics
    assert "final/test_loss" not in metrics
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["train.lr"].number_value == pytest.approx(0.003)
    assert hparams["train.data"].string_value == "mnist-small"
    assert hparams["model.hidden"].string_value == "[8, 6]"
    assert hparams["model.decoder_hidden"].string_value == "none"
    assert set(hparams) == set(tracking.hparams_of(MODEL, TRAIN))


def test_hparams_are_flat_numbers_strings_and_bools():
    flat = tracking.hparams_of(MODEL, TRAIN)
    assert flat["model.input_shape"] == "[1, 4, 4]"
    assert flat["model.latent_dim"] == 2
    assert flat["train.image_size"] == "none"
    assert all(isinstance(v, (str, int, float, bool)) for v in flat.values())
    assert len(flat) == len(MODEL.to_dict()) + len(TRAIN.to_dict())


def test_make_logger_none_and_unknown(tmp_path):
    assert tracking.make_logger("none", tmp_path, MODEL, TRAIN) is None
    assert not (tmp_path / tracking.TENSORBOARD_DIR).exists()
    with pytest.raises(ConfigError, match="logger must be one of none, tensorboard"):
        tracking.make_logger("wandb", tmp_path, MODEL, TRAIN)


def test_images_of_other_shapes_are_refused():
    assert tracking.as_hwc(np.zeros((3, 4))).shape == (3, 4, 1)
    with pytest.raises(ConfigError, match="H×W×C"):
        tracking.as_hwc(np.zeros((3, 4, 2)))


def test_a_missing_extra_is_named_in_one_line(monkeypatch, tmp_path):
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(
        tracking.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real(name, *a),
    )
    with pytest.raises(MissingExtra) as caught:
        tracking.make_logger("tensorboard", tmp_path, MODEL, TRAIN)
    assert str(caught.value) == (
        "--logger tensorboard needs the tensorboard extra: pip install 'vaekit[tensorboard]'"
    )
    assert not (tmp_path / tracking.TENSORBOARD_DIR).exists()


def test_a_resumed_run_replaces_the_steps_it_trains_again(tmp_path):
    first = tracking.make_logger("tensorboard", tmp_path, MODEL, TRAIN)
    for step in (1, 2, 3, 4):  # an attempt interrupted after its checkpoint of step 2
        first.step(step, 10.0 + step, 9.0, 1.0, 1.0, 1e-3)
    first.writer.close()
    again = tracking.make_logger("tensorboard", tmp_path, MODEL, TRAIN, purge_step=3)
    again.step(3, 0.5, 0.25, 0.25, 1.0, 1e-3)
    again.close({"loss": 0.5})
    accumulator = _reader(tmp_path / tracking.TENSORBOARD_DIR)
    assert _scalars(accumulator, "step/loss") == [(1, 11.0), (2, 12.0), (3, 0.5)]


def test_an_interrupted_and_resumed_run_shows_each_epoch_and_step_once(
    tmp_path, monkeypatch, capsys
):
    """Epoch 2's record reaches TensorBoard before its checkpoint is saved; the attempt is
    stopped between the two and resumed, which trains epoch 2 again: TensorBoard's reader
    shows each epoch and each step once (the epochs sit on the step axis, which the resumed
    writer purges from the first step it trains again)."""
    from vaekit.cli import main
    from vaekit.runs import checkpoint

    run = tmp_path / "run"
    argv = ["train", "--data", "mnist-small", "--epochs", "3", "--hidden", "8", "--latent-dim"]
    argv += ["2", "--engine", "numpy", "--logger", "tensorboard", "--out", str(run), "--quiet"]
    real = checkpoint.take_checkpoint

    def stopped_at_epoch_2(engine, state):
        if state["epoch"] == 2:
            raise KeyboardInterrupt
        return real(engine, state)

    monkeypatch.setattr(checkpoint, "take_checkpoint", stopped_at_epoch_2)
    assert main(argv) == 130
    monkeypatch.setattr(checkpoint, "take_checkpoint", real)
    assert main(["train", "--resume", "--out", str(run), "--quiet"]) == 0

    accumulator = _reader(run / tracking.TENSORBOARD_DIR)
    assert [value for _, value in _scalars(accumulator, "epoch/epoch")] == [1.0, 2.0, 3.0]
    steps = [step for step, _ in _scalars(accumulator, "step/loss")]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) == 3 * 40  # 5,000 / 128
