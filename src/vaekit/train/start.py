"""Starting a run and resuming one: every check before anything is written, then the writer lock,
the run directory and the loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.data import classes
from vaekit.data.datasets import run_data_dir
from vaekit.data.pipeline import TrainingData, check_compatible
from vaekit.data.scaling import Scaling
from vaekit.engines import Engine, EngineOptions, build_engine
from vaekit.engines.torch import distributed
from vaekit.engines.torch.distributed import Group
from vaekit.errors import ConfigError
from vaekit.runs import best_weights, checkpoint, config_file, layout, lock
from vaekit.runs.metrics import keep_metrics_until, last_metrics
from vaekit.text import plural
from vaekit.train.loop import (
    Log,
    LoopState,
    check_data_on_device,
    check_held_out,
    stop_reason,
    stop_sentence,
)
from vaekit.train.writer import RunWriter


def check_logger(config: TrainConfig) -> None:
    """Refuse a ``config.logger`` whose package is missing before anything is written."""
    if config.logger != "none":
        from vaekit.train import tracking  # torch's TensorBoard writer: only when asked for

        tracking.check_available(config.logger)


def engine_for(model: ModelConfig, config: TrainConfig, group: Group | None = None) -> Engine:
    """A fresh engine for ``model`` with the engine, seed, device and optimizer of ``config``;
    with a ``group``, the engine joins it (see :func:`vaekit.engines.build_engine`)."""
    return build_engine(model, config.engine, EngineOptions.of(config), group=group)


def check_run_dir(run_dir: Path, *, force: bool) -> None:
    """Refuse a ``run_dir`` that is a file, that another process is writing, or whose contents
    a new run may not replace (see :func:`_check_contents`); creates and changes nothing."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} exists and is not a directory")
    if run_dir.is_dir():
        lock.check_not_busy(run_dir)
        _check_contents(run_dir, force=force)


def _check_contents(run_dir: Path, *, force: bool) -> None:
    """Refuse a directory holding anything (but a lock and vaekit's temporaries) without
    ``force``, and one holding anything but a vaekit run even with it."""
    if layout.holds_nothing(run_dir):
        return
    if not force:
        raise ConfigError(
            f"run directory {run_dir} is not empty; pass --resume to continue it, "
            "--force to replace it, or choose another --out"
        )
    if not layout.is_run(run_dir):
        raise ConfigError(
            f"{run_dir} is not empty and holds no vaekit run (no config.json of one); --force "
            "replaces only a vaekit run, so choose another --out"
        )


def prepare_run_dir(run_dir: Path, *, force: bool) -> None:
    """With the run's lock held: check again what ``run_dir`` holds (another process may have
    written it since :func:`check_run_dir`), then empty it of a previous run's own files."""
    _check_contents(run_dir, force=force)
    layout.clear_run(run_dir)


def _writer_lock(run_dir: Path, main: bool) -> contextlib.AbstractContextManager:
    """The run's writer lock for the process that writes (rank 0 under torchrun)."""
    return lock.writing(run_dir) if main else contextlib.nullcontext()


def checked_engine(
    model: ModelConfig, config: TrainConfig, data: TrainingData, group: Group | None
) -> Engine:
    """The engine for a run that starts or resumes, after the checks that both share: the data
    fit the model, a held-out split exists where the settings follow one, the logger's package
    is there, and the data can live where ``data_on_device`` asks."""
    check_compatible(model, data)
    check_held_out(config, data)
    check_logger(config)
    engine = engine_for(model, config, group)
    check_data_on_device(config, data, engine)
    return engine


