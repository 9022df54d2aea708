"""Run directories: the checkpoint round trip, damaged and hostile files, crash recovery by the
writer, readers that change nothing, the one-writer lock, and metrics read as a stream."""

import hashlib
import json
import os
import pickle
import tracemalloc

import numpy as np
import pytest
from safetensors.numpy import save, save_file

from vaekit import disk
from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.engines import build_engine
from vaekit.errors import CheckpointError
from vaekit.model import parameters
from vaekit.runs import best_weights, checkpoint, config_file, layout, loading, lock
from vaekit.runs.metrics import keep_metrics_until, last_metrics, read_metrics

CFG = ModelConfig(hidden=(16,), latent_dim=3)


@pytest.fixture
def run(tmp_path, rng):
    """A run directory with config and a checkpoint after two steps."""
    engine = build_engine(CFG, seed=1)
    x = rng.uniform(size=(8, 1, 28, 28)).astype(np.float32)
    engine.train_step(x, 1.0)
    engine.train_step(x, 1.0)
    config_file.write_config(tmp_path, CFG, TrainConfig(), "train")
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
    loaded = loading.open_run(run_dir)
    np.testing.assert_array_equal(loaded.encode(x)[0], engine.encode(x)[0])
    model, train, record = config_file.read_config(run_dir)
    assert model == CFG and train == TrainConfig() and record["created_by"] == "train"


def test_truncated_weights_are_refused(run):
    run_dir, *_ = run
    path = run_dir / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="checksum"):
        loading.open_run(run_dir)
    (run_dir / "state.json").unlink()  # without the checksum, the format check still catches it
    with pytest.raises(CheckpointError, match="safetensors"):
        loading.open_run(run_dir)


def test_pickle_in_place_of_safetensors_is_refused_without_running_it(run, tmp_path_factory):
    run_dir, *_ = run
    marker = tmp_path_factory.mktemp("m") / "executed"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (run_dir / "model.safetensors").write_bytes(pickle.dumps(Exploit()))
    (run_dir / "state.json").unlink()
    with pytest.raises(CheckpointError, match="pickle"):
        loading.open_run(run_dir)
    assert not marker.exists()


def test_shape_mismatch_is_refused(run):
    run_dir, engine, _ = run
    weights = engine.get_weights()
    weights["encoder.mu.weight"] = np.zeros((3, 15), np.float32)
    (run_dir / "state.json").unlink()
    save_file(weights, str(run_dir / "model.safetensors"))
    with pytest.raises(CheckpointError, match="encoder.mu.weight has shape"):
        loading.open_run(run_dir)


def test_edited_config_is_refused(run):
    run_dir, *_ = run
    path = run_dir / "config.json"
    record = json.loads(path.read_text())
    record["model"]["latent_dim"] = 5
    path.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="shape"):
        loading.open_run(run_dir)
    record["model"]["latent_dim"] = -5
    path.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="latent_dim"):
        loading.open_run(run_dir)
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        loading.open_run(run_dir)


def test_missing_run_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        loading.open_run(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="missing"):
        loading.open_run(tmp_path)


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
    checkpoint.recover(run_dir, CFG)
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
    checkpoint.recover(run_dir, CFG)
    assert checkpoint.load_checkpoint(run_dir, other)["epoch"] == 1
    assert not list(run_dir.glob("*.tmp"))


def test_clear_run_removes_only_run_files(run):
    run_dir, *_ = run
    (run_dir / "notes.txt").write_text("mine")
    (run_dir / "figures").mkdir()
    for name in ("samples-epoch-003.png", "reconstructions-epoch-003.png"):
        (run_dir / "figures" / name).write_bytes(b"x")
    (run_dir / "figures" / "samples-step-0000100.png.tmp").write_bytes(b"x")
    layout.clear_run(run_dir)
    assert [p.name for p in run_dir.iterdir()] == ["notes.txt"]
    (run_dir / "figures").mkdir()
    (run_dir / "figures" / "samples-epoch-001.png").write_bytes(b"x")
    (run_dir / "figures" / "my-poster.png").write_bytes(b"mine")
    layout.clear_run(run_dir)
    assert [p.name for p in (run_dir / "figures").iterdir()] == ["my-poster.png"]


