"""Reading and writing files safely: bounded reads of regular files only, JSON that refuses a
key given twice, and writes that are all or nothing (a temporary file, fsync, rename).

A run directory, a settings file and every record vaekit reads or writes go through here, so
that a FIFO, a device, a huge or a damaged file is one clear error, and a crash never leaves a
file half written.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from vaekit.errors import VaekitError

#: The suffix of the temporary file a write goes to before it is renamed into place.
TMP_SUFFIX = ".tmp"

#: Writes bytes to a path: :func:`write_atomic`, or a function that keeps them to be written
#: later (a training run's figures, written by a thread of their own).
WriteFile = Callable[[Path, bytes], None]


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename: all or nothing."""
    write_atomic_chunks(path, [data])


def write_atomic_chunks(path: Path, chunks: Iterable[bytes]) -> None:
    """Write the ``chunks`` one after another to ``path``, all or nothing (a stream: memory does
    not grow with the file); an error names ``path``, and leaves no temporary file."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # leave no temporary file behind
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):  # name the file asked for, not the temporary one
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make the names in ``directory`` (a rename, a new file) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def parse_json(text: str | bytes) -> Any:
    """The JSON value of ``text``; a key given twice in one object raises ValueError (as a
    syntax error, an integer of more than 4300 digits or text that is not UTF-8 do), rather
    than the last one silently winning."""
    return json.loads(text, object_pairs_hook=_without_repeats)


def _without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) < len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"the key {repeated!r} is given twice")
    return record


def read_regular(path: Path, limit: int, error: type[VaekitError] = VaekitError) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``limit`` bytes; both are
    checked before anything is read (the file is opened without waiting and its status read
    from the open file), so a FIFO, a device or a huge sparse file costs nothing. Else
    ``error`` naming the file and why."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"{path} is missing") from None
    except OSError as exc:
        raise error(f"could not read {path} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise error(f"{path} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise error(f"{path} is larger than {limit:,} bytes, more than such a file holds")
    return data