def start_run(
    model: ModelConfig,
    config: TrainConfig,
    run_dir: str | Path,
    *,
    data: TrainingData | None = None,
    force: bool = False,
    created_by: str = "train",
    progress: bool = True,
    log: Log = print,
    on_start: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Train a new model into ``run_dir``; returns the per-epoch metrics.

    Everything is validated (data, configs, engine) before anything is written; ``on_start``
    then runs, as training starts. Launched by torchrun, every process trains its share and only
    rank 0 writes.
    """
    run_dir = Path(run_dir)
    group = distributed.from_environment()
    main = group is None or group.is_main
    data = data or TrainingData.load(config)
    check_run_dir(run_dir, force=force)  # on every rank, before rank 0 may write
    engine = checked_engine(model, config, data, group)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    with _writer_lock(run_dir, main):
        if main:
            prepare_run_dir(run_dir, force=force)
            config_file.write_config(run_dir, model, config, created_by)
            if data.scaling is not None:
                data.scaling.save(run_dir)
            if data.classes:
                classes.save(run_dir, data.classes)
        if on_start is not None:
            on_start()
        writer = RunWriter(run_dir, model, config, log, writes=main)
        return writer.train(engine, data, LoopState.fresh(config.seed), progress)


def resume_run(
    run_dir: str | Path,
    *,
    epochs: int | str | None = None,
    patience: int | None = None,
    max_minutes: float | None = None,
    data_dir: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
    log: Log = print,
) -> list[dict[str, Any]]:
    """Continue the run in ``run_dir`` from its last complete epoch (to ``epochs`` if given,
    stopping early with ``patience`` and after ``max_minutes`` in all if given, each stored)
    and return the metrics record of that epoch (see :func:`last_metrics`) followed
    by those of the epochs trained now (metrics.jsonl has them all); a finished run only gets
    its final figures again.
    ``data_dir``, where the data set lives now, replaces the run's stored one (in config.json
    too); else the data is looked for as :func:`vaekit.data.datasets.run_data_dir` says.
    ``device`` continues on another device (stored too); weights and optimizer state are
    device-neutral NumPy arrays in the checkpoint.
    Under torchrun, every process resumes from the same checkpoint."""
    run_dir = Path(run_dir)
    group = distributed.from_environment()
    main = group is None or group.is_main
    checkpoint.check_resumable(run_dir)
    model, config, record = config_file.read_config(run_dir)
    lock.check_not_busy(run_dir)  # on every rank, before anything is loaded
    changes = {"epochs": epochs, "patience": patience, "max_minutes": max_minutes}
    config, where = _resumed_config(config, changes, device, data_dir)
    scaling = Scaling.load(run_dir)  # None for a run from before scalings were stored: auto
    names = classes.load(run_dir)  # None: numbered classes, or a run from before names were kept
    data = TrainingData.load(replace(config, data_dir=where), scaling=scaling)
    check_same_classes(run_dir, names, data.classes)
    engine = checked_engine(model, config, data, group)
    with _writer_lock(run_dir, main):
        if main:
            checkpoint.recover(run_dir, model)  # finish or undo an interrupted save, first
        distributed.barrier()
        state = LoopState.from_json(checkpoint.load_checkpoint(run_dir, engine))
        if state.epoch > config.epoch_limit:
            raise ConfigError(
                f"{run_dir} has already trained {plural(state.epoch, 'epoch')}; pass --epochs "
                f"with a number larger than {state.epoch} to train longer"
            )
        if main:
            config_file.write_config(run_dir, model, config, record.get("created_by", "train"))
            keep_metrics_until(run_dir, state.epoch)  # drop those after a crash
            best_weights.keep_best_until(run_dir, state.epoch)
            if scaling is None and data.scaling is not None:
                data.scaling.save(run_dir)
            if names is None and data.classes:
                classes.save(run_dir, data.classes)
            log(_resuming_line(run_dir, config, state))
        saved = last_metrics(run_dir, state.epoch)
        writer = RunWriter(run_dir, model, config, log, writes=main, first_step=state.step)
        return ([saved] if saved else []) + writer.train(engine, data, state, progress)


def check_same_classes(
    run_dir: Path, names: tuple[str, ...] | None, found: tuple[str, ...] | None
) -> None:
    """Refuse to resume on data whose classes are not the ones the run keeps (a class folder
    renamed, added or removed would change what each code means); a run that keeps no names
    takes the data's."""
    if names is None or found == names:
        return
    shown = ", ".join(found[:10]) + (" …" if len(found) > 10 else "") if found else "none"
    raise ConfigError(
        f"the data of {run_dir} now name the classes {shown}, but the run was trained on "
        f"{', '.join(names[:10])}{' …' if len(names) > 10 else ''}; restore the data as they "
        "were, or train a new run"
    )


def _resumed_config(
    config: TrainConfig,
    stopping: dict[str, Any],
    device: str | None,
    data_dir: str | Path | None,
) -> tuple[TrainConfig, str | None]:
    """The run's training settings with what resuming changes (the ``stopping`` settings,
    ``device`` and ``data_dir`` given, stored in the run), and the directory where the data
    are looked for now (:func:`run_data_dir`)."""
    where = run_data_dir(config.data, config.data_dir, data_dir)
    changes = {**stopping, "device": device}
    changes["data_dir"] = where if data_dir is not None else None
    return replace(config, **{k: v for k, v in changes.items() if v is not None}), where


#: How to train on after each stop.
TRAIN_ON = {
    "patience": "--patience with a number larger than {patience}",
    "epochs": "--epochs with a number larger than {epoch}",
    "time": "--max-minutes with a number larger than {max_minutes:g}",
}


def _resuming_line(run_dir: Path, config: TrainConfig, state: LoopState) -> str:
    """What resuming will do, in one line: train on, or only draw the figures of a run that
    has stopped (it says why, and which flag trains on)."""
    reason = stop_reason(config, state)
    if reason is None:
        return f"resuming {run_dir} after epoch {state.epoch}"
    more = TRAIN_ON[reason].format(epoch=state.epoch, **config.to_dict())
    why = stop_sentence(config, reason, state)
    if why is None:  # it trained the epochs it was given, e.g. stopped while drawing figures
        why = f"has trained all {plural(config.epochs, 'epoch')}"
    else:
        why = why.replace("stopped", "has stopped", 1)
    return f"{run_dir} {why}; drawing its figures (pass {more} to train on)"
