"""Experiment tracking: a run's scalars, images and settings as TensorBoard event files.

``metrics.jsonl`` stays the run's record; a logger is an optional second view of it, fed by the
training loop. :func:`make_logger` builds the one ``--logger`` asks for (``none`` or
``tensorboard``, the latter writing ``RUN/tensorboard/``). Losses are nats per example, as in
``metrics.jsonl``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.config.limits import LOGGERS
from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.errors import ConfigError, MissingExtra
from vaekit.runs.layout import TENSORBOARD_DIR

#: The key of an epoch record that is its position on TensorBoard's x axis (every series of a
#: run shares one axis: the optimizer step), not a scalar to plot.
AXIS = "step"


def make_logger(
    kind: str,
    run_dir: str | Path,
    model: ModelConfig,
    train: TrainConfig,
    *,
    purge_step: int | None = None,
) -> TensorBoardLogger | None:
    """The logger ``kind`` names: None for ``none``, a :class:`TensorBoardLogger` writing
    ``run_dir/tensorboard`` for ``tensorboard``. ``purge_step``: on resuming, the first step
    trained again (TensorBoard then hides the events an interrupted attempt wrote from it on)."""
    if kind not in LOGGERS:
        raise ConfigError(f"logger must be one of {', '.join(LOGGERS)}; got {kind!r}")
    if kind == "none":
        return None
    return TensorBoardLogger(Path(run_dir) / TENSORBOARD_DIR, model, train, purge_step=purge_step)


def check_available(kind: str) -> None:
    """Raise, before anything is written, what :func:`make_logger` would: ConfigError for an
    unknown ``kind``, :class:`MissingExtra` when its package is not installed."""
    if kind not in LOGGERS:
        raise ConfigError(f"logger must be one of {', '.join(LOGGERS)}; got {kind!r}")
    if kind == "tensorboard":
        _summary_writer()


def _summary_writer():
    """torch's SummaryWriter class, or :class:`MissingExtra` when tensorboard is not installed."""
    if importlib.util.find_spec("tensorboard") is None:
        raise MissingExtra("--logger tensorboard", "tensorboard")
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise MissingExtra("--logger tensorboard", "tensorboard") from None
    return SummaryWriter