def test_clear_run_removes_every_file_train_writes(tmp_path):
    """A real run (figures every epoch, traversals for its small latent, disentanglement's
    record): --force's clearing leaves only the user's own file and the lock (which --force
    holds while it clears)."""
    from vaekit.cli import main
    from vaekit.draw.gallery import TRAVERSALS
    from vaekit.measure.run_disentanglement import RESULT_FILE

    run_dir = tmp_path / "run"
    argv = ["train", "--data", "mnist-small", "--epochs", "1", "--latent-dim", "2"]
    assert main([*argv, "--hidden", "16", "--quiet", "--out", str(run_dir)]) == 0
    assert (run_dir / TRAVERSALS).is_file() and RESULT_FILE in layout.RUN_ENTRIES
    (run_dir / "notes.txt").write_text("mine")
    layout.clear_run(run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes.txt", layout.LOCK_FILE]


def test_clear_run_never_follows_a_symbolic_link(run, tmp_path_factory):
    run_dir, *_ = run
    user = tmp_path_factory.mktemp("user")
    (user / "samples-epoch-001.png").write_bytes(b"my picture")
    (user / "config.json").write_text("{}")
    (run_dir / "figures").symlink_to(user, target_is_directory=True)
    (run_dir / "metrics.jsonl").symlink_to(user / "config.json")
    layout.clear_run(run_dir)
    assert not (run_dir / "figures").exists() and not (run_dir / "metrics.jsonl").exists()
    assert sorted(p.name for p in user.iterdir()) == ["config.json", "samples-epoch-001.png"]
    assert (user / "samples-epoch-001.png").read_bytes() == b"my picture"


def test_optimizer_mismatch_and_broken_state_are_refused(run):
    run_dir, *_ = run
    with pytest.raises(CheckpointError, match="optimizer is 'adam', this run uses 'sgd'"):
        checkpoint.load_checkpoint(run_dir, build_engine(CFG, optimizer="sgd"))
    state = json.loads((run_dir / "state.json").read_text())
    state["engine"] = "oops"
    (run_dir / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="incomplete"):
        checkpoint.load_checkpoint(run_dir, build_engine(CFG))


# --- readers change nothing -------------------------------------------------------------------


def snapshot(run_dir):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run_dir.iterdir()}


def _weights_equal(got, want):
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize(
    "renamed, new",
    [
        ((), False),  # temporaries and the commit record written, nothing renamed yet
        (("model.safetensors",), True),  # new weights in place, state.json still the old one
        (("model.safetensors", "optimizer.safetensors"), True),
        (("model.safetensors", "optimizer.safetensors", "state.json"), True),
    ],
)
def test_a_reader_during_a_save_gets_a_whole_checkpoint_and_changes_nothing(run, renamed, new):
    run_dir, engine, x = run
    old = engine.get_weights()
    engine.train_step(x, 1.0)
    keep = {n: (run_dir / n).read_bytes() for n in ("model.safetensors", "optimizer.safetensors")}
    _interrupted_save(run_dir, engine, 2, renamed)
    for name, data in keep.items():  # the files not renamed yet are still the old ones
        if name not in renamed:
            (run_dir / name).write_bytes(data)
    if "state.json" not in renamed:
        state = json.loads((run_dir / "state.json.tmp").read_text())
        state["files"]["model.safetensors"] = hashlib.sha256(keep["model.safetensors"]).hexdigest()
        (run_dir / "state.json").write_text(json.dumps(state))  # the old commit record
    before = snapshot(run_dir)
    _weights_equal(checkpoint.load_weights(run_dir, CFG), engine.get_weights() if new else old)
    loading.open_run(run_dir)
    assert snapshot(run_dir) == before


def test_a_reader_leaves_a_save_in_progress_alone(run):
    """The reported bug: a reader deleted the temporaries of the save the trainer was writing."""
    run_dir, engine, _ = run
    (run_dir / "model.safetensors.tmp").write_bytes(b"half of the next epoch's weights")
    (run_dir / "optimizer.safetensors.tmp").write_bytes(b"")
    before = snapshot(run_dir)
    _weights_equal(loading.open_run(run_dir).get_weights(), engine.get_weights())
    assert snapshot(run_dir) == before


