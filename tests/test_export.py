"""ONNX export: the exported encoder and decoder, run in onnxruntime, agree with the engine."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from vaekit.api import export
from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.data import scaling
from vaekit.engines import build_engine
from vaekit.errors import ConfigError, MissingExtra
from vaekit.runs import best_weights, checkpoint, config_file

if os.environ.get("CI") != "true":  # CI installs the onnx extra and must run these tests
    for package in ("onnxruntime", *export.ONNX_PACKAGES):
        pytest.importorskip(package)

SHAPE = (1, 8, 8)
CASES = {
    "mlp-bernoulli-best": dict(hidden=(16,), latent_dim=3, activation="softplus"),
    "mlp-gated": dict(hidden=(16,), latent_dim=3, activation="gated"),
    "mlp-gaussian-conditional": dict(
        hidden=(16, 12),
        latent_dim=2,
        likelihood="gaussian",
        learn_sigma="per-dim",
        n_classes=3,
        activation="elu",
    ),
    "conv-bernoulli": dict(
        arch="conv", conv_channels=(4, 8), hidden=(), latent_dim=4, activation="leaky_relu"
    ),
    "conv-gaussian-conditional": dict(
        arch="conv", conv_channels=(4,), hidden=(10,), latent_dim=3, n_classes=4,
        likelihood="gaussian", sigma=0.5, activation="tanh",
    ),
}  # fmt: skip


def _save_run(run_dir, config: ModelConfig, seed: int):
    """A run of ``config`` holding the weights of an engine seeded ``seed``; that engine."""
    engine = build_engine(config, "torch", seed=seed, device="cpu")
    run_dir.mkdir()
    config_file.write_config(run_dir, config, TrainConfig(), "train")
    checkpoint.save_checkpoint(run_dir, engine, {"epoch": 1, "step": 1})
    return engine


def _session(path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check_signature(session, signature: dict) -> None:
    """The manifest's names, shapes and dtypes are the model's own."""
    dtypes = {"float32": "tensor(float)", "int64": "tensor(int64)"}
    for declared, actual in (
        (signature["inputs"], session.get_inputs()),
        (signature["outputs"], session.get_outputs()),
    ):
        assert [spec["name"] for spec in declared] == [arg.name for arg in actual]
        assert [spec["shape"] for spec in declared] == [arg.shape for arg in actual]
        assert [dtypes[spec["dtype"]] for spec in declared] == [arg.type for arg in actual]


@pytest.mark.parametrize("case", list(CASES))
def test_exported_models_agree_with_the_engine(tmp_path, case):
    config = ModelConfig(input_shape=SHAPE, **CASES[case])
    run_dir = tmp_path / "run"
    engine = _save_run(run_dir, config, seed=1)
    which = "best" if case.endswith("best") else "last"
    if which == "best":  # the best weights are seed 1's, the last checkpoint another's
        best_weights.save_best(run_dir, checkpoint.weights_bytes(engine), 1, 100.0, "val")
        other = build_engine(config, "torch", seed=2, device="cpu")
        checkpoint.save_checkpoint(run_dir, other, {"epoch": 2, "step": 2})
    rng = np.random.default_rng(0)
    fitted = None
    if config.likelihood == "gaussian":
        raw = rng.normal(3.0, 2.0, size=(20, *SHAPE))
        fitted = scaling.fit("standardize", [raw], raw.dtype)
        fitted.save(run_dir)

    out = export.export_onnx(run_dir, tmp_path / "onnx", which=which)

    manifest = json.loads((out / export.MANIFEST_FILE).read_text())
    assert manifest["format"] == export.MANIFEST_FORMAT
    assert manifest["checkpoint"] == which
    assert ModelConfig.from_dict(manifest["model"]) == config
    assert manifest["likelihood"]["name"] == config.likelihood
    if fitted is None:
        assert manifest["scaling"] == {"method": "auto", "fitted": False, "rule": export.AUTO_RULE}
    else:
        record = dict(manifest["scaling"])
        assert record.pop("fitted") is True and record.pop("formula")
        restored = scaling.Scaling.from_json(record)
        np.testing.assert_array_equal(restored.shift, fitted.shift)
        np.testing.assert_array_equal(restored.scale, fitted.scale)
    encoder = _session(out / export.ENCODER_FILE)
    decoder = _session(out / export.DECODER_FILE)
    _check_signature(encoder, manifest["models"]["encoder"])
    _check_signature(decoder, manifest["models"]["decoder"])
    for n in (1, 7):  # the batch axis is dynamic
        x = rng.random((n, *SHAPE), dtype=np.float32)
        z = rng.standard_normal((n, config.latent_dim), dtype=np.float32)
        y = rng.integers(0, config.n_classes, n) if config.conditional else None
        labels = {} if y is None else {"y": y.astype(np.int64)}
        mu, logvar = encoder.run(None, {"x": x, **labels})
        (x_mean,) = decoder.run(None, {"z": z, **labels})
        expected_mu, expected_logvar = engine.encode(x, y)
        np.testing.assert_allclose(mu, expected_mu, rtol=0, atol=1e-5)
        np.testing.assert_allclose(logvar, expected_logvar, rtol=0, atol=1e-5)
        assert x_mean.shape == (n, *SHAPE)
        np.testing.assert_allclose(x_mean, engine.decode(z, y), rtol=0, atol=1e-5)


def test_gaussian_manifest_records_the_learned_sigma(tmp_path):
    config = ModelConfig(input_shape=(3,), hidden=(4,), latent_dim=2, likelihood="gaussian",
                         learn_sigma="scalar", sigma=0.25)  # fmt: skip
    engine = build_engine(config, "torch", seed=0, device="cpu")
    record = export.likelihood_record(config, engine.model)
    assert record["name"] == "gaussian"
    np.testing.assert_allclose(record["sigma"], [0.25], rtol=1e-6)
    fixed = ModelConfig(input_shape=(3,), hidden=(4,), likelihood="gaussian", sigma=0.5)
    fixed_engine = build_engine(fixed, "torch", seed=0, device="cpu")
    assert export.likelihood_record(fixed, fixed_engine.model)["sigma"] == 0.5


def test_signatures_of_an_unconditional_model_take_no_labels():
    signatures = export.model_signatures(ModelConfig(input_shape=(5,), latent_dim=2))
    assert [i["name"] for i in signatures["encoder"]["inputs"]] == ["x"]
    assert signatures["encoder"]["inputs"][0]["shape"] == ["N", 5]
    assert [i["name"] for i in signatures["decoder"]["inputs"]] == ["z"]
    assert signatures["decoder"]["outputs"][0]["shape"] == ["N", 5]


def test_an_unrelated_file_in_the_out_folder_is_refused_and_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="notes.txt.*not part of a vaekit ONNX export"):
        export.export_onnx(tmp_path / "no-run", out)
    assert (out / "notes.txt").read_text() == "mine"


def test_a_previous_export_may_be_replaced(tmp_path):
    """Only the files of an export (here stand-ins) may be in the way; anything else is kept."""
    out = tmp_path / "out"
    out.mkdir()
    for name in export.EXPORT_FILES:
        (out / name).write_bytes(b"old")
    export.check_out_dir(out)  # accepted: only a previous export's files
    (out / "extra").mkdir()
    with pytest.raises(ConfigError, match="extra"):
        export.check_out_dir(out)


def test_a_file_or_a_link_as_the_out_folder_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        export.check_out_dir(target)
    (tmp_path / "link").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(ConfigError, match="not a folder"):
        export.check_out_dir(tmp_path / "link")
    out = tmp_path / "out"
    out.mkdir()
    (out / export.ENCODER_FILE).symlink_to(target)
    with pytest.raises(ConfigError, match=export.ENCODER_FILE):
        export.check_out_dir(out)


def test_a_missing_extra_is_named_in_one_line(monkeypatch, tmp_path):
    real = export.importlib.util.find_spec
    monkeypatch.setattr(
        export.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxscript" else real(name, *a),
    )
    with pytest.raises(MissingExtra) as caught:
        export.export_onnx(tmp_path / "run", tmp_path / "out")
    message = str(caught.value)
    assert message == (
        "vaekit export --format onnx needs the onnx extra: pip install 'vaekit[onnx]'"
    )
    assert caught.value.extra == "onnx"
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A run whose folder name is not UTF-8 (byte 0xFF), as a Linux file system allows."""
    root = tmp_path_factory.mktemp("export")
    run = root / os.fsdecode(b"run-\xff")
    _save_run(run, ModelConfig(input_shape=SHAPE, **CASES["mlp-bernoulli-best"]), seed=1)
    return run


