"""Run directories: configs as JSON, weights and optimizer state as safetensors, written atomically.

A run directory holds::

    config.json             model and training config, vaekit version        (written once)
    model.safetensors       the weights, names and shapes of ModelConfig.parameter_shapes
    optimizer.safetensors   optimizer arrays: exp_avg/<param>, exp_avg_sq/<param>, momentum/<param>
    state.json              epoch, optimizer step, RNG states, SHA-256 of the two weight files
    metrics.jsonl           one JSON line per finished epoch
    scaling.json            how raw values become model inputs (vaekit.data.scaling), fitted once
    best.safetensors        with --keep best: the weights of the best held-out −ELBO so far
    best.json               its record: epoch, held-out loss (nats), split, SHA-256 of the weights
    outliers.json           a model saved by the estimator: its outlier threshold (nats), k, seed
    features.json           a model the estimator fitted on a DataFrame: its column names
    writer.lock             the one-writer lock; names the process training the run

One process at a time writes a run: it holds an exclusive ``flock`` on ``writer.lock`` (see
:func:`writing`), which the kernel releases when the process ends, however it ends.

Saving is crash-safe: both safetensors files are written to temporary names, then ``state.json.tmp``
(the commit record, holding their SHA-256), then everything is renamed into place. The writer
rolls a save that was interrupted forward when its commit record is complete, and discards it
otherwise (:func:`recover`), so a checkpoint is always one whole epoch. Readers change nothing:
they take the last committed checkpoint, even while the writer renames a new one into place.
Every weights file is checked to be a regular file of a size its config allows before it is
read. No pickle is ever read: weights go through ``safetensors`` only, and every other file is
JSON. A run that names its own networks by import path is opened only with consent
(``trust_code``), since importing a module runs its code.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import shlex
import stat
import sys
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from vaekit import __version__
from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.disk import (
    TMP_SUFFIX,
    fsync_dir,
    parse_json,
    read_regular,
    write_atomic,
    write_atomic_chunks,
)
from vaekit.engines import Engine, build_engine
from vaekit.errors import CheckpointError, ConfigError
from vaekit.model.custom_networks import check_consent

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
#: vaekit.data.scaling.SCALING_FILE (that module imports this one; tests check they agree).
SCALING_FILE = "scaling.json"
BEST_WEIGHTS_FILE = "best.safetensors"
BEST_FILE = "best.json"
#: The outlier threshold of a model saved by the estimator (vaekit.api.estimator.VAE.save).
OUTLIERS_FILE = "outliers.json"
#: The column names of the DataFrame a model saved by the estimator was fitted on.
FEATURES_FILE = "features.json"
#: Which weights a command loads: the last checkpoint, or the best one (--keep best).
WHICH = ("last", "best")
RUN_FORMAT = "vaekit-run"
LOCK_FILE = "writer.lock"
FIGURES_DIR = "figures"
#: The figures a run draws into ``figures/`` (see training.RunWriter), and their temporaries.
#: The folder of TensorBoard event files (``--logger tensorboard``), and the files vaekit writes
#: there (TensorBoard's own naming).
TENSORBOARD_DIR = "tensorboard"
EVENTS_NAME = re.compile(r"events\.out\.tfevents\.[\w.-]+")
FIGURE_NAME = re.compile(r"((samples|reconstructions)-epoch-\d+|samples-step-\d+)\.png(\.tmp)?")
#: Longest line of ``metrics.jsonl`` read (an epoch's record is a few hundred bytes); a longer
#: line is damaged and skipped.
MAX_METRICS_LINE = 64 * 1024
#: Largest ``state.json`` read (it holds the generator states: a few kilobytes).
MAX_RECORD_BYTES = 1024 * 1024
#: Reads of the weights while a writer renames a save into place, before they count as damaged.
READ_ATTEMPTS = 10
#: The metrics a training-curves figure draws (figures.save_training_curves); reading only these
#: keeps ``curves`` small on a long run.
CURVE_KEYS = (
    "epoch",
    *("loss", "recon", "kl"),
    *("test_loss", "test_recon", "test_kl"),
    *("val_loss", "val_recon", "val_kl"),
)
_PICKLE_PREFIXES = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+, zip (torch.save)


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def _read_json(path: Path) -> Any:
    """The JSON value of ``path``, a regular file of at most ``MAX_RECORD_BYTES``; whatever an
    edit or damage put there (not JSON, too long, nested too deeply) is a CheckpointError."""
    if not path.is_symlink() and not path.exists():
        raise CheckpointError(f"{path} is missing; is {path.parent} a vaekit run?")
    try:
        return parse_json(read_regular(path, MAX_RECORD_BYTES, CheckpointError))
    except ValueError as exc:  # not JSON, not UTF-8, a repeated key, a 4300-digit integer
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from None
    except RecursionError:
        raise CheckpointError(f"{path} is not a vaekit record (it is nested too deeply)") from None


# --- config ------------------------------------------------------------------------------------


def write_config(run_dir: Path, model: ModelConfig, train: TrainConfig, created_by: str) -> None:
    """Write ``config.json``: both configs, the vaekit version and which command made the run."""
    record = {
        "format": RUN_FORMAT,
        "vaekit_version": __version__,
        "created_by": created_by,
        "model": model.to_dict(),
        "train": train.to_dict(),
    }
    write_atomic(Path(run_dir) / CONFIG_FILE, _json_bytes(record))


def read_record(run_dir: Path) -> dict[str, Any]:
    """The JSON record of ``config.json`` as it is (format checked, settings not built)."""
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    record = _read_json(path)
    if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{path} is not a vaekit run config")
    return record


def read_config(
    run_dir: Path, *, trust_code: bool = False
) -> tuple[ModelConfig, TrainConfig, dict[str, Any]]:
    """(model config, training config, the whole record) from ``config.json``, validated. A run
    that names its own networks by import path is refused unless their modules are imported
    already or ``trust_code`` (see :func:`vaekit.model.custom_networks.check_consent`)."""
    path = Path(run_dir) / CONFIG_FILE
    record = read_record(run_dir)
    train = record.get("train")
    if isinstance(train, dict) and "val_fraction" not in train:
        train = {**train, "val_fraction": 0.0}  # a run from before held-out splits trained on all
    model = record.get("model")
    if isinstance(model, dict) and "prior" not in model:
        model = {**model, "prior": "standard"}  # a run from before learned priors had N(0, I)
    if isinstance(model, dict):
        check_consent(model, str(path), trust_code)
    try:
        return (
            ModelConfig.from_dict(model),
            TrainConfig.from_dict(train),
            record,
        )
    except (ConfigError, OverflowError) as exc:  # OverflowError: an integer beyond any float
        raise CheckpointError(f"{path}: {exc}") from None


# --- weights -----------------------------------------------------------------------------------

#: A safetensors header's JSON: at most this many bytes for each array, and this many in all
#: besides (braces, metadata, padding to 8 bytes).
_HEADER_BYTES_PER_ARRAY = 256
_HEADER_BYTES = 4096


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def safetensors_size_limit(config: ModelConfig, arrays_per_parameter: int) -> int:
    """The most bytes a safetensors file holding ``arrays_per_parameter`` arrays for each
    parameter of ``config`` can take: the 8-byte header length, the JSON header (at most
    ``_HEADER_BYTES`` + ``_HEADER_BYTES_PER_ARRAY`` per array) and every value as float64
    (8 bytes). Weights have 1 array per parameter; optimizer state at most 2 (Adam's moments)."""
    shapes = config.parameter_shapes.values()
    arrays = arrays_per_parameter * len(shapes)
    values = arrays_per_parameter * sum(math.prod(shape) for shape in shapes)
    return 8 + _HEADER_BYTES + _HEADER_BYTES_PER_ARRAY * arrays + 8 * values


def _decode_safetensors(path: Path, data: bytes) -> dict[str, np.ndarray]:
    # safetensors: an 8-byte header length (its first byte may be 0x80), then a JSON object
    if data.startswith(_PICKLE_PREFIXES) and data[8:9] != b"{":
        raise CheckpointError(
            f"{path} is not a safetensors file (it looks like a pickle or torch.save archive, "
            "which vaekit never loads)"
        )
    try:
        return load_safetensors(data)
    except (SafetensorError, ValueError, OverflowError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from None


def check_weights(path: Path, weights: dict[str, np.ndarray], config: ModelConfig) -> None:
    """Names, shapes and finiteness of ``weights`` must match ``config``, else CheckpointError."""
    expected = config.parameter_shapes
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{path} does not match config.json: missing {missing or 'none'}, "
            f"unexpected {extra or 'none'}"
        )
    for name, shape in expected.items():
        array = weights[name]
        if array.shape != shape:
            raise CheckpointError(
                f"{path}: {name} has shape {array.shape}, config.json implies {shape}"
            )
        if array.dtype.kind != "f" or not np.isfinite(array).all():
            raise CheckpointError(f"{path}: {name} is not a finite floating-point array")


def _damaged(path: Path) -> CheckpointError:
    return CheckpointError(f"{path} does not match the checksum in {STATE_FILE}; it is damaged")


def _read_verified(path: Path, sha256: str, limit: int) -> dict[str, np.ndarray]:
    data = read_regular(path, limit, CheckpointError)
    if _sha256(data) != sha256:
        raise _damaged(path)
    return _decode_safetensors(path, data)


def _recorded_sha256(record: Path, name: str) -> str | None:
    """The SHA-256 that the commit record ``record`` gives file ``name``; None when the record
    is missing, unreadable or incomplete (a save cut short, or renamed away meanwhile)."""
    try:
        files = json.loads(read_regular(record, MAX_RECORD_BYTES, CheckpointError))["files"]
        return files[name] if isinstance(files[name], str) else None
    except (CheckpointError, ValueError, RecursionError, KeyError, TypeError):
        return None


def save_weights(run_dir: Path, engine: Engine) -> None:
    """Write the engine's weights alone as ``model.safetensors`` (atomically)."""
    data = save_safetensors(engine.get_weights(), metadata={"format": "vaekit"})
    write_atomic(Path(run_dir) / WEIGHTS_FILE, data)


def load_weights(run_dir: Path, config: ModelConfig) -> dict[str, np.ndarray]:
    """The run's last committed weights, checked against their commit record and ``config``.

    It only reads, so it is safe while another process trains the run. The weights must match
    ``state.json`` or, while a save is being renamed into place (new weights, old record), the
    complete pending record ``state.json.tmp``; a save that moves on between the reads is met
    by reading again, at most READ_ATTEMPTS times. A run without any commit record (saved by
    the estimator) is checked against ``config`` alone.
    """
    run_dir = Path(run_dir)
    path = run_dir / WEIGHTS_FILE
    records = (run_dir / (STATE_FILE + TMP_SUFFIX), run_dir / STATE_FILE)
    limit = safetensors_size_limit(config, 1)
    for _ in range(READ_ATTEMPTS):
        if not path.exists() and not records[1].exists():
            raise CheckpointError(f"{run_dir} has no saved weights yet: no epoch has finished")
        data = read_regular(path, limit, CheckpointError)
        present = [record for record in records if record.exists()]
        sha = _sha256(data)
        if not present or any(_recorded_sha256(r, WEIGHTS_FILE) == sha for r in present):
            break
    else:
        raise _damaged(path)
    weights = _decode_safetensors(path, data)
    check_weights(path, weights, config)
    return weights


# --- training checkpoints ----------------------------------------------------------------------


def save_checkpoint(run_dir: Path, engine: Engine, state: dict[str, Any]) -> None:
    """Save weights, optimizer state and ``state`` (epoch, RNG, …) as one crash-safe checkpoint."""
    run_dir = Path(run_dir)
    arrays, engine_meta = engine.get_training_state()
    blobs = {
        WEIGHTS_FILE: save_safetensors(engine.get_weights(), metadata={"format": "vaekit"}),
        OPTIMIZER_FILE: save_safetensors(arrays, metadata={"format": "vaekit"}),
    }
    for name, data in blobs.items():
        tmp = run_dir / (name + TMP_SUFFIX)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    record = dict(state, engine=engine_meta, files={k: _sha256(v) for k, v in blobs.items()})
    commit = run_dir / (STATE_FILE + TMP_SUFFIX)
    with open(commit, "wb") as f:
        f.write(_json_bytes(record))
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(run_dir)
    _roll_forward(run_dir)


def _roll_forward(run_dir: Path) -> None:
    for name in (WEIGHTS_FILE, OPTIMIZER_FILE, STATE_FILE):
        tmp = run_dir / (name + TMP_SUFFIX)
        if tmp.exists():
            os.replace(tmp, run_dir / name)
    fsync_dir(run_dir)


def _size_limits(config: ModelConfig) -> dict[str, int]:
    return {
        WEIGHTS_FILE: safetensors_size_limit(config, 1),
        OPTIMIZER_FILE: safetensors_size_limit(config, 2),
    }


def recover(run_dir: Path, config: ModelConfig) -> None:
    """Finish or discard a save that a crash interrupted (see the module docstring).

    Only the writer, holding the run's lock, may call it: it renames and deletes the files of
    a save, which would break a save in progress."""
    run_dir = Path(run_dir)
    commit = run_dir / (STATE_FILE + TMP_SUFFIX)
    if commit.exists():
        limits = _size_limits(config)
        try:
            record = json.loads(read_regular(commit, MAX_RECORD_BYTES, CheckpointError))
            complete = all(
                _file_matches(run_dir, name, sha, limits[name])
                for name, sha in record["files"].items()
            )
        except (CheckpointError, ValueError, RecursionError, KeyError, TypeError, AttributeError):
            complete = False
        if complete:
            _roll_forward(run_dir)
            return
        commit.unlink()
    for name in (WEIGHTS_FILE, OPTIMIZER_FILE):
        (run_dir / (name + TMP_SUFFIX)).unlink(missing_ok=True)


def _file_matches(run_dir: Path, name: str, sha: str, limit: int) -> bool:
    """The new version of ``name`` (still temporary, or already renamed) has checksum ``sha``."""
    for candidate in (run_dir / (name + TMP_SUFFIX), run_dir / name):
        with contextlib.suppress(CheckpointError):
            if _sha256(read_regular(candidate, limit, CheckpointError)) == sha:
                return True
    return False


def load_checkpoint(run_dir: Path, engine: Engine) -> dict[str, Any]:
    """Restore ``engine`` (weights, optimizer, generator) from the run's committed checkpoint;
    return ``state.json``. The writer calls :func:`recover` first."""
    run_dir = Path(run_dir)
    state = _read_json(run_dir / STATE_FILE)
    limits = _size_limits(engine.config)
    try:
        files = state["files"]
        weights = _read_verified(run_dir / WEIGHTS_FILE, files[WEIGHTS_FILE], limits[WEIGHTS_FILE])
        arrays = _read_verified(
            run_dir / OPTIMIZER_FILE, files[OPTIMIZER_FILE], limits[OPTIMIZER_FILE]
        )
        engine_meta = state["engine"]
    except (KeyError, TypeError):
        raise CheckpointError(f"{run_dir / STATE_FILE} is incomplete") from None
    if not isinstance(engine_meta, dict):
        raise CheckpointError(f"{run_dir / STATE_FILE} is incomplete")
    check_weights(run_dir / WEIGHTS_FILE, weights, engine.config)
    if engine_meta.get("optimizer") != engine.optimizer_name:
        raise CheckpointError(
            f"{run_dir / STATE_FILE}: the checkpoint's optimizer is "
            f"{engine_meta.get('optimizer')!r}, this run uses {engine.optimizer_name!r}"
        )
    shapes = engine.config.parameter_shapes
    for key, array in arrays.items():
        if shapes.get(key.partition("/")[2]) != array.shape:
            raise CheckpointError(f"{run_dir / OPTIMIZER_FILE}: {key} does not fit the model")
    engine.set_weights(weights)
    try:
        engine.set_training_state(arrays, engine_meta)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:  # an edited engine block
        raise CheckpointError(
            f"{run_dir / STATE_FILE}: its engine state is damaged ({exc!r})"
        ) from None
    return state


# --- the best weights --------------------------------------------------------------------------


def save_best(run_dir: Path, engine: Engine, epoch: int, loss: float, split: str) -> None:
    """Keep the engine's weights as the run's best (held-out −ELBO ``loss``, nats per example,
    on ``split`` after ``epoch``): remove the old record, write the weights, then the record
    with their SHA-256, each atomically, so that a crash leaves a best that verifies or none."""
    run_dir = Path(run_dir)
    (run_dir / BEST_FILE).unlink(missing_ok=True)
    fsync_dir(run_dir)
    data = save_safetensors(engine.get_weights(), metadata={"format": "vaekit"})
    write_atomic(run_dir / BEST_WEIGHTS_FILE, data)
    record = {"epoch": epoch, "loss": loss, "split": split, "sha256": _sha256(data)}
    write_atomic(run_dir / BEST_FILE, _json_bytes(record))


def read_best(run_dir: Path) -> dict[str, Any] | None:
    """The record of the run's best weights (epoch, loss, split, sha256), or None when the run
    kept none; an edited or damaged record raises CheckpointError."""
    path = Path(run_dir) / BEST_FILE
    if not path.exists() and not path.is_symlink():
        return None
    record = _read_json(path)
    valid = (
        isinstance(record, dict)
        and isinstance(record.get("epoch"), int)
        and isinstance(record.get("loss"), (int, float))
        and isinstance(record.get("sha256"), str)
        and record.get("split") in ("val", "test")
    )
    if not valid:
        raise CheckpointError(f"{path} is not a vaekit record of best weights")
    return record


def load_best_weights(run_dir: Path, config: ModelConfig) -> dict[str, np.ndarray]:
    """The run's best weights, checked against ``best.json`` and ``config``."""
    record = read_best(run_dir)
    if record is None:
        raise CheckpointError(
            f"{run_dir} kept no best checkpoint (train with --keep best and held-out data); "
            "use --checkpoint last"
        )
    path = Path(run_dir) / BEST_WEIGHTS_FILE
    weights = _read_verified(path, record["sha256"], safetensors_size_limit(config, 1))
    check_weights(path, weights, config)
    return weights


def keep_best_until(run_dir: Path, epoch: int) -> None:
    """Remove best weights of an epoch after ``epoch``, the last checkpoint (a crash came
    between saving them and the checkpoint of their epoch, which training will repeat)."""
    record = read_best(run_dir)
    if record is not None and record["epoch"] > epoch:
        (Path(run_dir) / BEST_FILE).unlink()
        (Path(run_dir) / BEST_WEIGHTS_FILE).unlink(missing_ok=True)


# --- metrics -------------------------------------------------------------------------------------


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
    an integer epoch; anything else on a line (an edit, damage) is skipped."""
    return (
        isinstance(record, dict)
        and isinstance(record.get("epoch"), int)
        and all(
            isinstance(v, float) or (isinstance(v, int) and abs(v) <= sys.float_info.max)
            for v in record.values()
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


# --- whole runs --------------------------------------------------------------------------------

#: Every file and folder a run writes; ``clear_run`` removes these (but the lock, see there).
RUN_ENTRIES = (
    CONFIG_FILE,
    WEIGHTS_FILE,
    OPTIMIZER_FILE,
    STATE_FILE,
    METRICS_FILE,
    SCALING_FILE,
    BEST_WEIGHTS_FILE,
    BEST_FILE,
    OUTLIERS_FILE,
    FEATURES_FILE,
    LOCK_FILE,
    "samples.png",
    "reconstructions.png",
    "manifold.png",
    "interpolations.png",
    "scatter.png",
    "curves.png",
    "traversals.png",
    "disentanglement.json",
    FIGURES_DIR,
    TENSORBOARD_DIR,
)


def is_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a vaekit run: a config.json (a file) whose format is vaekit's."""
    path = Path(run_dir) / CONFIG_FILE
    if path.is_symlink() or not path.is_file():
        return False
    try:
        record = _read_json(path)
    except (CheckpointError, OSError):
        return False
    return isinstance(record, dict) and record.get("format") == RUN_FORMAT


def holds_nothing(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds nothing but its writer lock and the temporaries of files that
    vaekit was writing when it was stopped (before any file of the run was whole)."""
    return all(
        entry.name == LOCK_FILE
        or (entry.name.endswith(TMP_SUFFIX) and entry.name[: -len(TMP_SUFFIX)] in RUN_ENTRIES)
        for entry in Path(run_dir).iterdir()
    )


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def clear_run(run_dir: Path) -> None:
    """Remove a previous run's files from ``run_dir`` (for ``--force``), and nothing else: the
    files of RUN_ENTRIES and their temporaries, in ``figures/`` and ``tensorboard/`` only the
    figures and event files vaekit writes (each folder too once empty), config.json last (so a
    process stopped meanwhile leaves a run that ``--force`` still replaces), and never the writer
    lock, which the caller holds. A symbolic link is removed itself, never followed."""
    run_dir = Path(run_dir)
    names = [name for name in RUN_ENTRIES if name not in (CONFIG_FILE, LOCK_FILE)]
    for name in [*names, CONFIG_FILE]:
        for path in (run_dir / name, run_dir / (name + TMP_SUFFIX)):
            if not _is_folder(path):
                path.unlink(missing_ok=True)
            elif path.name in (FIGURES_DIR, TENSORBOARD_DIR):
                own = FIGURE_NAME if path.name == FIGURES_DIR else EVENTS_NAME
                for child in path.iterdir():
                    if own.fullmatch(child.name) and not _is_folder(child):
                        child.unlink()
                if not any(path.iterdir()):
                    path.rmdir()


def check_resumable(run_dir: Path) -> None:
    """Refuse, in one line that says why and what to do instead, a run that cannot be resumed:
    one that saved nothing yet (stopped before its first epoch finished), or one that the
    estimator saved (weights, but no optimizer state and no data to train on)."""
    run_dir = Path(run_dir)
    if run_dir.is_dir() and holds_nothing(run_dir):
        raise CheckpointError(
            f"there is no run to resume in {run_dir}: nothing was saved there (a run stopped "
            "before it began saves nothing); start it with the command that started it, "
            "without --resume"
        )
    record = read_record(run_dir)
    if record.get("created_by") == "estimator":
        raise CheckpointError(
            f"{run_dir} was saved by VAE.save(): it holds the weights but no optimizer state or "
            "training data, so it cannot be resumed; fit a new model, or train with vaekit train"
        )
    commits = (run_dir / STATE_FILE, run_dir / (STATE_FILE + TMP_SUFFIX))
    if not any(path.exists() or path.is_symlink() for path in commits):
        raise CheckpointError(
            f"{run_dir} has no saved epoch (training stopped before its first epoch finished), "
            "so there is nothing to resume; start it again with the command that started it "
            f"and --force, or with 'vaekit train --config {run_dir / CONFIG_FILE} --out "
            f"{run_dir} --force'"
        )


def open_run(
    run_dir: Path,
    engine: str | None = None,
    device: str = "auto",
    which: str = "last",
    *,
    trust_code: bool = False,
) -> Engine:
    """An engine holding a run's trained weights, ready to encode, decode and evaluate; it only
    reads the run, so it is safe while another process trains it.

    ``engine`` defaults to the one the run was trained with; either engine loads either's runs.
    ``which`` is ``last`` (the last checkpoint) or ``best`` (the best held-out −ELBO, kept by
    ``--keep best``). ``trust_code``: import the networks the run names by import path (see
    :func:`read_config`).
    """
    if which not in WHICH:
        raise ConfigError(f"which must be one of {', '.join(WHICH)}, not {which!r}")
    model, train, _ = read_config(run_dir, trust_code=trust_code)
    load = load_best_weights if which == "best" else load_weights
    weights = load(run_dir, model)
    runner = build_engine(model, engine or train.engine, seed=train.seed, device=device)
    runner.set_weights(weights)
    return runner


# --- the one writer ----------------------------------------------------------------------------


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
