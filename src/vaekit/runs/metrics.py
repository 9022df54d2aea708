"""A run's ``metrics.jsonl``: one JSON line per finished epoch, read as a stream (memory grows with
the records kept, not with the file), a line cut short or damaged skipped."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

from vaekit.disk import (
    write_atomic_chunks,
)
from vaekit.errors import CheckpointError
from vaekit.runs.layout import METRICS_FILE

#: Longest line of ``metrics.jsonl`` read (an epoch's record is a few hundred bytes); a longer
#: line is damaged and skipped.
MAX_METRICS_LINE = 64 * 1024

#: The keys of a record that hold words: ``stopped``, on the last epoch a run trained, says why
#: it stopped there (``patience``, ``epochs`` or ``time``: vaekit.train.loop.stop_reason).
TEXT_KEYS = ("stopped",)

#: The metrics a training-curves figure draws (figures.save_training_curves); reading only these
#: keeps ``curves`` small on a long run.
CURVE_KEYS = (
    "epoch",
    *("loss", "recon", "kl"),
    *("test_loss", "test_recon", "test_kl"),
    *("val_loss", "val_recon", "val_kl"),
)


def _metric_lines(run_dir: Path) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """(line, record) for each whole line of ``metrics.jsonl``, read as a stream. A line longer
    than MAX_METRICS_LINE, not JSON, or without an integer epoch (a crash cut it short) is
    skipped."""
    path = Path(run_dir) / METRICS_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CheckpointError(f"{path} is not a regular file")
        while line := f.readline(MAX_METRICS_LINE + 1):
            if len(line) > MAX_METRICS_LINE:  # damaged: skip to the end of the line
                while line and not line.endswith(b"\n"):
                    line = f.readline(MAX_METRICS_LINE)
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):  # RecursionError: JSON nested too deeply
                continue
            if _is_record(record):
                yield line, record


def _is_record(record: Any) -> bool:
    """A metrics record: an object of numbers (floats, or integers within float range) with
    an integer epoch, and words under :data:`TEXT_KEYS`; anything else on a line (an edit,
    damage) is skipped."""
    return (
        isinstance(record, dict)
        and isinstance(record.get("epoch"), int)
        and all(
            isinstance(v, float)
            or (isinstance(v, int) and abs(v) <= sys.float_info.max)
            or (k in TEXT_KEYS and isinstance(v, str))
            for k, v in record.items()
        )
    )


def read_metrics(run_dir: Path, keys: Collection[str] | None = None) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` (one per epoch), read line by line, with only ``keys``
    when given (memory grows with the records kept, not with the file); a line cut short by a
    crash, or damaged, is skipped."""
    return [
        record if keys is None else {k: record[k] for k in keys if k in record}
        for _, record in _metric_lines(run_dir)
    ]


def keep_metrics_until(run_dir: Path, epoch: int) -> None:
    """Rewrite ``metrics.jsonl`` (atomically, as a stream) without the records after ``epoch``
    (a crash after the last checkpoint leaves them) and without damaged lines."""
    kept = (
        line if line.endswith(b"\n") else line + b"\n"
        for line, record in _metric_lines(run_dir)
        if record["epoch"] <= epoch
    )
    write_atomic_chunks(Path(run_dir) / METRICS_FILE, kept)


def last_metrics(run_dir: Path, epoch: int) -> dict[str, Any] | None:
    """The last record of ``metrics.jsonl`` of an epoch up to ``epoch`` (that of ``epoch``
    unless damage lost it), read as a stream; None if there is none."""
    found = None
    for _, record in _metric_lines(run_dir):
        if record["epoch"] <= epoch:
            found = record
    return found


def write_metrics(run_dir: Path, records: Iterable[dict[str, Any]]) -> None:
    """Replace ``metrics.jsonl`` with ``records``, atomically."""
    lines = ((json.dumps(r) + "\n").encode() for r in records)
    write_atomic_chunks(Path(run_dir) / METRICS_FILE, lines)


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Add one record to ``metrics.jsonl`` and fsync it."""
    with open(Path(run_dir) / METRICS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())