def test_a_reader_reads_again_when_saves_move_on_between_its_reads(run, monkeypatch):
    run_dir, engine, x = run
    real_read, reads = checkpoint.read_regular, []

    def read_then_two_saves_happen(path, limit, error):
        data = real_read(path, limit, error)
        if path.name == "model.safetensors":
            reads.append(path)
            if len(reads) == 1:  # the writer commits epoch 2 and is renaming epoch 3 into place
                engine.train_step(x, 1.0)
                checkpoint.save_checkpoint(run_dir, engine, {"epoch": 2, "step": 3})
                engine.train_step(x, 1.0)
                _interrupted_save(run_dir, engine, 3, ("model.safetensors",))
        return data

    monkeypatch.setattr(checkpoint, "read_regular", read_then_two_saves_happen)
    _weights_equal(checkpoint.load_weights(run_dir, CFG), engine.get_weights())
    assert len(reads) == 2


def test_a_run_without_weights_yet_says_so(run):
    run_dir, *_ = run
    for name in ("model.safetensors", "optimizer.safetensors", "state.json"):
        (run_dir / name).unlink()
    with pytest.raises(CheckpointError, match="no saved weights yet"):
        loading.open_run(run_dir)


# --- hostile weights files: checked before they are read ----------------------------------------


def _fifo(path):
    os.mkfifo(path)


def _dev_zero(path):
    path.symlink_to("/dev/zero")


def _sparse(path):
    with open(path, "wb") as f:
        f.truncate(6 * 2**30)


@pytest.mark.parametrize("make", [_fifo, _dev_zero, _sparse], ids=["fifo", "dev-zero", "sparse"])
@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors"])
def test_weights_that_are_not_a_regular_file_of_a_fitting_size_are_refused_unread(run, make, name):
    run_dir, *_ = run
    state = json.loads((run_dir / "state.json").read_text())
    (run_dir / name).unlink()
    make(run_dir / name)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="not a regular file|larger than"):
            if name == "model.safetensors":
                (run_dir / "state.json").unlink()  # nothing to check the weights against
                loading.open_run(run_dir)
            else:  # only resuming reads the optimizer state
                checkpoint.load_checkpoint(run_dir, build_engine(CFG))
        assert tracemalloc.get_traced_memory()[1] < 16 * 2**20  # nothing big was read
    finally:
        tracemalloc.stop()
    assert state  # the record the optimizer case reads


def test_size_limit_follows_the_parameter_shapes():
    engine = build_engine(CFG, seed=1)
    weights = len(save(engine.get_weights(), metadata={"format": "vaekit"}))
    limit = checkpoint.safetensors_size_limit(CFG, 1)
    assert weights < limit < 8 * parameters.count(CFG) + 2 * weights  # float64 fits, not much more
    assert checkpoint.safetensors_size_limit(CFG, 2) > 2 * limit - 2 * 4096


# --- the one-writer lock -------------------------------------------------------------------------


