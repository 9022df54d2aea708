"""One run, several processes: readers while a run trains, two writers, a writer killed while it
holds the lock. Readers change nothing and always get a whole checkpoint; a second writer is
refused with one line naming the holder; a killed writer leaves no stale lock. Every wait is for
observed progress (a file appearing, a process ending), never for time."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from test_faults import train_args
from vaekit.cli import main
from vaekit.errors import CheckpointError
from vaekit.runs import checkpoint, layout, loading
from vaekit.runs.metrics import read_metrics

DRIVER = Path(__file__).with_name("kill_driver.py")
STEPS_PER_EPOCH = 20  # mnist-small's 5,000 training images in batches of 250
EPOCHS = 3
TRAIN = train_args("numpy", EPOCHS)
#: A guard against a hung process, never a pass/fail criterion.
DEADLOCK_GUARD_SECONDS = 600


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, np.ndarray]:
    """The weights of the run trained without interruption."""
    run = tmp_path_factory.mktemp("reference") / "run"
    assert main([*TRAIN, "--out", str(run)]) == 0
    return load_file(run / layout.WEIGHTS_FILE)


def assert_same_weights(run: Path, want: dict[str, np.ndarray]) -> None:
    got = load_file(run / layout.WEIGHTS_FILE)
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert [r["epoch"] for r in read_metrics(run)] == list(range(1, EPOCHS + 1))


def snapshot(run: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file()
    }


def held_writer(run: Path, gate: Path, argv: list[str]) -> subprocess.Popen:
    """A writer that stops, holding the run's lock, at the first step of epoch 2 until ``gate``
    exists; returns once it stands there and epoch 1's files, written by a thread of their own
    meanwhile, are all on disk (its checkpoint, renamed into place last)."""
    event = f"hold:{STEPS_PER_EPOCH + 1}:{gate}"
    proc = subprocess.Popen(
        [sys.executable, str(DRIVER), event, *argv, "--out", str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reached = gate.with_name(gate.name + ".reached")
    deadline = time.monotonic() + DEADLOCK_GUARD_SECONDS
    saved = run / layout.STATE_FILE
    while not (reached.exists() and saved.exists()):  # observed progress: where the writer is
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the writer never reached epoch 2 with epoch 1 saved"
        time.sleep(0.05)
    return proc


def test_readers_at_every_write_of_a_training_run_get_whole_checkpoints(
    tmp_path, monkeypatch, reference
):
    """At each durable write of the trainer (inside every save, between its renames), a reader
    opens the run: it gets the weights of a whole checkpoint or 'no saved weights yet', changes
    nothing, and the run ends as one trained without readers."""
    run = tmp_path / "run"
    saved, reads, failures = [], [], []
    real_take, real_fsync, real_replace = checkpoint.take_checkpoint, os.fsync, os.replace

    def take(engine, state):
        saved.append(engine.get_weights())
        return real_take(engine, state)

    def read_then(function):
        def boundary(*args):
            if (run / layout.CONFIG_FILE).exists():
                before = snapshot(run)
                try:
                    reads.append(loading.open_run(run).get_weights())
                except CheckpointError as exc:
                    failures.append(str(exc))
                assert snapshot(run) == before, "a reader changed the run"
            return function(*args)

        return boundary

    monkeypatch.setattr(checkpoint, "take_checkpoint", take)
    monkeypatch.setattr(os, "fsync", read_then(real_fsync))
    monkeypatch.setattr(os, "replace", read_then(real_replace))
    assert main([*TRAIN, "--out", str(run)]) == 0
    monkeypatch.undo()

    assert len(saved) == EPOCHS and len(reads) > 3 * EPOCHS
    assert all("no saved weights yet" in message for message in failures), failures
    for weights in reads:
        assert any(all(np.array_equal(weights[k], w[k]) for k in w) for w in saved)
    assert_same_weights(run, reference)


def test_a_reader_loop_beside_a_training_process(tmp_path, reference, capsys):
    run = tmp_path / "run"
    trainer = subprocess.Popen(
        [sys.executable, "-m", "vaekit", *TRAIN, "--out", str(run)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    while trainer.poll() is None:  # read until the trainer ends, however long it takes
        if not (run / layout.CONFIG_FILE).exists():
            time.sleep(0.05)  # the interval of a poll for the run to appear
            continue
        code = main(["sample", str(run), "--out", str(tmp_path / "samples.png")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 0 or (len(err) == 1 and "no saved weights yet" in err[0]), err
    assert trainer.wait() == 0, trainer.stderr.read()
    assert_same_weights(run, reference)
    assert main(["sample", str(run), "--out", str(tmp_path / "samples.png")]) == 0


def test_a_second_writer_is_refused_and_the_first_finishes(tmp_path, reference, capsys):
    run, gate = tmp_path / "run", tmp_path / "gate"
    first = held_writer(run, gate, TRAIN)
    before = snapshot(run)
    others = [
        ["train", "--resume", "--out", str(run), "--quiet"],
        [*TRAIN, "--hidden", "8", "--out", str(run), "--force"],  # another model
        [*TRAIN, "--out", str(run)],
        ["demo", "--out", str(run), "--force", "--epochs", "1", "--quiet"],
    ]
    for argv in others:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"another process (pid {first.pid}: " in err[0], (argv, err)
        assert "kill_driver.py" in err[0], err  # the holder's command line
    assert snapshot(run) == before, "a refused writer touched the run"
    gate.touch()
    out, err = first.communicate(timeout=DEADLOCK_GUARD_SECONDS)
    assert first.returncode == 0, err
    assert "run saved" in out
    assert_same_weights(run, reference)


def test_a_writer_killed_while_holding_the_lock_leaves_no_stale_lock(tmp_path, reference):
    run, gate = tmp_path / "run", tmp_path / "gate"
    first = held_writer(run, gate, TRAIN)
    first.kill()
    assert first.wait() == -9
    assert main(["train", "--resume", "--out", str(run), "--quiet"]) == 0
    assert_same_weights(run, reference)
