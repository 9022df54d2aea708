"""The weights of a run's best held-out −ELBO (``--keep best``): ``best.safetensors`` and its
record ``best.json``, each written atomically, so that a crash leaves a best that verifies or
none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vaekit.config.settings import ModelConfig
from vaekit.disk import (
    fsync_dir,
    write_atomic,
)
from vaekit.errors import CheckpointError
from vaekit.runs.checkpoint import _read_verified, _sha256, check_weights, safetensors_size_limit
from vaekit.runs.layout import BEST_FILE, BEST_WEIGHTS_FILE, json_bytes, read_json


def save_best(run_dir: Path, weights: bytes, epoch: int, loss: float, split: str) -> None:
    """Keep ``weights`` (a safetensors file's bytes) as the run's best (held-out −ELBO ``loss``,
    nats per example, on ``split`` after ``epoch``): remove the old record, write the weights,
    then the record with their SHA-256, each atomically, so that a crash leaves a best that
    verifies or none."""
    run_dir = Path(run_dir)
    (run_dir / BEST_FILE).unlink(missing_ok=True)
    fsync_dir(run_dir)
    write_atomic(run_dir / BEST_WEIGHTS_FILE, weights)
    record = {"epoch": epoch, "loss": loss, "split": split, "sha256": _sha256(weights)}
    write_atomic(run_dir / BEST_FILE, json_bytes(record))


def read_best(run_dir: Path) -> dict[str, Any] | None:
    """The record of the run's best weights (epoch, loss, split, sha256), or None when the run
    kept none; an edited or damaged record raises CheckpointError."""
    path = Path(run_dir) / BEST_FILE
    if not path.exists() and not path.is_symlink():
        return None
    record = read_json(path)
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