def test_a_run_whose_path_is_not_utf8_exports_with_its_path_kept(small_run, tmp_path, capsys):
    from vaekit.cli import main

    out = tmp_path / "out"
    assert main(["export", str(small_run), "--out", str(out)]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(export.EXPORT_FILES)
    manifest = json.loads((out / export.MANIFEST_FILE).read_bytes())  # valid UTF-8 JSON
    assert os.fsencode(manifest["run"]) == os.fsencode(small_run.resolve())  # lossless
    out = tmp_path / os.fsdecode(b"out-\xfe")  # printed, escaped, not refused
    assert main(["export", str(small_run), "--out", str(out)]) == 0, capsys.readouterr().err
    assert "out-\\udcfe" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["a new folder", "an empty folder", "a previous export"])
def test_an_export_that_fails_writing_leaves_all_or_none(small_run, tmp_path, monkeypatch, where):
    """Writing the manifest fails (a full disk, say): a new or empty folder receives none of
    the three files, and a previous export stays as it was, whole."""
    import errno

    out = tmp_path / "out"
    if where != "a new folder":
        out.mkdir()
    if where == "a previous export":
        export.export_onnx(small_run, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()} if out.exists() else {}
    real = export.disk.write_atomic

    def full_disk(path, data):
        if path.name.startswith(export.MANIFEST_FILE):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(export.disk, "write_atomic", full_disk)
    with pytest.raises(OSError):
        export.export_onnx(small_run, out)
    after = {p.name: p.read_bytes() for p in out.iterdir()} if out.exists() else {}
    assert after == before  # none of the new files, the previous export untouched
    assert not (tmp_path / "out.tmp").exists()
    monkeypatch.setattr(export.disk, "write_atomic", real)
    export.export_onnx(small_run, out)  # what was left over is no obstacle
    assert sorted(p.name for p in out.iterdir()) == sorted(export.EXPORT_FILES)


def test_temporaries_of_a_stopped_export_are_no_obstacle(small_run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / (export.ENCODER_FILE + ".tmp")).write_bytes(b"half an encoder")
    export.export_onnx(small_run, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(export.EXPORT_FILES)
    staged = tmp_path / "again.tmp"  # the staging folder of a stopped export into "again"
    staged.mkdir()
    (staged / export.DECODER_FILE).write_bytes(b"half a decoder")
    export.export_onnx(small_run, tmp_path / "again")
    assert not staged.exists()
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == sorted(export.EXPORT_FILES)
