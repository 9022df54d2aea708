"""The loop set held on the engine's device (--data-on-device): the GPU path's code, run on
the CPU. Batches are sliced and binarized there, steps read nothing back, and the numbers,
resume and divergence contracts are the host path's."""

import json
import re

import numpy as np
import pytest
import torch

from cli_runner import run_cli, user_error
from conftest import quick_config
from vaekit.config.files import read_settings
from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.data import binarize, pipeline
from vaekit.data.pipeline import TrainingData
from vaekit.engines.torch import engine as torch_engine
from vaekit.errors import ConfigError, TrainingDiverged
from vaekit.runs import checkpoint, config_file
from vaekit.train import loop, start
from vaekit.train.loop import data_on_device, fit
from vaekit.train.start import resume_run, start_run

MODEL = ModelConfig(hidden=(32,), latent_dim=4)


def _quiet(_line):
    pass


def _fit(data, model=MODEL, on_step=None, **overrides):
    config = quick_config(**overrides)
    engine = start.engine_for(model, config)
    return engine, fit(engine, config, data, on_step=on_step)


def _numbers(history):
    return [[h[k] for k in ("loss", "recon", "kl", "test_loss")] for h in history]


@pytest.mark.parametrize("mode", ["none", "threshold"])
def test_without_binarization_randomness_the_device_path_gives_the_host_paths_losses(
    small_data, mode
):
    data = TrainingData(
        train=binarize(small_data.train, mode), test=binarize(small_data.test, mode)
    )
    steps = {"no": [], "yes": []}
    runs = {
        where: _fit(
            data,
            binarize=mode,
            data_on_device=where,
            on_step=lambda engine, state, metrics, beta, where=where: steps[where].append(
                (metrics.loss, metrics.recon, metrics.kl)
            ),
        )
        for where in ("no", "yes")
    }
    (host, host_history), (device, device_history) = runs["no"], runs["yes"]
    unread = _fit(data, binarize=mode, data_on_device="yes")[1]  # read once per epoch
    assert _numbers(unread) == _numbers(device_history)
    np.testing.assert_allclose(_numbers(device_history), _numbers(host_history), rtol=1e-5)
    assert len(steps["yes"]) == len(steps["no"]) == 20  # every step's numbers, for on_step
    np.testing.assert_allclose(steps["yes"], steps["no"], rtol=1e-5)
    for name, array in host.get_weights().items():
        np.testing.assert_allclose(device.get_weights()[name], array, atol=1e-5, err_msg=name)


@pytest.mark.parametrize(
    "model",
    [
        ModelConfig(hidden=(16,), latent_dim=4, n_classes=10),
        ModelConfig(hidden=(16,), latent_dim=4, objective="iwae", iw_samples=3),
        ModelConfig(hidden=(16,), latent_dim=4, objective="tcvae", beta=4.0),
    ],
    ids=["conditional", "iwae", "tcvae"],
)
def test_every_objective_and_labels_train_alike_from_the_device(mnist_small, model):
    train, _ = mnist_small
    data = TrainingData(train=train.x[:500], test=None, train_labels=train.y[:500])
    host, device = (_fit(data, model, data_on_device=where)[1] for where in ("no", "yes"))
    numbers = [[h[k] for k in ("loss", "recon", "kl")] for h in (*host, *device)]
    np.testing.assert_allclose(numbers[2:], numbers[:2], rtol=1e-5)


def test_dynamic_binarization_on_the_device_draws_bernoulli_samples_of_the_grey_levels(
    monkeypatch,
):
    levels = np.linspace(0, 1, 16, dtype=np.float32)
    data = TrainingData(train=np.tile(levels, (400, 1)), test=None)
    seen = []
    backward = torch_engine.TorchEngine.backward

    def spy(self, xb, *args):
        seen.append(xb.numpy().copy())
        return backward(self, xb, *args)

    monkeypatch.setattr(torch_engine.TorchEngine, "backward", spy)
    _fit(
        data,
        ModelConfig(input_shape=(16,), hidden=(8,), latent_dim=2),
        binarize="dynamic",
        data_on_device="yes",
        epochs=5,
    )
    draws = np.concatenate(seen)
    assert draws.shape == (2000, 16) and set(np.unique(draws)) == {0.0, 1.0}
    sigma = np.sqrt(levels * (1 - levels) / len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - levels) <= 5 * sigma + 1e-12)