class TensorBoardLogger:
    """Writes TensorBoard event files into ``log_dir``: per step ``step/loss``, ``step/recon``,
    ``step/kl``, ``step/beta``, ``step/lr``; per epoch ``epoch/<key>`` for each number of its
    metrics record (the epoch too), at the step that ended it, so that on resuming TensorBoard
    drops what an interrupted attempt wrote after its checkpoint, epochs as steps; images; the
    class names (``classes``, a text table of code and name); and, when closed, the run's
    settings as hyperparameters with the final metrics (``final/<key>``)."""

    def __init__(
        self,
        log_dir: str | Path,
        model_config: ModelConfig,
        train_config: TrainConfig,
        *,
        purge_step: int | None = None,
    ) -> None:
        writer_class = _summary_writer()
        self.log_dir = Path(log_dir)
        self.settings = hparams_of(model_config, train_config)
        self.writer = writer_class(log_dir=str(self.log_dir), purge_step=purge_step)
        self.last_step = 0
        # TensorBoard writes in a thread of its own; an error there (a full disk) is raised
        # again by the next write in the training loop, which reports it in one line, so the
        # thread's own traceback is not printed.
        self._previous_hook = threading.excepthook
        threading.excepthook = self._quiet_writer_thread

    def _quiet_writer_thread(self, args: threading.ExceptHookArgs) -> None:
        thread = type(args.thread)
        if thread.__module__.startswith("tensorboard.") and issubclass(args.exc_type, OSError):
            return
        self._previous_hook(args)

    def _restore_hook(self) -> None:
        if threading.excepthook == self._quiet_writer_thread:
            threading.excepthook = self._previous_hook

    def step(self, step: int, loss: float, recon: float, kl: float, beta: float, lr: float) -> None:
        """One optimizer step's batch means (nats per example), its KL weight β and learning
        rate, at global step ``step``."""
        values = {"loss": loss, "recon": recon, "kl": kl, "beta": beta, "lr": lr}
        for name, value in values.items():
            self.writer.add_scalar(f"step/{name}", float(value), step)
        self.last_step = max(self.last_step, step)

    def epoch(self, record: Mapping[str, Any]) -> None:
        """Every number of an epoch's metrics record (epoch, loss, recon, kl, beta, val_loss,
        test_loss, seconds, …) as ``epoch/<key>`` at the step that ended the epoch,
        ``record["step"]``; then flush, so that a TensorBoard watching the run sees the
        epoch."""
        step = int(record[AXIS])
        for key, value in numbers(record).items():
            if key != AXIS:
                self.writer.add_scalar(f"epoch/{key}", value, step)
        self.last_step = max(self.last_step, step)
        self.writer.flush()

    def image(self, tag: str, image: str | Path | bytes | np.ndarray, step: int) -> None:
        """A picture at ``step``: a PNG (a file, or its bytes) or an H×W or H×W×C array (C = 1,
        3 or 4; uint8 levels, or floats in [0, 1])."""
        self.writer.add_image(tag, as_hwc(image), step, dataformats="HWC")

    def classes(self, names: Sequence[str]) -> None:
        """The names of the run's classes, once, as the text ``classes``: a Markdown table of
        each code and its name (the names the figures' legends and rows show)."""
        self.writer.add_text("classes", class_table(names), 0)

    def close(self, final_metrics: Mapping[str, Any]) -> None:
        """Write the settings as hyperparameters with the numbers of ``final_metrics`` (the
        last epoch's record, say) as ``final/<key>``, and close the event file."""
        from torch.utils.tensorboard.summary import hparams

        metrics = {f"final/{k}": v for k, v in numbers(final_metrics).items() if k != AXIS}
        try:
            file_writer = self.writer._get_file_writer()
            for summary in hparams(self.settings, metrics):
                file_writer.add_summary(summary)
            for tag, value in metrics.items():
                self.writer.add_scalar(tag, value, self.last_step)
            self.writer.close()
        finally:
            self._restore_hook()

    def stop(self) -> None:
        """Close the event file without the final summary (training stopped by an error; an
        error of the file itself, such as a full disk, was reported already)."""
        with contextlib.suppress(OSError):
            self.writer.close()
        self._restore_hook()


def numbers(record: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a record (bools and everything else left out), as floats."""
    return {
        key: float(value)
        for key, value in record.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


def class_table(names: Sequence[str]) -> str:
    """A Markdown table of each class's code and name (``|`` and line breaks escaped, so a
    name stays in its cell)."""
    rows = [
        f"| {code} | {name.replace('|', '&#124;').replace(chr(10), ' ')} |"
        for code, name in enumerate(names)
    ]
    return "\n".join(["| code | name |", "| --- | --- |", *rows])


def hparams_of(model: ModelConfig, train: TrainConfig) -> dict[str, str | int | float | bool]:
    """The run's settings, flat (``model.hidden``, ``train.lr``, …): numbers, strings and bools
    as they are; lists as their JSON text (``[400, 200]``); None as ``none``."""
    flat = {}
    for section, config in (("model", model.to_dict()), ("train", train.to_dict())):
        for key, value in config.items():
            if value is None:
                value = "none"
            elif isinstance(value, (list, tuple)):
                value = json.dumps(list(value))
            flat[f"{section}.{key}"] = value
    return flat


def as_hwc(image: str | Path | bytes | np.ndarray) -> np.ndarray:
    """An image as an H×W×C array: a PNG (a file, or its bytes) read with Pillow, or an array,
    whose H×W form gains a channel axis."""
    if isinstance(image, (str, Path, bytes)):
        from PIL import Image

        with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as picture:
            image = np.asarray(picture)
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ConfigError(f"an image must be H×W or H×W×C with C = 1, 3 or 4; got {array.shape}")
    return array
