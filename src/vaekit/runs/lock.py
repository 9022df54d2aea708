"""The one writer of a run: an exclusive ``flock`` on ``writer.lock``, which names the process that
holds it and which the kernel releases when the process ends, however it ends."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

from vaekit.errors import CheckpointError
from vaekit.runs.layout import LOCK_FILE


def _lock_or_name_the_holder(fd: int, run_dir: Path, mode: int) -> None:
    """Take ``flock`` ``mode`` (LOCK_EX, or LOCK_SH to probe) on ``fd`` without waiting; if a
    writer holds the lock, raise CheckpointError naming it (pid and command, from the file)."""
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = json.loads(os.pread(fd, 64 * 1024, 0))
            who = f"pid {int(holder['pid'])}: {holder['command']}"
        except (ValueError, RecursionError, KeyError, TypeError):  # it has just taken the lock
            who = "one that has just started"
        raise CheckpointError(
            f"{run_dir} is being written by another process ({who}); wait for it to finish, "
            "or choose another directory"
        ) from None


def check_not_busy(run_dir: Path) -> None:
    """Raise CheckpointError, naming the holder, when another process holds the writer lock of
    ``run_dir``; creates and changes nothing."""
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:  # shared: probes (the ranks of a torchrun) do not stop one another
        _lock_or_name_the_holder(fd, Path(run_dir), fcntl.LOCK_SH)
    finally:
        os.close(fd)  # releases the lock, if this probe took it


@contextlib.contextmanager
def writing(run_dir: Path) -> Iterator[None]:
    """Hold the writer lock of ``run_dir`` (a directory) for the block: an exclusive ``flock`` on
    its LOCK_FILE, which names this process (pid and command line) while it is held. The kernel
    releases it when the process ends, however it ends, so a killed writer leaves no stale lock;
    the file itself is never deleted. Raises CheckpointError, naming the holder, when another
    process holds it."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(Path(run_dir) / LOCK_FILE, flags, 0o644)
    try:
        _lock_or_name_the_holder(fd, Path(run_dir), fcntl.LOCK_EX)
        holder = {"pid": os.getpid(), "command": shlex.join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)
