"""Run directories: configs as JSON, weights and optimizer state as safetensors, written atomically.

A run directory holds::

    config.json             model and training config, vaekit version        (written once)
    model.safetensors       the weights, names and shapes of ModelConfig.parameter_shapes
    optimizer.safetensors   optimizer arrays: exp_avg/<param>, exp_avg_sq/<param>, momentum/<param>
    state.json              epoch, optimizer step, RNG states, SHA-256 of the two weight files
    metrics.jsonl           one JSON line per finished epoch

Saving is crash-safe: both safetensors files are written to temporary names, then ``state.json.tmp``
(the commit record, holding their SHA-256), then everything is renamed into place. A save that was
interrupted is rolled forward on the next load when its commit record is complete, and discarded
otherwise, so a checkpoint is always one whole epoch. No pickle is ever read: weights go through
``safetensors`` only, and every other file is JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from vaekit import __version__
from vaekit.config import ModelConfig, TrainConfig
from vaekit.engines import Engine, build_engine
from vaekit.errors import CheckpointError, ConfigError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
RUN_FORMAT = "vaekit-run"
TMP_SUFFIX = ".tmp"
_PICKLE_PREFIXES = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+, zip (torch.save)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename: all or nothing."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; is {path.parent} a vaekit run?") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from None


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


def read_config(run_dir: Path) -> tuple[ModelConfig, TrainConfig, dict[str, Any]]:
    """(model config, training config, the whole record) from ``config.json``, validated."""
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    record = _read_json(path)
    if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{path} is not a vaekit run config")
    try:
        return (
            ModelConfig.from_dict(record.get("model")),
            TrainConfig.from_dict(record.get("train")),
            record,
        )
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


# --- weights -----------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _decode_safetensors(path: Path, data: bytes) -> dict[str, np.ndarray]:
    if data.startswith(_PICKLE_PREFIXES):
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


def _read_verified(path: Path, sha256: str | None) -> dict[str, np.ndarray]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    if sha256 is not None and _sha256(data) != sha256:
        raise CheckpointError(f"{path} does not match the checksum in {STATE_FILE}; it is damaged")
    return _decode_safetensors(path, data)


def save_weights(run_dir: Path, engine: Engine) -> None:
    """Write the engine's weights alone as ``model.safetensors`` (atomically)."""
    data = save_safetensors(engine.get_weights(), metadata={"format": "vaekit"})
    write_atomic(Path(run_dir) / WEIGHTS_FILE, data)


def load_weights(run_dir: Path, config: ModelConfig) -> dict[str, np.ndarray]:
    """The run's weights, verified against ``state.json`` (when present) and ``config``."""
    run_dir = Path(run_dir)
    recover(run_dir)
    state_path = run_dir / STATE_FILE
    sha = _read_json(state_path)["files"][WEIGHTS_FILE] if state_path.exists() else None
    path = run_dir / WEIGHTS_FILE
    weights = _read_verified(path, sha)
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
    _fsync_dir(run_dir)
    _roll_forward(run_dir)


def _roll_forward(run_dir: Path) -> None:
    for name in (WEIGHTS_FILE, OPTIMIZER_FILE, STATE_FILE):
        tmp = run_dir / (name + TMP_SUFFIX)
        if tmp.exists():
            os.replace(tmp, run_dir / name)
    _fsync_dir(run_dir)


def recover(run_dir: Path) -> None:
    """Finish or discard a save that a crash interrupted (see the module docstring)."""
    run_dir = Path(run_dir)
    commit = run_dir / (STATE_FILE + TMP_SUFFIX)
    if commit.exists():
        try:
            record = json.loads(commit.read_text(encoding="utf-8"))
            complete = all(
                _file_matches(run_dir, name, sha) for name, sha in record["files"].items()
            )
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            complete = False
        if complete:
            _roll_forward(run_dir)
            return
        commit.unlink()
    for name in (WEIGHTS_FILE, OPTIMIZER_FILE):
        (run_dir / (name + TMP_SUFFIX)).unlink(missing_ok=True)


def _file_matches(run_dir: Path, name: str, sha: str) -> bool:
    """The new version of ``name`` (still temporary, or already renamed) has checksum ``sha``."""
    for candidate in (run_dir / (name + TMP_SUFFIX), run_dir / name):
        if candidate.exists() and _sha256(candidate.read_bytes()) == sha:
            return True
    return False


def load_checkpoint(run_dir: Path, engine: Engine) -> dict[str, Any]:
    """Restore ``engine`` (weights, optimizer, generator) from the run; return ``state.json``."""
    run_dir = Path(run_dir)
    recover(run_dir)
    state = _read_json(run_dir / STATE_FILE)
    try:
        files = state["files"]
        weights = _read_verified(run_dir / WEIGHTS_FILE, files[WEIGHTS_FILE])
        arrays = _read_verified(run_dir / OPTIMIZER_FILE, files[OPTIMIZER_FILE])
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
    engine.set_training_state(arrays, engine_meta)
    return state


# --- metrics -------------------------------------------------------------------------------------


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` (one per epoch); a line cut short by a crash is skipped."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            records.append(record)
    return records


def write_metrics(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """Replace ``metrics.jsonl`` with ``records``, atomically."""
    text = "".join(json.dumps(r) + "\n" for r in records)
    write_atomic(Path(run_dir) / METRICS_FILE, text.encode())


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Add one record to ``metrics.jsonl`` and fsync it."""
    with open(Path(run_dir) / METRICS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


# --- whole runs --------------------------------------------------------------------------------

#: Every file and folder a run writes; ``clear_run`` removes exactly these.
RUN_ENTRIES = (
    CONFIG_FILE,
    WEIGHTS_FILE,
    OPTIMIZER_FILE,
    STATE_FILE,
    METRICS_FILE,
    "samples.png",
    "reconstructions.png",
    "manifold.png",
    "interpolations.png",
    "scatter.png",
    "curves.png",
    "figures",
)


def clear_run(run_dir: Path) -> None:
    """Remove a previous run's files from ``run_dir`` (for ``--force``), and nothing else."""
    for name in RUN_ENTRIES:
        for path in (Path(run_dir) / name, Path(run_dir) / (name + TMP_SUFFIX)):
            if path.is_dir():
                for child in path.iterdir():
                    child.unlink()
                path.rmdir()
            else:
                path.unlink(missing_ok=True)


def open_run(run_dir: Path, engine: str | None = None, device: str = "auto") -> Engine:
    """An engine holding a run's trained weights, ready to encode, decode and evaluate.

    ``engine`` defaults to the one the run was trained with; either engine loads either's runs.
    """
    model, train, _ = read_config(run_dir)
    weights = load_weights(run_dir, model)
    runner = build_engine(model, engine or train.engine, seed=train.seed, device=device)
    runner.set_weights(weights)
    return runner