def test_the_writer_lock_names_its_holder_and_is_released(tmp_path):
    with lock.writing(tmp_path):
        holder = json.loads((tmp_path / layout.LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid()
        assert layout.holds_nothing(tmp_path)  # the lock does not make a folder non-empty
        for attempt in (lock.check_not_busy, lambda d: lock.writing(d).__enter__()):
            with pytest.raises(CheckpointError, match=f"another process \\(pid {os.getpid()}: "):
                attempt(tmp_path)
        layout.clear_run(tmp_path)  # --force keeps the lock it holds
        assert (tmp_path / layout.LOCK_FILE).exists()
    assert (tmp_path / layout.LOCK_FILE).read_text() == ""
    lock.check_not_busy(tmp_path)
    with lock.writing(tmp_path):
        pass
    assert layout.LOCK_FILE in layout.RUN_ENTRIES


# --- metrics, read as a stream ----------------------------------------------------------------


def test_metrics_are_read_line_by_line_and_a_huge_line_is_skipped(tmp_path):
    lines = [json.dumps({"epoch": 1, "loss": 2.0}), "x" * (20 * 2**20), '{"epoch": 2, "loss": 1.0}']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n" + '{"epoch": 3, "lo')
    tracemalloc.start()
    records = read_metrics(tmp_path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert records == [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.0}]
    assert peak < 2**20  # the 20 MB line is never held whole
    assert read_metrics(tmp_path, keys=("epoch",)) == [{"epoch": 1}, {"epoch": 2}]
    assert last_metrics(tmp_path, 3) == {"epoch": 2, "loss": 1.0}  # epoch 3's is cut


def test_resume_drops_the_epochs_after_the_checkpoint_as_a_stream(tmp_path):
    record = {"epoch": 0, **{f"value_{i}": 1 / 3 for i in range(10)}}  # 300 bytes a line
    with open(tmp_path / "metrics.jsonl", "w") as f:
        for epoch in range(1, 50_001):  # about 15 MB
            f.write(json.dumps(dict(record, epoch=epoch)) + "\n")
        f.write("x" * (2**20) + "\n")
    tracemalloc.start()
    keep_metrics_until(tmp_path, 40_000)
    last = last_metrics(tmp_path, 40_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**20
    assert last == dict(record, epoch=40_000)
    assert [r["epoch"] for r in read_metrics(tmp_path, ("epoch",))] == list(range(1, 40_001))
    assert not (tmp_path / "metrics.jsonl.tmp").exists()


def test_best_weights_verify_or_are_absent_whenever_a_save_stops(run, monkeypatch):
    run_dir, engine, x = run
    best_weights.save_best(run_dir, checkpoint.weights_bytes(engine), 1, 2.5, "val")
    best = loading.open_run(run_dir, which="best")
    np.testing.assert_array_equal(best.encode(x)[0], engine.encode(x)[0])
    assert best_weights.read_best(run_dir)["epoch"] == 1
    # stopped after the new weights, before their record: no best, the last checkpoint intact
    original = disk.write_atomic

    def stop_at_the_record(path, data):
        if path.name == layout.BEST_FILE:
            raise KeyboardInterrupt
        original(path, data)

    monkeypatch.setattr(best_weights, "write_atomic", stop_at_the_record)
    with pytest.raises(KeyboardInterrupt):
        best_weights.save_best(
            run_dir, checkpoint.weights_bytes(build_engine(CFG, seed=5)), 2, 2.0, "val"
        )
    assert best_weights.read_best(run_dir) is None
    with pytest.raises(CheckpointError, match="kept no best checkpoint"):
        loading.open_run(run_dir, which="best")
    loading.open_run(run_dir)  # the last checkpoint verifies
    monkeypatch.setattr(best_weights, "write_atomic", original)
    # a best whose bytes changed is refused; one of an epoch after the checkpoint is dropped
    best_weights.save_best(run_dir, checkpoint.weights_bytes(engine), 3, 2.0, "val")
    weights = run_dir / layout.BEST_WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(CheckpointError, match="damaged"):
        loading.open_run(run_dir, which="best")
    best_weights.keep_best_until(run_dir, 1)
    assert best_weights.read_best(run_dir) is None and not weights.exists()


def test_the_run_files_include_scaling_classes_and_the_best_weights():
    from vaekit.data import classes, scaling

    assert layout.SCALING_FILE == scaling.SCALING_FILE
    assert layout.CLASSES_FILE == classes.CLASSES_FILE
    names = (layout.SCALING_FILE, layout.CLASSES_FILE, layout.BEST_FILE, layout.BEST_WEIGHTS_FILE)
    for name in names:
        assert name in layout.RUN_ENTRIES


def test_a_safetensors_header_length_that_starts_like_a_pickle_still_loads(tmp_path):
    """A header of 0x280 bytes starts the file with 80 02, a pickle's first two bytes."""
    weights = {"w": np.arange(3, dtype=np.float32)}
    pad = next(
        n for n in range(2000) if save(weights, metadata={"p": "x" * n}).startswith(b"\x80\x02")
    )
    data = save(weights, metadata={"p": "x" * pad})
    loaded = checkpoint._decode_safetensors(tmp_path / "model.safetensors", data)
    np.testing.assert_array_equal(loaded["w"], weights["w"])
