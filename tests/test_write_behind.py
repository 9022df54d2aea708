"""A run's files are written by a thread of their own while training goes on: in order, nothing
after a failed write, every finished epoch saved when training ends or stops, and training
that never waits for a save under way."""

from __future__ import annotations

import errno
import json
import os
import threading

import pytest

from vaekit.cli import main
from vaekit.runs import checkpoint, layout
from vaekit.runs.metrics import read_metrics
from vaekit.train import start
from vaekit.train.write_behind import WriteBehind

#: Seconds a test waits for an event before it fails: a guard against a hang, met only when
#: the behaviour under test is broken.
GUARD = 600
#: mnist-small's 5,000 training images in batches of 250
STEPS_PER_EPOCH = 20


def train_argv(run, epochs: int = 3) -> list[str]:
    return [
        "train",
        "--engine",
        "numpy",
        "--data",
        "mnist-small",
        "--hidden",
        "16",
        "--latent-dim",
        "2",
        "--batch-size",
        "250",
        "--epochs",
        str(epochs),
        "--sample-every",
        "1",
        "--seed",
        "3",
        "--quiet",
        "--out",
        str(run),
    ]


def test_jobs_run_in_order_on_one_thread_that_is_not_the_callers():
    behind, ran = WriteBehind(), []
    for i in range(50):
        behind.submit(f"job {i}", lambda i=i: ran.append((i, threading.current_thread())))
    assert behind.finish() is None
    behind.close()
    assert [i for i, _ in ran] == list(range(50))
    threads = {thread for _, thread in ran}
    assert len(threads) == 1 and threading.current_thread() not in threads


def test_nothing_runs_after_a_failed_job_and_the_failure_names_its_job():
    behind, ran = WriteBehind(), []
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fail():
        raise full

    behind.submit("epoch 1", lambda: ran.append(1))
    behind.submit("epoch 2", fail)
    behind.submit("epoch 3", lambda: ran.append(3))
    assert behind.finish() == ("epoch 2", full)
    behind.submit("epoch 4", lambda: ran.append(4))
    assert behind.finish() is None  # reported once; later jobs stay skipped
    behind.close()
    assert ran == [1]


def test_an_error_that_is_not_a_write_error_is_raised():
    behind = WriteBehind()
    behind.submit("epoch 1", lambda: [][0])
    with pytest.raises(IndexError):
        behind.finish()
    behind.close()


def test_a_wait_that_is_interrupted_leaves_the_job_to_the_next_wait(monkeypatch):
    behind, release, ran = WriteBehind(), threading.Event(), []
    behind.submit("epoch 1", lambda: (release.wait(GUARD), ran.append(1)))
    behind.submit("epoch 2", lambda: ran.append(2))
    first = behind._pending[0][1]
    wait = first.exception

    def ctrl_c(timeout=None):  # Ctrl-C while the caller waits for epoch 1
        monkeypatch.setattr(first, "exception", wait)
        release.set()
        raise KeyboardInterrupt

    monkeypatch.setattr(first, "exception", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        behind.finish()
    assert behind.finish() is None  # waits for both
    behind.close()
    assert ran == [1, 2]


def count_steps(monkeypatch, at: int, action) -> None:
    """Call ``action()`` before the ``at``-th optimizer step (from 1) of the engine a run
    builds."""
    build, taken = start.engine_for, []

    def engine_for(*args, **kwargs):
        engine = build(*args, **kwargs)
        step = engine.train_step

        def counted(*step_args, **step_kwargs):
            taken.append(None)
            if len(taken) == at:
                action()
            return step(*step_args, **step_kwargs)

        engine.train_step = counted
        return engine

    monkeypatch.setattr(start, "engine_for", engine_for)


def event_at_step(monkeypatch, at: int, ctrl_c: bool = False) -> threading.Event:
    """An event set before the ``at``-th optimizer step, which then meets Ctrl-C if asked."""
    event = threading.Event()

    def action():
        event.set()
        if ctrl_c:
            raise KeyboardInterrupt

    count_steps(monkeypatch, at, action)
    return event


def epoch_1_saved_after(monkeypatch, event: threading.Event, save) -> list[bool]:
    """Epoch 1's checkpoint waits for ``event`` (a disk that is slow until then), then goes to
    ``save(run_dir, snapshot)``; the others are written as ever. Returns whether each wait saw
    the event."""
    real, waited = checkpoint.write_checkpoint, []

    def slow_disk(run_dir, snapshot):
        if snapshot.record["epoch"] != 1:
            return real(run_dir, snapshot)
        waited.append(event.wait(GUARD))
        return save(run_dir, snapshot)

    monkeypatch.setattr(checkpoint, "write_checkpoint", slow_disk)
    return waited


def full_disk(run_dir, snapshot):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_training_goes_on_while_a_checkpoint_waits_for_the_disk(tmp_path, monkeypatch):
    """The save of epoch 1 cannot end before epoch 2 has taken its first step: a save by the
    training thread would wait for ever (the guard fails it), one written behind ends, and
    the run ends whole."""
    stepped = event_at_step(monkeypatch, STEPS_PER_EPOCH + 1)
    waited = epoch_1_saved_after(monkeypatch, stepped, checkpoint.write_checkpoint)
    run = tmp_path / "run"
    assert main(train_argv(run)) == 0
    assert waited == [True]
    assert json.loads((run / layout.STATE_FILE).read_text())["epoch"] == 3
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3]
    names = {p.name for p in (run / "figures").iterdir()}
    assert {f"samples-epoch-00{e}.png" for e in (1, 2, 3)} <= names


def test_ctrl_c_while_a_save_is_under_way_ends_with_that_epoch_saved(tmp_path, monkeypatch, capsys):
    """Ctrl-C comes in epoch 2 while epoch 1's save still waits for the disk: the save ends
    before the command does, and the message that every finished epoch is saved is true."""
    interrupted = event_at_step(monkeypatch, STEPS_PER_EPOCH + 2, ctrl_c=True)
    waited = epoch_1_saved_after(monkeypatch, interrupted, checkpoint.write_checkpoint)
    run = tmp_path / "run"
    assert main(train_argv(run)) == 130
    assert waited == [True]
    assert "every finished epoch is saved" in capsys.readouterr().err
    assert json.loads((run / layout.STATE_FILE).read_text())["epoch"] == 1
    assert not list(run.glob("*.tmp"))
    assert main(["train", "--resume", "--out", str(run), "--quiet"]) == 0
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3]


def test_ctrl_c_while_a_save_fails_says_what_was_not_saved(tmp_path, monkeypatch, capsys):
    """Epoch 1's save meets a full disk while Ctrl-C stops epoch 2: the command says so (exit
    2), not that every finished epoch is saved."""
    interrupted = event_at_step(monkeypatch, STEPS_PER_EPOCH + 2, ctrl_c=True)
    epoch_1_saved_after(monkeypatch, interrupted, full_disk)
    run = tmp_path / "run"
    assert main(train_argv(run)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not save epoch 1 " in err[0], err
    assert "No space left on device" in err[0] and "no epoch was saved" in err[0], err
    assert not (run / layout.STATE_FILE).exists() and not list(run.glob("*.tmp"))
