"""Your own encoder and decoder (vaekit.model.custom_networks): recorded by import path, rebuilt on
load in a fresh process with the same outputs, resumed bit for bit, kept in safetensors (nothing
pickled), exported to ONNX, and every wrong network refused in one line."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import networks_for_tests
from cli_runner import resume_matches_whole, user_error
from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.engines import build_engine
from vaekit.errors import ConfigError
from vaekit.model import custom_networks, parameters
from vaekit.runs import checkpoint, config_file, layout, loading

TESTS = Path(__file__).resolve().parent
SHAPE = (1, 8, 8)
NETS = "networks_for_tests"
CONV = ["--encoder-module", f"{NETS}:ConvEncoder", "--decoder-module", f"{NETS}:ConvDecoder"]
SMALL = ["--latent-dim", "3", "--batch-size", "50", "--quiet"]


def fresh_python(code: str, *, importable: bool = True) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter; ``importable``: with tests/ on PYTHONPATH, so that it can
    import networks_for_tests as a user's installed module."""
    env = dict(os.environ)
    paths = [env.get("PYTHONPATH", "")]
    if importable:
        paths.insert(0, str(TESTS))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )


def config(**overrides) -> ModelConfig:
    settings = dict(input_shape=SHAPE, latent_dim=3, hidden=(8,))
    return ModelConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """200 random 8×8 grey-level images as a .npy file."""
    path = tmp_path_factory.mktemp("data") / "images.npy"
    rng = np.random.default_rng(5)
    np.save(path, rng.integers(0, 256, size=(200, *SHAPE), dtype=np.uint8))
    return path


@pytest.fixture(scope="module")
def runs(images, tmp_path_factory) -> dict[str, Path]:
    """Runs with the conv networks of networks_for_tests, trained through the command line: 2
    epochs straight, and 1 epoch (to be resumed)."""
    from vaekit.cli import main

    root = tmp_path_factory.mktemp("custom")
    out = {}
    for name, epochs in (("straight", 2), ("cut", 1)):
        out[name] = root / name
        argv = ["train", "--data", images, *SMALL, *CONV, "--epochs", epochs, "--out", out[name]]
        assert main([str(a) for a in argv]) == 0
    return out


# --- the command line -----------------------------------------------------------------------


def test_the_run_records_the_import_paths_and_safetensors_hold_the_weights(runs):
    run = runs["straight"]
    record = json.loads((run / layout.CONFIG_FILE).read_text())["model"]
    assert record["encoder_module"] == f"{NETS}:ConvEncoder"
    assert record["decoder_module"] == f"{NETS}:ConvDecoder"
    weights = load_file(run / layout.WEIGHTS_FILE)
    shapes = parameters.shapes(config_file.read_config(run)[0])
    assert {k: v.shape for k, v in weights.items()} == shapes
    assert shapes["encoder.conv.weight"] == (4, 1, 3, 3)
    assert shapes["decoder.deconv.weight"] == (4, 1, 4, 4)
    for path in run.rglob("*"):  # nothing pickled: no pickle or torch.save archive anywhere
        if path.is_file():
            assert not path.read_bytes()[:4].startswith((b"\x80", b"PK\x03\x04")), path


def test_resume_is_bit_exact(runs, capsys):
    resume_matches_whole(capsys, runs["cut"], runs["straight"])


