import json
import pickle

import numpy as np
import pytest
from safetensors.numpy import save_file

from vaekit import checkpoint
from vaekit.config import ModelConfig, TrainConfig
from vaekit.engines import build_engine
from vaekit.errors import CheckpointError

CFG = ModelConfig(hidden=(16,), latent_dim=3)


@pytest.fixture
def run(tmp_path, rng):
    """A run directory with config and a checkpoint after two steps."""
    engine = build_engine(CFG, seed=1)
    x = rng.uniform(size=(8, 1, 28, 28)).astype(np.float32)
    engine.train_step(x, 1.0)
    engine.train_step(x, 1.0)
    checkpoint.write_config(tmp_path, CFG, TrainConfig(), "train")
    checkpoint.save_checkpoint(tmp_path, engine, {"epoch": 1, "step": 2})
    return tmp_path, engine, x


def test_round_trip_restores_everything(run):
    run_dir, engine, x = run
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "config.json",
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
    ]
    other = build_engine(CFG, seed=99)
    state = checkpoint.load_checkpoint(run_dir, other)
    assert (state["epoch"], state["step"]) == (1, 2)
    assert other.train_step(x, 1.0) == engine.train_step(x, 1.0)


def test_open_run_gives_the_trained_model(run):
    run_dir, engine, x = run
    loaded = checkpoint.open_run(run_dir)
    np.testing.assert_array_equal(loaded.encode(x)[0], engine.encode(x)[0])
    model, train, record = checkpoint.read_config(run_dir)
    assert model == CFG and train == TrainConfig() and record["created_by"] == "train"


def test_truncated_weights_are_refused(run):
    run_dir, *_ = run
    path = run_dir / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="checksum"):
        checkpoint.open_run(run_dir)
    (run_dir / "state.json").unlink()  # without the checksum, the format check still catches it
    with pytest.raises(CheckpointError, match="safetensors"):
        checkpoint.open_run(run_dir)


def test_pickle_in_place_of_safetensors_is_refused_without_running_it(run, tmp_path_factory):
    run_dir, *_ = run
    marker = tmp_path_factory.mktemp("m") / "executed"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (run_dir / "model.safetensors").write_bytes(pickle.dumps(Exploit()))
    (run_dir / "state.json").unlink()
    with pytest.raises(CheckpointError, match="pickle"):
        checkpoint.open_run(run_dir)
    assert not marker.exists()


def test_shape_mismatch_is_refused(run):
    run_dir, engine, _ = run
    weights = engine.get_weights()
    weights["encoder.mu.weight"] = np.zeros((3, 15), np.float32)
    (run_dir / "state.json").unlink()
    save_file(weights, str(run_dir / "model.safetensors"))
    with pytest.raises(CheckpointError, match="encoder.mu.weight has shape"):
        checkpoint.open_run(run_dir)


def test_edited_config_is_refused(run):
    run_dir, *_ = run
    path = run_dir / "config.json"
    record = json.loads(path.read_text())
    record["model"]["latent_dim"] = 5
    path.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="shape"):
        checkpoint.open_run(run_dir)
    record["model"]["latent_dim"] = -5
    path.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="latent_dim"):
        checkpoint.open_run(run_dir)
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        checkpoint.open_run(run_dir)


def test_missing_run_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.open_run(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="missing"):
        checkpoint.open_run(tmp_path)


def _interrupted_save(run_dir, engine, epoch, renamed):
    """Simulate a crash during save: temporaries written, ``renamed`` files already moved."""
    checkpoint.save_checkpoint(run_dir, engine, {"epoch": epoch, "step": epoch})
    # undo the final renames of the ones not yet renamed, to stand where the crash left them
    for name in ("model.safetensors", "optimizer.safetensors", "state.json"):
        if name not in renamed:
            (run_dir / name).rename(run_dir / (name + ".tmp"))


@pytest.mark.parametrize(
    "renamed", [(), ("model.safetensors",), ("model.safetensors", "optimizer.safetensors")]
)
def test_save_interrupted_after_commit_record_rolls_forward(run, rng, renamed):
    run_dir, engine, x = run
    old = {p: (run_dir / p).read_bytes() for p in ("model.safetensors", "optimizer.safetensors")}
    engine.train_step(x, 1.0)
    for name, data in old.items():  # the previous files are still in place for unrenamed ones
        (run_dir / (name + ".keep")).write_bytes(data)
    _interrupted_save(run_dir, engine, 2, renamed)
    for name in old:
        if name not in renamed:
            (run_dir / (name + ".keep")).rename(run_dir / name)
    (run_dir / "state.json").write_text(json.dumps({"epoch": 1}))  # the old commit record
    other = build_engine(CFG, seed=5)
    assert checkpoint.load_checkpoint(run_dir, other)["epoch"] == 2
    np.testing.assert_array_equal(
        other.get_weights()["decoder.out.bias"], engine.get_weights()["decoder.out.bias"]
    )
    assert not list(run_dir.glob("*.tmp"))


def test_save_interrupted_before_commit_record_keeps_old_checkpoint(run):
    run_dir, engine, x = run
    engine.train_step(x, 1.0)
    (run_dir / "model.safetensors.tmp").write_bytes(b"half a file")
    (run_dir / "state.json.tmp").write_text('{"epoch": 2, "files": {"model.safe')
    other = build_engine(CFG, seed=5)
    assert checkpoint.load_checkpoint(run_dir, other)["epoch"] == 1
    assert not list(run_dir.glob("*.tmp"))


def test_clear_run_removes_only_run_files(run):
    run_dir, *_ = run
    (run_dir / "notes.txt").write_text("mine")
    (run_dir / "figures").mkdir()
    (run_dir / "figures" / "a.png").write_bytes(b"x")
    checkpoint.clear_run(run_dir)
    assert [p.name for p in run_dir.iterdir()] == ["notes.txt"]


def test_optimizer_mismatch_and_broken_state_are_refused(run):
    run_dir, *_ = run
    with pytest.raises(CheckpointError, match="optimizer is 'adam', this run uses 'sgd'"):
        checkpoint.load_checkpoint(run_dir, build_engine(CFG, optimizer="sgd"))
    state = json.loads((run_dir / "state.json").read_text())
    state["engine"] = "oops"
    (run_dir / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="incomplete"):
        checkpoint.load_checkpoint(run_dir, build_engine(CFG))
