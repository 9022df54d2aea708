"""A run's weights and optimizer state as safetensors, saved as crash-safe checkpoints.

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
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from vaekit.config.settings import ModelConfig
from vaekit.disk import (
    TMP_SUFFIX,
    fsync_dir,
    read_regular,
    write_atomic,
)
from vaekit.engines import Engine
from vaekit.errors import CheckpointError
from vaekit.model import parameters
from vaekit.runs.config_file import read_record
from vaekit.runs.layout import (
    CONFIG_FILE,
    MAX_RECORD_BYTES,
    OPTIMIZER_FILE,
    STATE_FILE,
    WEIGHTS_FILE,
    holds_nothing,
    json_bytes,
    read_json,
)

#: Reads of the weights while a writer renames a save into place, before they count as damaged.
READ_ATTEMPTS = 10

_PICKLE_PREFIXES = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+, zip (torch.save)


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
    shapes = parameters.shapes(config).values()
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
    expected = parameters.shapes(config)
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


def weights_bytes(engine: Engine) -> bytes:
    """The engine's weights as they are now, as the bytes of a safetensors file."""
    return save_safetensors(engine.get_weights(), metadata={"format": "vaekit"})


def save_weights(run_dir: Path, engine: Engine) -> None:
    """Write the engine's weights alone as ``model.safetensors`` (atomically)."""
    write_atomic(Path(run_dir) / WEIGHTS_FILE, weights_bytes(engine))


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


@dataclass(frozen=True)
class Snapshot:
    """A checkpoint taken in memory by :func:`take_checkpoint`, for :func:`write_checkpoint`."""

    files: dict[str, bytes]  # the weights and the optimizer state, as safetensors files
    record: dict[str, Any]  # the commit record: the loop's state, the engine's, each file's SHA-256


def take_checkpoint(engine: Engine, state: dict[str, Any]) -> Snapshot:
    """The engine's weights and optimizer state and ``state`` (epoch, RNG, …) as they are now,
    in memory: training may go on while :func:`write_checkpoint` writes them."""
    arrays, engine_meta = engine.get_training_state()
    files = {
        WEIGHTS_FILE: weights_bytes(engine),
        OPTIMIZER_FILE: save_safetensors(arrays, metadata={"format": "vaekit"}),
    }
    record = dict(state, engine=engine_meta, files={k: _sha256(v) for k, v in files.items()})
    return Snapshot(files, record)


def write_checkpoint(run_dir: Path, snapshot: Snapshot) -> None:
    """Write ``snapshot`` into ``run_dir`` as one crash-safe checkpoint (the module docstring
    says how)."""
    run_dir = Path(run_dir)
    for name, data in snapshot.files.items():
        tmp = run_dir / (name + TMP_SUFFIX)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    commit = run_dir / (STATE_FILE + TMP_SUFFIX)
    with open(commit, "wb") as f:
        f.write(json_bytes(snapshot.record))
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(run_dir)
    _roll_forward(run_dir)


def save_checkpoint(run_dir: Path, engine: Engine, state: dict[str, Any]) -> None:
    """Save weights, optimizer state and ``state`` (epoch, RNG, …) as one crash-safe checkpoint."""
    write_checkpoint(run_dir, take_checkpoint(engine, state))


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
    state = read_json(run_dir / STATE_FILE)
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
    shapes = parameters.shapes(engine.config)
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