def test_a_fresh_process_rebuilds_the_networks_with_the_same_outputs(runs, tmp_path):
    run, x = runs["straight"], np.random.default_rng(0).random((5, *SHAPE), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    code = f"""
import numpy as np
from vaekit.runs.loading import open_run
from vaekit.errors import ConfigError
try:
    open_run({str(run)!r}, device="cpu")
except ConfigError as refusal:  # no consent: the module is not imported
    assert "--trust-code" in str(refusal)
else:
    raise AssertionError("opened without consent")
engine = open_run({str(run)!r}, device="cpu", trust_code=True)
mu, logvar = engine.encode(np.load({str(tmp_path / "x.npy")!r}))
np.save({str(tmp_path / "mu.npy")!r}, mu)
np.save({str(tmp_path / "mean.npy")!r}, engine.decode(mu))
"""
    done = fresh_python(code)
    assert done.returncode == 0, done.stderr
    engine = loading.open_run(run, device="cpu")
    mu, _ = engine.encode(x)
    np.testing.assert_array_equal(np.load(tmp_path / "mu.npy"), mu)
    np.testing.assert_array_equal(np.load(tmp_path / "mean.npy"), engine.decode(mu))


def test_a_run_whose_module_cannot_be_imported_is_refused_in_one_line(runs, tmp_path):
    args = [str(runs["straight"]), "-n", "2", "--npy", str(tmp_path / "s.npy"), "--trust-code"]
    code = f"import sys; from vaekit.cli import main; sys.exit(main({['sample', *args]!r}))"
    done = fresh_python(code, importable=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error: "), done.stderr
    assert f"no module named '{NETS}'" in lines[0] and "PYTHONPATH" in lines[0]
    assert not (tmp_path / "s.npy").exists()


CWD_NETWORKS = f"""
from pathlib import Path
(Path(__file__).parent / "imported.txt").write_text("the module ran")
from {NETS} import ConvDecoder, ConvEncoder
"""


def test_a_run_naming_a_module_in_the_working_directory_runs_nothing_without_consent(
    runs, tmp_path
):
    """``python -m vaekit`` puts the working directory on sys.path, so a module shipped beside
    a downloaded run could be imported from there: without --trust-code the command refuses in
    one line naming it, and the module's code never runs; with --trust-code the run opens."""
    (tmp_path / "cwdnets.py").write_text(CWD_NETWORKS)
    run = tmp_path / "downloaded"
    run.mkdir()
    for entry in runs["straight"].iterdir():
        if entry.is_file():
            (run / entry.name).write_bytes(entry.read_bytes())
    record = json.loads((run / layout.CONFIG_FILE).read_text())
    record["model"].update(
        encoder_module="cwdnets:ConvEncoder", decoder_module="cwdnets:ConvDecoder"
    )
    (run / layout.CONFIG_FILE).write_text(json.dumps(record))
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    command = [sys.executable, "-m", "vaekit", "sample", "downloaded", "-n", "2", "--out", "s.png"]
    for extra in ([], ["evaluate", "downloaded", "--quiet"]):
        argv = command if not extra else [sys.executable, "-m", "vaekit", *extra]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert "encoder_module cwdnets:ConvEncoder" in lines[0] and "--trust-code" in lines[0]
        assert not (tmp_path / "imported.txt").exists(), "the module ran without consent"
    done = subprocess.run(
        [*command, "--trust-code"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "imported.txt").exists() and (tmp_path / "s.png").exists()


def test_consent_is_the_flag_the_argument_or_a_module_already_imported(runs, tmp_path, capsys):
    from vaekit.api.estimator import VAE as Estimator
    from vaekit.cli import main

    run = runs["straight"]
    assert NETS in sys.modules  # imported by this test module: the user's own code
    assert config_file.read_config(run)[0].encoder_module == f"{NETS}:ConvEncoder"
    assert Estimator.load(run).transform(np.zeros((2, *SHAPE), np.float32)).shape == (2, 3)
    assert main(["sample", str(run), "-n", "2", "--out", str(tmp_path / "s.png")]) == 0
    record = json.loads((run / layout.CONFIG_FILE).read_text())["model"]
    unknown = {**record, "encoder_module": "never_imported_module:Net"}
    with pytest.raises(ConfigError, match="never_imported_module.*--trust-code"):
        custom_networks.check_consent(unknown, "config.json", trust_code=False)
    assert "never_imported_module" not in sys.modules  # the refusal imports nothing
    with pytest.raises(ConfigError, match="no module named 'never_imported_module'"):
        custom_networks.check_consent(unknown, "config.json", trust_code=True)  # tries, consented


@pytest.mark.parametrize(
    ("flag", "name", "fragment"),
    [
        ("--encoder-module", "no_such_package.nets:Encoder", "no module named 'no_such_package'"),
        ("--encoder-module", f"{NETS}:Missing", "has no attribute 'Missing'"),
        ("--encoder-module", f"{NETS}:NotAModule", "not a torch.nn.Module subclass"),
        ("--encoder-module", f"{NETS}:FailingEncoder", "RuntimeError: no weights for you"),
        ("--encoder-module", f"{NETS}:OneHeadEncoder", "OneHeadEncoder returned shape (2, 3)"),
        ("--encoder-module", f"{NETS}:BatchNormEncoder", "num_batches_tracked of dtype"),
        ("--decoder-module", f"{NETS}:WideDecoder", "returned shape (2, 65) for 2 inputs"),
        ("--decoder-module", f"{NETS}:SigmaDecoder", "defines log_sigma"),
        ("--decoder-module", "no-colon", "must be an import path"),
    ],
)
def test_each_wrong_network_is_refused_in_one_line(images, tmp_path, capsys, flag, name, fragment):
    out = tmp_path / "run"
    argv = ["train", "--data", images, *SMALL, flag, name, "--epochs", "1", "--out", out]
    line = user_error(capsys, *argv)
    assert fragment in line and name in line
    assert not out.exists()


def test_the_numpy_engine_refuses_own_networks_in_one_line(images, tmp_path, capsys):
    argv = ["train", "--data", images, *SMALL, *CONV, "--engine", "numpy", "--out", tmp_path]
    assert "numpy" in user_error(capsys, *argv).lower()


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("raise ImportError('needs a GPU library')", "(ImportError: needs a GPU library)"),
        ("import no_such_dependency", "(ModuleNotFoundError: No module named 'no_such_dep"),
    ],
)
def test_a_module_that_fails_while_importing_is_named(tmp_path, monkeypatch, source, fragment):
    (tmp_path / "broken_nets.py").write_text(source + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        custom_networks.load_class("broken_nets:Encoder", "encoder_module")
    message = str(caught.value)
    assert message.startswith("encoder_module broken_nets:Encoder: importing broken_nets failed")
    assert fragment in message and "\n" not in message


# --- shapes, the meta device and log σ ------------------------------------------------------


def test_module_shapes_are_the_state_dict_built_on_the_meta_device():
    cfg = config(encoder_module=f"{NETS}:ConvEncoder")
    before = torch.random.get_rng_state()
    shapes = custom_networks.module_shapes(cfg, "encoder")
    assert torch.equal(torch.random.get_rng_state(), before)  # no draw from torch's generator
    real = networks_for_tests.ConvEncoder(cfg).state_dict()
    assert shapes == {f"encoder.{k}": tuple(v.shape) for k, v in real.items()}
    assert parameters.shapes(cfg).items() >= shapes.items()
    assert "encoder.mu.weight" not in parameters.shapes(cfg)  # vaekit's decoder, not its encoder
    assert "decoder.out.weight" in parameters.shapes(cfg)


def test_a_learned_sigma_lives_on_the_own_decoder_and_trains():
    cfg = config(
        decoder_module=f"{NETS}:MLPDecoder", likelihood="gaussian", learn_sigma="per-dim", sigma=0.5
    )
    assert parameters.shapes(cfg)["decoder.log_sigma"] == (64,)
    engine = build_engine(cfg, "torch", seed=0, device="cpu")
    start = engine.get_weights()["decoder.log_sigma"]
    np.testing.assert_allclose(start, np.log(0.5), rtol=1e-6)
    x = np.random.default_rng(1).normal(size=(16, *SHAPE)).astype(np.float32)
    for _ in range(3):
        engine.train_step(x, 1.0)
    assert not np.array_equal(engine.get_weights()["decoder.log_sigma"], start)


def test_the_shape_check_leaves_the_random_stream_and_the_training_mode_alone():
    cfg = config(encoder_module=f"{NETS}:MLPEncoder")
    torch.manual_seed(3)
    module = custom_networks.build(cfg, "encoder")
    after_build = torch.rand(1)
    torch.manual_seed(3)
    networks_for_tests.MLPEncoder(cfg)
    assert torch.equal(torch.rand(1), after_build) and module.training


# --- the Python API -------------------------------------------------------------------------


def test_the_estimator_takes_classes_records_paths_and_reloads_in_a_fresh_process(tmp_path):
    from sklearn.base import clone

    from vaekit.api.estimator import VAE as Estimator

    x = np.random.default_rng(2).random((60, 16), dtype=np.float32)
    params = dict(latent_dim=2, epochs=1, batch_size=20, seed=0)
    nets = dict(encoder_module=networks_for_tests.MLPEncoder, decoder_module=f"{NETS}:MLPDecoder")
    model = Estimator(**params, **nets).fit(x)
    assert model.model_config_.encoder_module == f"{NETS}:MLPEncoder"
    assert model.get_params()["encoder_module"] is networks_for_tests.MLPEncoder
    assert clone(model).get_params()["encoder_module"] is networks_for_tests.MLPEncoder
    model.save(tmp_path / "saved")
    np.save(tmp_path / "x.npy", x)
    code = f"""
import numpy as np
from vaekit.api.estimator import VAE
model = VAE.load({str(tmp_path / "saved")!r}, device="cpu", trust_code=True)
np.save({str(tmp_path / "z.npy")!r}, model.transform(np.load({str(tmp_path / "x.npy")!r})))
"""
    done = fresh_python(code)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "z.npy"), model.transform(x))