def test_resume_on_the_device_path_with_dynamic_binarization_is_bit_exact(
    monkeypatch, tmp_path, small_data
):
    def train(name, epochs):
        config = quick_config(epochs=epochs, binarize="dynamic", data_on_device="yes")
        return start_run(
            MODEL, config, tmp_path / name, data=small_data, progress=False, log=_quiet
        )

    whole = train("whole", 2)
    train("cut", 1)
    monkeypatch.setattr(TrainingData, "load", classmethod(lambda cls, config, **_: small_data))
    resumed = resume_run(tmp_path / "cut", epochs=2, progress=False, log=_quiet)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in (whole[1], resumed[-1])]
    assert strip[0] == strip[1]
    weights = [checkpoint.load_weights(tmp_path / name, MODEL) for name in ("whole", "cut")]
    for name, array in weights[0].items():
        np.testing.assert_array_equal(weights[1][name], array, err_msg=name)
    states = [json.loads((tmp_path / n / "state.json").read_text()) for n in ("whole", "cut")]
    assert states[0]["step"] == states[1]["step"] == 20


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("read_every_step", [False, True])
def test_a_non_finite_loss_stops_with_the_weights_of_the_step_before(
    monkeypatch, small_data, optimizer, read_every_step
):
    """Step 13 (of epoch 2) reports NaN and the steps after it are finite again: none of them
    changes the weights or the optimizer, and the loop names step 13 when it next reads."""
    bad, calls, before = 13, [], {}
    backward = torch_engine.TorchEngine.backward

    def poisoned(self, *args):
        values = backward(self, *args)
        calls.append(len(calls) + 1)
        if calls[-1] == bad:
            before["weights"] = self.get_weights()
            before["state"] = self.get_training_state()
            return values * float("nan")
        return values

    monkeypatch.setattr(torch_engine.TorchEngine, "backward", poisoned)
    seen = []
    config = quick_config(
        data_on_device="yes", optimizer=optimizer, momentum=0.9 if optimizer == "sgd" else 0.0
    )
    engine = start.engine_for(MODEL, config)
    state = loop.LoopState.fresh(config.seed)
    hook = (
        (lambda engine, state, metrics, beta: seen.append(state.step)) if read_every_step else None
    )
    with pytest.raises(TrainingDiverged, match=r"^the loss became nan at epoch 2, step 13$"):
        fit(engine, config, small_data, state=state, on_step=hook)
    assert calls[-1] == (bad if read_every_step else 20)  # read at once, or at the epoch's end
    assert seen == (list(range(1, bad)) if read_every_step else [])
    assert state.step == bad - 1 and state.epoch == 1
    for name, array in before["weights"].items():
        np.testing.assert_array_equal(engine.get_weights()[name], array, err_msg=name)
    arrays, meta = engine.get_training_state()
    assert meta["step"] == before["state"][1]["step"] == bad - 1
    for name, array in before["state"][0].items():
        np.testing.assert_array_equal(arrays[name], array, err_msg=name)


def test_nan_inputs_on_the_device_path_stop_at_the_first_step(small_data):
    data = TrainingData(train=np.full_like(small_data.train, np.nan), test=None)
    with pytest.raises(TrainingDiverged, match=r"at epoch 1, step 1$"):
        _fit(data, data_on_device="yes", epochs=1)


