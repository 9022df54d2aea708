"""The run directory: the names of its files, whether a folder holds a run, replacing one
(``--force``), and whether one can be resumed.

A run directory holds::

    config.json             model and training config, vaekit version        (written once)
    model.safetensors       the weights, with the names and shapes of vaekit.model.parameters
    optimizer.safetensors   optimizer arrays: exp_avg/<param>, exp_avg_sq/<param>, momentum/<param>
    state.json              epoch, optimizer step, RNG states, SHA-256 of the two weight files
    metrics.jsonl           one JSON line per finished epoch
    scaling.json            how raw values become model inputs (vaekit.data.scaling), fitted once
    classes.json            the names of the classes, code by code (vaekit.data.classes)
    best.safetensors        with --keep best: the weights of the best held-out −ELBO so far
    best.json               its record: epoch, held-out loss (nats), split, SHA-256 of the weights
    outliers.json           a model saved by the estimator: its outlier threshold (nats), k, seed
    features.json           a model the estimator fitted on a DataFrame: its column names
    writer.lock             the one-writer lock; names the process training the run
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from vaekit.config.files import RUN_FORMAT
from vaekit.disk import TMP_SUFFIX, parse_json, read_regular
from vaekit.errors import CheckpointError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
#: vaekit.data.scaling.SCALING_FILE (that module imports this one; tests check they agree).
SCALING_FILE = "scaling.json"
#: vaekit.data.classes.CLASSES_FILE (likewise).
CLASSES_FILE = "classes.json"
BEST_WEIGHTS_FILE = "best.safetensors"
BEST_FILE = "best.json"
#: The outlier threshold of a model saved by the estimator (vaekit.api.estimator.VAE.save).
OUTLIERS_FILE = "outliers.json"
#: The column names of the DataFrame a model saved by the estimator was fitted on.
FEATURES_FILE = "features.json"
#: Which weights a command loads: the last checkpoint, or the best one (--keep best).
WHICH = ("last", "best")
LOCK_FILE = "writer.lock"
#: The folder of the figures drawn during training (see vaekit.train.writer), and their names
#: (with their temporaries).
FIGURES_DIR = "figures"
FIGURE_NAME = re.compile(r"((samples|reconstructions)-epoch-\d+|samples-step-\d+)\.png(\.tmp)?")
#: The folder of TensorBoard event files (``--logger tensorboard``), and the files vaekit writes
#: there (TensorBoard's own naming).
TENSORBOARD_DIR = "tensorboard"
EVENTS_NAME = re.compile(r"events\.out\.tfevents\.[\w.-]+")

#: Largest ``state.json`` read (it holds the generator states: a few kilobytes).
MAX_RECORD_BYTES = 1024 * 1024


def json_bytes(record: Any) -> bytes:
    """A record as the run's JSON files hold it: indented, keys sorted, a final newline."""
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()


def read_json(path: Path) -> Any:
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


#: Every file and folder a run writes; ``clear_run`` removes these (but the lock, see there).
RUN_ENTRIES = (
    CONFIG_FILE,
    WEIGHTS_FILE,
    OPTIMIZER_FILE,
    STATE_FILE,
    METRICS_FILE,
    SCALING_FILE,
    CLASSES_FILE,
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
        record = read_json(path)
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
