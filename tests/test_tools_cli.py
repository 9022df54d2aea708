"""The command line's ways into other tools: --logger tensorboard (read back by TensorBoard's own
reader), --config FILE (a run repeated exactly; presets as TOML), and export --format onnx."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from safetensors.numpy import load_file

from cli_runner import run_cli, user_error
from vaekit.runs import config_file, layout, loading
from vaekit.runs.metrics import read_metrics
from vaekit.train import tracking

TINY = ["--data", "mnist-small", "--hidden", "16", "--latent-dim", "2", "--batch-size", "500"]


def refused(capsys, *argv, words):
    line = user_error(capsys, *argv)
    assert words in line, line


def weights(run):
    return load_file(run / layout.WEIGHTS_FILE)


def test_tensorboard_logger_writes_steps_epochs_figures_and_settings(tmp_path, capsys):
    if os.environ.get("CI") != "true":
        pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", *TINY, "--epochs", 2, "--logger", "tensorboard",
                             "--out", run, "--quiet")  # fmt: skip
    assert code == 0, err
    reader = EventAccumulator(str(run / tracking.TENSORBOARD_DIR), size_guidance={"images": 0})
    reader.Reload()
    records = read_metrics(run)
    steps = records[-1]["step"]  # 10 batches of 500 per epoch
    assert [e.step for e in reader.Scalars("step/loss")] == list(range(1, steps + 1))
    for key in ("epoch", "loss", "recon", "kl", "test_loss"):  # at the step ending the epoch
        logged = [(e.step, e.value) for e in reader.Scalars(f"epoch/{key}")]
        assert logged == [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in records]
    for tag in ("samples", "reconstructions"):
        assert [i.step for i in reader.Images(tag)] == [r["step"] for r in records]
    content = reader.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["model.latent_dim"].number_value == 2
    assert start.session_start_info.hparams["train.logger"].string_value == "tensorboard"


def test_force_replaces_a_runs_event_files_and_keeps_other_files(tmp_path, capsys):
    if os.environ.get("CI") != "true":
        pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    argv = ["train", *TINY, "--epochs", 1, "--logger", "tensorboard", "--out", run, "--quiet"]
    assert run_cli(capsys, *argv)[0] == 0
    (run / tracking.TENSORBOARD_DIR / "notes.txt").write_text("mine")
    before = set((run / tracking.TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    assert run_cli(capsys, *argv, "--force")[0] == 0
    after = set((run / tracking.TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    assert len(after) == 1 and not (before & after)
    assert (run / tracking.TENSORBOARD_DIR / "notes.txt").read_text() == "mine"


def test_a_missing_tensorboard_is_named_before_anything_is_written(tmp_path, capsys, monkeypatch):
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(
        tracking.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real(name, *a),
    )
    run = tmp_path / "run"
    refused(capsys, "train", *TINY, "--epochs", 1, "--logger", "tensorboard", "--out", run,
            words="pip install 'vaekit[tensorboard]'")  # fmt: skip
    assert not run.exists()


def test_a_runs_config_json_repeats_the_run_exactly(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    assert run_cli(capsys, "train", *TINY, "--epochs", 2, "--seed", 3, "--out", first,
                   "--quiet")[0] == 0  # fmt: skip
    code, out, err = run_cli(capsys, "train", "--config", first / "config.json",
                             "--out", second, "--quiet")  # fmt: skip
    assert code == 0, err
    a, b = weights(first), weights(second)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert config_file.read_config(first)[:2] == config_file.read_config(second)[:2]


def test_flags_override_a_config_file_and_presets_print_valid_toml(tmp_path, capsys):
    code, toml, _ = run_cli(capsys, "presets", "--show", "pytorch-example", "--format", "toml")
    assert code == 0
    path = tmp_path / "preset.toml"
    path.write_text(toml)
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--config", path, *TINY, "--epochs", 1,
                             "--out", run, "--quiet")  # fmt: skip
    assert code == 0, err
    model, train, _ = config_file.read_config(run)
    assert (model.hidden, model.latent_dim, train.epochs, train.batch_size) == ((16,), 2, 1, 500)
    assert train.data.endswith("mnist-small")
    assert (
        train.lr
        == json.loads(run_cli(capsys, "presets", "--show", "pytorch-example")[1])["train"]["lr"]
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[train]\nepohcs = 3\n", "unknown setting [train] 'epohcs'; the nearest valid one is "
         "'epochs'"),
        ("latent_dim = 'two'\n", "latent_dim"),
        ("[train\n", "line 1"),
    ],
)  # fmt: skip
def test_a_bad_config_file_is_refused_in_one_line(tmp_path, capsys, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    run = tmp_path / "run"
    refused(capsys, "train", "--config", path, "--out", run, words=words)
    assert not run.exists()


def test_export_writes_onnx_models_that_onnxruntime_runs(tmp_path, capsys):
    if os.environ.get("CI") != "true":
        pytest.importorskip("onnxruntime")
    import onnxruntime

    run, out = tmp_path / "run", tmp_path / "onnx"
    assert run_cli(capsys, "train", *TINY, "--epochs", 1, "--out", run, "--quiet")[0] == 0
    code, stdout, err = run_cli(capsys, "export", run, "--format", "onnx", "--out", out)
    assert code == 0, err
    manifest = json.loads((out / "vaekit-onnx.json").read_text())
    assert manifest["scaling"]["method"] == "unit"
    engine = loading.open_run(run, "torch", "cpu")
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    session = onnxruntime.InferenceSession(str(out / "encoder.onnx"))
    name = session.get_inputs()[0].name
    mu, logvar = session.run(None, {name: x})
    expected = engine.encode(x)
    np.testing.assert_allclose(mu, expected[0], atol=1e-5)
    np.testing.assert_allclose(logvar, expected[1], atol=1e-5)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "keep.txt").write_text("mine")
    refused(capsys, "export", run, "--out", tmp_path / "elsewhere", words="keep.txt")
    assert (tmp_path / "elsewhere" / "keep.txt").read_text() == "mine"
