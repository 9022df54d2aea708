"""Devices (auto, cpu, cuda, cuda:N, mps) and precision (fp32, bf16 autocast for the conv model).

The CUDA and MPS paths are checked on a CPU-only machine by faking what PyTorch reports
(``torch.cuda.is_available``, ``device_count``, ``get_device_capability``); bf16 autocast runs
the same code on the CPU. ``test_conv_bf16_trains_on_cuda`` runs only where PyTorch sees a GPU.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import quick_config
from vaekit.cli import main
from vaekit.config.limits import MAX_CUDA_INDEX
from vaekit.config.rules import check_device
from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.data.pipeline import TrainingData
from vaekit.engines import build_engine
from vaekit.engines.torch import engine as torch_engine
from vaekit.engines.torch.distributed import Group
from vaekit.errors import ConfigError
from vaekit.runs import checkpoint, config_file
from vaekit.runs.metrics import read_metrics
from vaekit.train.start import start_run

ACCEPTED = ["auto", "cpu", "cuda", "mps", "cuda:0", "cuda:7", f"cuda:{MAX_CUDA_INDEX}"]
REFUSED = ["gpu", "CPU", "cuda:", "cuda:N", "cuda:01", "cuda:-1", "cuda:1024", "cuda:0 ", "mps:0"]
CONV = ModelConfig(
    input_shape=(1, 28, 28), arch="conv", conv_channels=(8, 16), hidden=(32,), latent_dim=4
)
MLP = ModelConfig(hidden=(16,), latent_dim=2)
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="PyTorch sees a GPU here")


def _quiet(_line: str) -> None:
    pass


def refused(capsys, *argv: str) -> str:
    """The one line of a refused command (exit code 2, no traceback), without its prefix."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error: "), err
    return lines[0].removeprefix("vaekit: error: ")