def test_progress_lines_read_the_device_at_their_steps(small_data, capsys):
    config = quick_config(epochs=1, batch_size=10, data_on_device="yes")
    fit(start.engine_for(MODEL, config), config, small_data, progress=True)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 9, lines  # steps 10, 20, … 90 of 100
    assert all(re.fullmatch(r"epoch 1/1: step \d+0/100  loss \d+\.\d\d", line) for line in lines)


def test_auto_keeps_the_data_on_the_host_on_a_cpu_and_numpy(small_data):
    for engine_name in ("torch", "numpy"):
        config = TrainConfig(engine=engine_name)
        engine = start.engine_for(MODEL, config)
        assert config.data_on_device == "auto"
        assert data_on_device(config, small_data, engine) is None


@pytest.mark.parametrize("free, held", [(8 * 1000 * 784 + 1, True), (8 * 1000 * 784, False)])
def test_auto_holds_the_data_on_a_cuda_gpu_where_it_fits_in_half_the_free_memory(
    monkeypatch, small_data, free, held
):
    engine = start.engine_for(MODEL, TrainConfig(device="cpu"))
    engine.device = torch.device("cuda")  # as a GPU engine, with the upload stubbed out
    monkeypatch.setattr(torch_engine, "TorchDataOnDevice", lambda *args: "held")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free, 2 * free))
    result = engine.put_data_on_device(small_data.train, None, False, required=False)
    assert result == ("held" if held else None)


def test_the_setting_round_trips_and_old_records_read_as_auto(tmp_path):
    assert (
        TrainConfig.from_dict(TrainConfig(data_on_device="yes").to_dict()).data_on_device == "yes"
    )
    old = TrainConfig().to_dict()
    del old["data_on_device"]
    assert TrainConfig.from_dict(old).data_on_device == "auto"
    with pytest.raises(ConfigError, match="data_on_device must be one of auto, yes, no"):
        TrainConfig(data_on_device="maybe")
    (tmp_path / "train.toml").write_text('[train]\ndata_on_device = "no"\n')
    assert read_settings(tmp_path / "train.toml").train == {"data_on_device": "no"}


def test_the_cli_flag_is_stored_in_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data", "mnist-small", "--hidden", "8", "--latent-dim", "2", "--epochs", 1]
    flags = ["--data-on-device", "yes", "--sample-every-steps", "20", "--quiet"]
    code, _, err = run_cli(capsys, *argv, *flags, "--out", run)
    assert code == 0, err
    assert config_file.read_config(run)[1].data_on_device == "yes"
    assert (run / "figures" / "samples-step-0000020.png").is_file()
    line = user_error(capsys, "train", *argv, "--data-on-device", "maybe", "--out", tmp_path / "b")
    assert "--data-on-device" in line


def test_yes_is_refused_for_numpy_and_streamed_data_before_a_run_exists(
    tmp_path, capsys, monkeypatch
):
    x = np.random.default_rng(0).integers(0, 256, size=(300, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    argv = ["train", "--data", tmp_path / "x.npy", "--hidden", "8", "--latent-dim", "2"]
    run = tmp_path / "run"
    line = user_error(capsys, *argv, "--engine", "numpy", "--data-on-device", "yes", "--out", run)
    assert "numpy engine trains from the host's memory" in line and not run.exists()
    monkeypatch.setattr(pipeline, "STREAM_BYTES", 0)  # the .npy file is read in batches
    line = user_error(capsys, *argv, "--data-on-device", "yes", "--out", run)
    assert "read in batches from disk" in line and not run.exists()
    code, _, err = run_cli(capsys, *argv, "--epochs", 1, "--quiet", "--out", run)
    assert code == 0, err  # auto: the host path


def test_yes_is_refused_under_torchrun(monkeypatch, small_data):
    engine = start.engine_for(MODEL, TrainConfig())
    monkeypatch.setattr(loop.distributed, "from_environment", lambda: object())
    with pytest.raises(ConfigError, match="under torchrun each process"):
        data_on_device(TrainConfig(data_on_device="yes"), small_data, engine)
    assert data_on_device(TrainConfig(), small_data, engine) is None