def test_the_estimator_refuses_a_class_it_could_not_import_again():
    from vaekit.api.estimator import VAE as Estimator

    class Local(networks_for_tests.MLPEncoder):
        pass

    x = np.random.default_rng(2).random((20, 16), dtype=np.float32)
    with pytest.raises(ConfigError, match="Local is defined in a function"):
        Estimator(encoder_module=Local, latent_dim=2, epochs=1).fit(x)
    Local.__module__, Local.__qualname__ = "__main__", "Local"
    with pytest.raises(ConfigError, match="defined in __main__"):
        Estimator(encoder_module=Local, latent_dim=2, epochs=1).fit(x)


# --- ONNX -----------------------------------------------------------------------------------


needs_onnx = pytest.mark.skipif(
    os.environ.get("CI") != "true"
    and any(importlib.util.find_spec(p) is None for p in ("onnxruntime", "onnx", "onnxscript")),
    reason="the onnx extra and onnxruntime are not installed",
)


@needs_onnx
def test_the_own_networks_export_to_onnx_and_agree_with_the_engine(runs, tmp_path):
    import onnxruntime

    from vaekit.api.export import export_onnx

    out = export_onnx(runs["straight"], tmp_path / "onnx")
    engine = loading.open_run(runs["straight"], "torch", "cpu")
    rng = np.random.default_rng(0)
    x = rng.random((3, *SHAPE), dtype=np.float32)
    z = rng.standard_normal((3, 3), dtype=np.float32)
    cpu = ["CPUExecutionProvider"]
    sessions = {
        name: onnxruntime.InferenceSession(str(out / f"{name}.onnx"), providers=cpu)
        for name in ("encoder", "decoder")
    }
    mu, logvar = sessions["encoder"].run(None, {"x": x})
    want_mu, want_logvar = engine.encode(x)
    np.testing.assert_allclose(mu, want_mu, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logvar, want_logvar, rtol=1e-4, atol=1e-5)
    (mean,) = sessions["decoder"].run(None, {"z": z})
    np.testing.assert_allclose(mean, engine.decode(z), rtol=1e-4, atol=1e-5)


@needs_onnx
def test_a_network_torch_export_cannot_trace_is_refused_in_one_line(tmp_path, capsys):
    cfg = config(decoder_module=f"{NETS}:BranchingDecoder")
    engine = build_engine(cfg, "torch", seed=0, device="cpu")
    run = tmp_path / "run"
    run.mkdir()
    config_file.write_config(run, cfg, TrainConfig(), "train")
    checkpoint.save_checkpoint(run, engine, {"epoch": 1, "step": 1})
    line = user_error(capsys, "export", run, "--format", "onnx", "--out", tmp_path / "onnx")
    assert f"cannot trace your network {NETS}:BranchingDecoder" in line