@pytest.fixture
def two_gpus(monkeypatch):
    """PyTorch reports two CUDA GPUs of compute capability 8.0 (and no MPS)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


# --- device names: config and command line --------------------------------------------------


@pytest.mark.parametrize("device", ACCEPTED)
def test_config_accepts_the_device_names(device):
    assert check_device(device) == device
    assert TrainConfig(device=device).device == device


@pytest.mark.parametrize("device", [*REFUSED, None, 0])
def test_config_refuses_other_devices_naming_the_choices(device):
    with pytest.raises(ConfigError, match=r"auto, cpu, cuda, cuda:N \(N from 0 to 1023\) or mps"):
        TrainConfig(device=device)


@pytest.mark.parametrize("device", REFUSED)
@pytest.mark.parametrize("command", [["train", "--data", "mnist-small"], ["evaluate", "RUN"]])
def test_cli_refuses_other_devices_in_one_line(capsys, command, device):
    line = refused(capsys, *command, f"--device={device}")
    assert line.startswith("argument --device: device must be auto, cpu, cuda, cuda:N")
    assert repr(device) in line


def test_precision_is_a_stored_training_setting(capsys):
    assert TrainConfig().precision == "fp32"
    config = TrainConfig(precision="bf16")
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16"):
        TrainConfig(precision="fp16")
    assert "invalid choice: 'fp16'" in refused(
        capsys, "train", "--data", "mnist-small", "--precision", "fp16"
    )


# --- resolve_device --------------------------------------------------------------------------


@no_gpu
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_a_gpu_is_refused_naming_what_there_is(device):
    with pytest.raises(ConfigError, match=f"--device {device} .* no CUDA GPU; available here: cpu"):
        torch_engine.resolve_device(device)


def test_mps_without_one_is_refused(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no MPS .*; available here: cpu"):
        torch_engine.resolve_device("mps")


@no_gpu
def test_auto_and_cpu_resolve_to_the_cpu_here():
    assert torch_engine.resolve_device("auto") == torch.device("cpu")
    assert torch_engine.resolve_device("cpu") == torch.device("cpu")


def test_cuda_index_is_checked_against_the_gpus_pytorch_sees(two_gpus):
    assert torch_engine.available_devices() == ["cpu", "cuda:0", "cuda:1"]
    assert torch_engine.resolve_device("auto") == torch.device("cuda")
    assert torch_engine.resolve_device("cuda") == torch.device("cuda")
    assert torch_engine.resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match=r"sees 2 CUDA GPU\(s\), cuda:0 to cuda:1; available"):
        torch_engine.resolve_device("cuda:2")
    with pytest.raises(ConfigError, match="device must be"):
        torch_engine.resolve_device("gpu")


def test_auto_never_picks_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert torch_engine.available_devices() == ["cpu", "mps"]
    assert torch_engine.resolve_device("auto") == torch.device("cpu")
    assert torch_engine.resolve_device("mps") == torch.device("mps")


@pytest.mark.parametrize("device", ["cuda:0", "mps"])
def test_torchrun_refuses_one_named_device_for_every_process(device):
    with pytest.raises(ConfigError, match="torchrun"):
        build_engine(CONV, group=Group(rank=0, world_size=2, local_rank=0), device=device)
    assert not torch.distributed.is_initialized()  # refused before joining the group


def test_torchrun_gives_each_local_rank_its_gpu(two_gpus):
    group = Group(rank=3, world_size=4, local_rank=3)
    assert torch_engine._group_device(group, "cuda") == "cuda:1"
    assert torch_engine._group_device(group, "auto") == "cuda:1"
    assert torch_engine._group_device(group, "cpu") == "cpu"


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_the_numpy_engine_refuses_other_devices(device):
    with pytest.raises(ConfigError, match="numpy engine runs on the CPU only"):
        build_engine(MLP, "numpy", device=device)


# --- precision -------------------------------------------------------------------------------


def test_bf16_is_refused_for_the_numpy_engine_and_the_mlp(tmp_path, capsys):
    with pytest.raises(ConfigError, match="numpy engine .* not bf16"):
        build_engine(MLP, "numpy", precision="bf16")
    with pytest.raises(ConfigError, match="--precision bf16 is for --arch conv"):
        build_engine(MLP, precision="bf16", device="cpu")
    out = str(tmp_path / "run")
    line = refused(capsys, "train", "--data", "mnist-small", "--precision", "bf16", "--out", out)
    assert not (tmp_path / "run").exists()
    assert line.startswith("--precision bf16 is for --arch conv: the MLP's dense layers")


def test_bf16_needs_a_gpu_with_bfloat16_arithmetic(two_gpus, monkeypatch):
    cuda = torch.device("cuda", 1)
    torch_engine.check_precision("bf16", CONV, cuda)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    with pytest.raises(ConfigError, match="compute capability 8.0 or newer.*Fake GPU has none"):
        torch_engine.check_precision("bf16", CONV, cuda)
    torch_engine.check_precision("fp32", CONV, cuda)


def test_bf16_is_refused_on_mps():
    with pytest.raises(ConfigError, match="bf16 runs on cpu and cuda, not mps"):
        torch_engine.check_precision("bf16", CONV, torch.device("mps"))


def test_bf16_autocasts_the_networks_but_not_the_loss_or_the_weights(rng):
    engines = {p: build_engine(CONV, seed=1, device="cpu", precision=p) for p in ("fp32", "bf16")}
    x = rng.random((16, 1, 28, 28), dtype=np.float32)
    eps = rng.standard_normal((16, 4)).astype(np.float32)
    seen = {}

    def record(module, args, out):
        seen[module] = out.dtype

    conv = engines["bf16"].model.encoder.conv[0]
    conv.register_forward_hook(record)
    mu, logvar = engines["bf16"].encode(x)
    assert seen[conv] == torch.bfloat16  # the convolutions compute in bfloat16
    assert mu.dtype == logvar.dtype == np.float32  # what leaves the networks is float32
    (recon, kl), (recon_bf16, kl_bf16) = (e.elbo_terms(x, eps) for e in engines.values())
    assert recon_bf16.dtype == kl_bf16.dtype == np.float64
    np.testing.assert_allclose(recon_bf16, recon, rtol=0.02)  # bf16's 8-bit mantissa
    np.testing.assert_allclose(kl_bf16, kl, rtol=0.05, atol=1e-3)
    for engine in engines.values():
        engine.train_step(x, beta=1.0)
    arrays, _ = engines["bf16"].get_training_state()
    weights = engines["bf16"].get_weights()
    assert {a.dtype for a in (*arrays.values(), *weights.values())} == {np.dtype(np.float32)}


def test_conv_bf16_trains_on_the_cpu_like_fp32(tmp_path, small_data):
    data = TrainingData(train=small_data.train[:500], test=small_data.test[:100])
    history = {}
    for precision in ("fp32", "bf16"):
        config = quick_config(epochs=1, device="cpu", precision=precision, sample_every=10)
        run = tmp_path / precision
        history[precision] = start_run(CONV, config, run, data=data, progress=False, log=_quiet)[0]
        assert json.loads((run / "config.json").read_text())["train"]["precision"] == precision
        weights = checkpoint.load_weights(run, CONV)
        assert {w.dtype for w in weights.values()} == {np.dtype(np.float32)}
    for key in ("loss", "test_loss"):
        assert math.isfinite(history["bf16"][key])
        assert history["bf16"][key] == pytest.approx(history["fp32"][key], rel=0.02)


@pytest.mark.cuda
def test_conv_bf16_trains_on_cuda(tmp_path, capsys):
    """The suite's GPU test: the conv model on cuda in fp32 and bf16, one epoch of mnist-small;
    bf16's loss is finite and within 2% of fp32's, its weights float32; a GPU index past the
    last is refused."""
    losses = {}
    for precision in ("fp32", "bf16"):
        run = tmp_path / precision
        argv = ["train", "--data", "mnist-small", "--arch", "conv", "--epochs", "1", "--quiet"]
        argv += ["--device", "cuda", "--precision", precision, "--out", str(run)]
        assert main(argv) == 0
        (record,) = read_metrics(run)
        losses[precision] = record["test_loss"]
        weights = checkpoint.load_weights(run, config_file.read_config(run)[0])
        assert {w.dtype for w in weights.values()} == {np.dtype(np.float32)}
    assert math.isfinite(losses["bf16"])
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.02)
    capsys.readouterr()
    count = torch.cuda.device_count()
    argv = [
        "train",
        "--data",
        "mnist-small",
        "--device",
        f"cuda:{count}",
        "--out",
        str(tmp_path / "x"),
    ]
    line = refused(capsys, *argv)
    assert f"sees {count} CUDA GPU(s)" in line
