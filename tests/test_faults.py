"""Faults during training: kill -9 again and again (at start-up, inside optimizer steps, inside
checkpoint saves), a full disk, a directory that cannot be written. Whatever happens, the run
keeps its last whole epoch, and resuming ends where an uninterrupted run ends. Every kill is tied
to an event inside the process (see kill_driver.py), never to time, so the tests do the same on
any machine."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from vaekit import disk
from vaekit.cli import main
from vaekit.engines import build_engine
from vaekit.runs import checkpoint, config_file, layout
from vaekit.runs.metrics import read_metrics

DRIVER = Path(__file__).with_name("kill_driver.py")
#: mnist-small's 5,000 training images in batches of 250 (train_args)
STEPS_PER_EPOCH = 20
#: Where the kills of the repeated-kill test land, in turn, and the range of each one's count:
#: a durable write, an optimizer step (up to two epochs in), a data set load (train, test).
WRITE, STEP, LOAD = ("write", 40), ("step", 2 * STEPS_PER_EPOCH), ("load", 2)
KILL_EVENTS = (WRITE, STEP, WRITE, STEP, LOAD)
#: Kills before the run may finish uninterrupted.
KILLS = 10
#: Seconds a process may take before it counts as hung: a guard, never a pass/fail criterion.
GUARD = 600


def train_args(engine: str, epochs: int) -> list[str]:
    return [
        "train",
        "--engine",
        engine,
        "--data",
        "mnist-small",
        "--hidden",
        "32",
        "--latent-dim",
        "4",
        "--batch-size",
        "250",
        "--epochs",
        str(epochs),
        "--sample-every",
        "3",
        "--seed",
        "2",
        "--quiet",
    ]


def launch(event: str, argv: list[str]) -> subprocess.Popen:
    """vaekit ``argv`` in a process that kills itself at ``event`` (see kill_driver.py)."""
    return subprocess.Popen(
        [sys.executable, str(DRIVER), event, *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(run: Path) -> dict[str, str]:
    return {p.name: sha256(p) for p in run.iterdir() if p.is_file()}


def assert_checkpoint_whole(run: Path) -> int:
    """The run's committed checkpoint verifies against its record (or a complete pending save
    rolls forward) and loads; a reader gets its weights and changes nothing; returns its epoch
    (0: none yet)."""
    state_file = run / layout.STATE_FILE
    pending = run / (layout.STATE_FILE + disk.TMP_SUFFIX)
    if state_file.exists() and not pending.exists():
        files = json.loads(state_file.read_text())["files"]
        for name, digest in files.items():
            assert sha256(run / name) == digest, f"{name} does not match state.json"
    copy = run.with_name(run.name + "-inspect")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run, copy)
    try:
        if not (copy / layout.CONFIG_FILE).exists():
            return 0
        model, train, _ = config_file.read_config(copy)
        checkpoint.recover(copy, model)
        if not (copy / layout.STATE_FILE).exists():
            return 0
        engine = build_engine(model, train.engine, seed=train.seed)
        epoch = int(checkpoint.load_checkpoint(copy, engine)["epoch"])
    finally:
        shutil.rmtree(copy)
    before = snapshot(run)
    read = checkpoint.load_weights(run, model)  # as sample, evaluate, serve read: no recovery
    assert snapshot(run) == before, "a reader changed the run"
    whole = [engine.get_weights()]  # the checkpoint recovery rolls forward to, or the one before
    if state_file.exists():
        files = json.loads(state_file.read_text())["files"]
        if sha256(run / layout.WEIGHTS_FILE) == files[layout.WEIGHTS_FILE]:
            whole.append(load_file(run / layout.WEIGHTS_FILE))
    assert any(all(np.array_equal(read[k], w[k]) for k in w) for w in whole), "a torn read"
    return epoch


def losses(run: Path) -> list[tuple[float, float, float]]:
    return [(r["loss"], r["recon"], r["kl"]) for r in read_metrics(run)]


@pytest.mark.parametrize("engine, epochs", [("numpy", 24), ("torch", 16)])
def test_kill_9_again_and_again_then_resume_ends_with_the_same_weights(tmp_path, engine, epochs):
    reference = tmp_path / "reference"
    proc = launch("never", [*train_args(engine, epochs), "--out", str(reference)])
    assert proc.wait(timeout=GUARD) == 0, proc.stderr.read()

    run = tmp_path / "killed"
    rng = random.Random(f"{engine}-kills")
    kills, saved, code = [], 0, None
    for attempt in range(KILLS + 1):
        if (run / layout.STATE_FILE).exists() or (
            run / (layout.STATE_FILE + disk.TMP_SUFFIX)
        ).exists():
            argv = ["train", "--resume", "--out", str(run), "--quiet"]
        else:  # killed before its first checkpoint: start again
            argv = [*train_args(engine, epochs), "--out", str(run), "--force"]
        if attempt == KILLS:
            event = "never"
        else:
            kind, most = KILL_EVENTS[attempt % len(KILL_EVENTS)]
            event = f"{kind}:{rng.randint(1, most)}"
        proc = launch(event, argv)
        code = proc.wait(timeout=GUARD)
        if code == 0:
            break
        assert code == -9, (event, code, proc.stderr.read())
        kills.append(event)
        epoch = assert_checkpoint_whole(run)
        assert epoch >= saved, f"the kill at {event} lost a finished epoch"
        saved = epoch
    assert code == 0, (kills, proc.stderr.read())
    assert len(kills) >= 8, kills
    print(f"{engine}: {len(kills)} kills survived ({', '.join(kills)})")

    assert not list(run.glob(f"*{disk.TMP_SUFFIX}"))
    got, want = (
        load_file(run / layout.WEIGHTS_FILE),
        load_file(reference / layout.WEIGHTS_FILE),
    )
    for name in want:
        if engine == "numpy":
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        else:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-7, err_msg=name)
    assert [r["epoch"] for r in read_metrics(run)] == list(range(1, epochs + 1))
    np.testing.assert_allclose(
        losses(run), losses(reference), rtol=0 if engine == "numpy" else 1e-6
    )


@pytest.mark.parametrize(
    "code, words",
    [
        (errno.ENOSPC, "No space left on device"),
        (errno.EROFS, "Read-only file system"),
        (errno.EACCES, "Permission denied"),
    ],
)
def test_a_failing_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys, code, words):
    """The save of epoch 2 fails: one clear line, exit 2, epoch 1 intact, and --resume (once
    the disk is fixed) ends exactly where an uninterrupted run ends."""
    run, reference = tmp_path / "run", tmp_path / "reference"
    assert main([*train_args("numpy", 3), "--out", str(reference)]) == 0
    real_write, real_fsync = checkpoint.write_checkpoint, os.fsync

    def broken_fsync(fd):
        raise OSError(code, os.strerror(code))

    def write(run_dir, snapshot):
        if snapshot.record["epoch"] == 2:
            monkeypatch.setattr(os, "fsync", broken_fsync)
        return real_write(run_dir, snapshot)

    monkeypatch.setattr(checkpoint, "write_checkpoint", write)
    capsys.readouterr()
    assert main([*train_args("numpy", 3), "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "could not save epoch 2 " in err[0], err
    assert "epoch 1 is intact" in err[0] and "--resume" in err[0], err
    monkeypatch.setattr(os, "fsync", real_fsync)
    monkeypatch.setattr(checkpoint, "write_checkpoint", real_write)

    assert not list(run.glob(f"*{disk.TMP_SUFFIX}"))
    assert assert_checkpoint_whole(run) == 1
    assert main(["train", "--resume", "--out", str(run), "--quiet"]) == 0
    got, want = (
        load_file(run / layout.WEIGHTS_FILE),
        load_file(reference / layout.WEIGHTS_FILE),
    )
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_failing_first_save_says_nothing_was_saved(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint, "write_checkpoint", broken)
    assert main([*train_args("numpy", 2), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not save epoch 1 " in err[0], err
    assert "no epoch was saved" in err[0], err


def test_a_disk_that_fills_under_tensorboard_is_one_line_and_keeps_the_checkpoint(
    tmp_path, monkeypatch, capsys
):
    """TensorBoard writes its events in a thread of its own; the disk fills during epoch 2. One
    line, exit 2, no thread traceback, and the line says the checkpoint of epoch 1 is intact
    (it is: --resume, once the disk has room, finishes the run)."""
    pytest.importorskip("tensorboard")
    from tensorboard.summary.writer import record_writer

    run = tmp_path / "run"
    real, written = record_writer.RecordWriter.write, []

    def filling(self, data):
        if (run / layout.STATE_FILE).exists():  # epoch 1 is saved: the disk is full now
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(len(data))
        return real(self, data)

    monkeypatch.setattr(record_writer.RecordWriter, "write", filling)
    argv = [*train_args("numpy", 3), "--logger", "tensorboard", "--out", str(run)]
    argv[argv.index("--sample-every") + 1] = "1"
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    assert "No space left on device" in lines[0] and "epoch 1 is intact" in lines[0], err
    assert written and assert_checkpoint_whole(run) == 1
    monkeypatch.setattr(record_writer.RecordWriter, "write", real)
    assert main(["train", "--resume", "--out", str(run), "--quiet"]) == 0
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3]


def test_a_divergence_on_data_of_a_huge_scale_points_at_the_scale(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(200, 5)) * 1e30
    np.save(tmp_path / "huge.npy", x.astype(np.float32))
    argv = ["train", "--data", str(tmp_path / "huge.npy"), "--likelihood", "gaussian"]
    assert main([*argv, "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "the loss became" in lines[0], lines
    assert "--scale standardize" in lines[0] and "lower learning rate" not in lines[0]
    argv += ["--scale", "standardize", "--epochs", "1", "--quiet", "--force"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0  # the advice works


def test_unwritable_output_directory_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    out = tmp_path / "locked" / "run"
    assert main([*train_args("numpy", 1), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Permission denied" in err[0] and str(out) in err[0], err


def test_output_path_under_a_file_is_a_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep me")
    assert main([*train_args("numpy", 1), "--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vaekit: error: "), err
    assert blocker.read_text() == "keep me"


def test_the_kill_driver_kills_at_the_event_it_is_told(tmp_path):
    run = tmp_path / "run"
    proc = launch("load:2", [*train_args("numpy", 3), "--out", str(run)])
    assert proc.wait(timeout=GUARD) == -9
    assert not run.exists()  # the test split was being loaded: nothing touched yet
    proc = launch("write:1", [*train_args("numpy", 3), "--out", str(run)])
    assert proc.wait(timeout=GUARD) == -9  # before the first fsync, of config.json's temporary
    assert sorted(p.name for p in run.iterdir()) == [
        layout.CONFIG_FILE + disk.TMP_SUFFIX,
        layout.LOCK_FILE,
    ]
    proc = launch(f"step:{2 * STEPS_PER_EPOCH + 1}", [*train_args("numpy", 3), "--out", str(run)])
    assert proc.wait(timeout=GUARD) == -9  # the first step of epoch 3
    # epoch 1 is saved (epoch 2 waited for it), epoch 2 may be: its files are written behind
    saved = assert_checkpoint_whole(run)
    assert saved in (1, 2), saved
    assert [r["epoch"] for r in read_metrics(run)][:saved] == list(range(1, saved + 1))
