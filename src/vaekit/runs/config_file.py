"""A run's ``config.json``: both settings, the vaekit version and the command that made the run,
written once, read and validated by every command."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

from vaekit.config.files import RUN_FORMAT
from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.disk import (
    write_atomic,
)
from vaekit.errors import CheckpointError, ConfigError
from vaekit.model.custom_networks import check_consent
from vaekit.runs.layout import CONFIG_FILE, json_bytes, read_json


def write_config(run_dir: Path, model: ModelConfig, train: TrainConfig, created_by: str) -> None:
    """Write ``config.json``: both configs, the vaekit version and which command made the run."""
    record = {
        "format": RUN_FORMAT,
        "vaekit_version": version("vaekit"),
        "created_by": created_by,
        "model": model.to_dict(),
        "train": train.to_dict(),
    }
    write_atomic(Path(run_dir) / CONFIG_FILE, json_bytes(record))


def read_record(run_dir: Path) -> dict[str, Any]:
    """The JSON record of ``config.json`` as it is (format checked, settings not built)."""
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    record = read_json(path)
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
    if isinstance(train, dict) and "threads" not in train:
        train = {**train, "threads": None}  # a run from before the setting: one per core
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
