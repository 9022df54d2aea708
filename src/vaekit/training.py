"""The one training loop, for every engine.

Each epoch: a seeded permutation of the training set, batches as slices of it (dynamic
binarization draws a fresh Bernoulli sample of each batch), one engine step per batch with the
KL weight of the warm-up schedule, then the test ELBO, one line of ``metrics.jsonl``, a sample
grid and a crash-safe checkpoint. Resuming restores weights, optimizer, and both random
generators, so a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from vaekit import checkpoint, figures, run_figures
from vaekit.config import ModelConfig, TrainConfig
from vaekit.data import Dataset, binarize, load_dataset
from vaekit.data.datasets import run_data_dir
from vaekit.engines import Engine, EngineOptions, build_engine
from vaekit.engines.torch import distributed
from vaekit.engines.torch.distributed import Group
from vaekit.errors import CheckpointError, ConfigError, DataError, TrainingDiverged
from vaekit.evaluation import evaluate_elbo

Log = Callable[[str], None]

#: Without a terminal, an epoch of at least this many steps also reports on stderr every tenth
#: of its steps (with a terminal, a progress bar shows every step).
PROGRESS_LINE_STEPS = 100


@dataclass(frozen=True)
class TrainingData:
    """Training and (optional) test inputs, binarized as the protocol says (except ``dynamic``
    training data, which is sampled afresh per batch)."""

    train: np.ndarray
    test: np.ndarray | None
    train_labels: np.ndarray | None = None
    test_labels: np.ndarray | None = None

    @classmethod
    def load(cls, config: TrainConfig) -> TrainingData:
        train = load_dataset(config.data, "train", config.data_dir)
        test = load_dataset(config.data, "test", config.data_dir)
        return cls.prepare(config, train, test)

    @classmethod
    def prepare(cls, config: TrainConfig, train: Dataset, test: Dataset | None) -> TrainingData:
        """Apply the binarization protocol: fixed samples for static, and for dynamic's test set."""
        fixed = fixed_binarization(config.binarize)
        train_x = train.x if config.binarize == "dynamic" else binarize(train.x, fixed)
        test_x = None if test is None else binarize(test.x, fixed)
        return cls(
            train=train_x,
            test=test_x,
            train_labels=train.y,
            test_labels=None if test is None else test.y,
        )

    def for_figures(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Inputs to draw and encode: the test set (with labels) when there is one."""
        if self.test is not None:
            return self.test, self.test_labels
        return self.train, self.train_labels


def fixed_binarization(mode: str) -> str:
    """The binarization for data seen once per run (test sets, figures): dynamic → static."""
    return "static" if mode == "dynamic" else mode


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """The learning rate of epoch ``epoch`` (from 1): lr·lr_decay^(epoch−1), or Burda et al.'s
    lr·10^(−i/7) during the 3^i epochs of stage i (stages 0…7, then the last rate)."""
    if config.lr_schedule == "burda":
        stage, first_of_next = 0, 1
        while epoch > first_of_next and stage < 7:
            stage += 1
            first_of_next += 3**stage
        return config.lr * 10 ** (-stage / 7)
    return config.lr * config.lr_decay ** (epoch - 1)


def kl_weight(beta: float, warmup_epochs: float, step: int, steps_per_epoch: int) -> float:
    """β_t = β · min(1, t / (warm-up epochs · steps per epoch)) for the t-th step (t from 1)."""
    if warmup_epochs <= 0:
        return beta
    return beta * min(1.0, step / (warmup_epochs * steps_per_epoch))


def check_compatible(model: ModelConfig, data: TrainingData) -> None:
    """The data must have the model's input shape, and lie in [0, 1] for a Bernoulli likelihood."""
    shape = tuple(data.train.shape[1:])
    if shape != model.input_shape:
        raise ConfigError(
            f"the data have shape {shape} per example, the model expects {model.input_shape}"
        )
    if model.conditional:
        splits = (
            ("training", data.train, data.train_labels),
            ("test", data.test, data.test_labels),
        )
        for split, x, y in splits:
            if x is not None and y is None:
                raise DataError(f"a conditional model needs labels, and the {split} data have none")
            if y is not None and y.max() >= model.n_classes:
                raise DataError(
                    f"the {split} data have label {int(y.max())}, outside the model's "
                    f"{model.n_classes} classes"
                )
    if model.likelihood == "bernoulli":
        for split, x in (("training", data.train), ("test", data.test)):
            if x is not None and (x.min() < 0 or x.max() > 1):
                raise DataError(
                    f"the {split} data have values outside [0, 1], which a Bernoulli likelihood "
                    "cannot model; use --likelihood gaussian"
                )


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
        checkpoint.check_not_busy(run_dir)
        _check_contents(run_dir, force=force)


def _check_contents(run_dir: Path, *, force: bool) -> None:
    """Refuse a directory holding anything (but a lock and vaekit's temporaries) without
    ``force``, and one holding anything but a vaekit run even with it."""
    if checkpoint.holds_nothing(run_dir):
        return
    if not force:
        raise ConfigError(
            f"run directory {run_dir} is not empty; pass --resume to continue it, "
            "--force to replace it, or choose another --out"
        )
    if not checkpoint.is_run(run_dir):
        raise ConfigError(
            f"{run_dir} is not empty and holds no vaekit run (no config.json of one); --force "
            "replaces only a vaekit run, so choose another --out"
        )


def prepare_run_dir(run_dir: Path, *, force: bool) -> None:
    """With the run's lock held: check again what ``run_dir`` holds (another process may have
    written it since :func:`check_run_dir`), then empty it of a previous run's own files."""
    _check_contents(run_dir, force=force)
    checkpoint.clear_run(run_dir)


def _writer_lock(run_dir: Path, main: bool) -> contextlib.AbstractContextManager:
    """The run's writer lock for the process that writes (rank 0 under torchrun)."""
    return checkpoint.writing(run_dir) if main else contextlib.nullcontext()


@dataclass
class LoopState:
    """Where the loop stands: epochs finished, optimizer steps taken, and its generator
    (epoch permutations and dynamic binarization)."""

    epoch: int
    step: int
    rng: np.random.Generator

    @classmethod
    def fresh(cls, seed: int) -> LoopState:
        return cls(0, 0, np.random.default_rng((seed, 1)))

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "loop_rng": self.rng.bit_generator.state}

    @classmethod
    def from_json(cls, state: Any) -> LoopState:
        """The loop state recorded in a checkpoint's ``state.json``; an edited or damaged record
        (counts that are not whole numbers ≥ 0, a generator state numpy refuses) raises
        CheckpointError."""
        where = checkpoint.STATE_FILE
        if not isinstance(state, dict):
            raise CheckpointError(f"{where} must hold a JSON object, not {type(state).__name__}")
        for name in ("epoch", "step"):
            value = state.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CheckpointError(
                    f"{where}: {name} must be a whole number 0 or more, not {value!r}"
                )
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = state.get("loop_rng")
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise CheckpointError(f"{where}: loop_rng is not a generator state ({exc!r})") from None
        return cls(state["epoch"], state["step"], rng)


EpochHook = Callable[[Engine, dict[str, Any], LoopState], None]
StepHook = Callable[[Engine, LoopState], None]


def fit(
    engine: Engine,
    config: TrainConfig,
    data: TrainingData,
    *,
    state: LoopState | None = None,
    on_epoch: EpochHook | None = None,
    on_step: StepHook | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train ``engine`` from ``state`` (default: a fresh start) to ``config.epochs``.

    Returns one metrics record per epoch trained; ``on_epoch(engine, record, state)`` runs after
    each epoch and ``on_step(engine, state)`` after each step. A non-finite loss raises
    :class:`TrainingDiverged` before the weights are changed. With ``progress``: a bar on stderr
    when it is a terminal, else a line there every tenth of a long epoch's steps.
    """
    state = state or LoopState.fresh(config.seed)
    n = len(data.train)
    steps_per_epoch = math.ceil(n / config.batch_size)
    beta_max = engine.config.beta
    conditional = engine.config.conditional
    history = []
    show_bar = progress and sys.stderr.isatty()
    long_epoch = progress and not show_bar and steps_per_epoch >= PROGRESS_LINE_STEPS
    line_every = steps_per_epoch // 10 if long_epoch else 0
    while state.epoch < config.epochs:
        epoch = state.epoch + 1
        started = time.perf_counter()
        engine.set_learning_rate(learning_rate(config, epoch))
        order = state.rng.permutation(n)
        totals = np.zeros(3)
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch}/{config.epochs}",
            disable=not show_bar,
            leave=False,
            unit="batch",
        )
        with bar:
            for start in range(0, n, config.batch_size):
                index = order[start : start + config.batch_size]
                x = data.train[index]
                y = data.train_labels[index] if conditional else None
                if config.binarize == "dynamic":
                    x = binarize(x, "dynamic", state.rng)
                beta = kl_weight(beta_max, config.kl_warmup, state.step + 1, steps_per_epoch)
                metrics = engine.train_step(x, beta, y)
                if not math.isfinite(metrics.loss):
                    raise TrainingDiverged(
                        f"the loss became {metrics.loss} at epoch {epoch}, step {state.step + 1}"
                    )
                state.step += 1
                if on_step is not None:
                    on_step(engine, state)
                totals += np.array([metrics.loss, metrics.recon, metrics.kl]) * len(x)
                bar.update()
                bar.set_postfix(loss=f"{metrics.loss:.2f}", refresh=False)
                done = start // config.batch_size + 1  # steps of this epoch
                if line_every and done % line_every == 0 and done < steps_per_epoch:
                    print(
                        f"epoch {epoch}/{config.epochs}: step {done}/{steps_per_epoch}  "
                        f"loss {metrics.loss:.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
        loss, recon, kl = totals / n
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": state.step,
            "loss": loss,
            "recon": recon,
            "kl": kl,
            "beta": beta,
        }
        if data.test is not None:
            test_y = data.test_labels if conditional else None
            test = evaluate_elbo(engine, data.test, y=test_y, seed=config.seed)
            record.update(test_loss=test.loss, test_recon=test.recon, test_kl=test.kl)
        record["seconds"] = time.perf_counter() - started
        state.epoch = epoch
        history.append(record)
        if on_epoch is not None:
            on_epoch(engine, record, state)
    return history


class RunWriter:
    """What a run directory receives: per epoch a metrics line, figures (every ``sample_every``
    epochs: a sample grid and reconstructions; every ``sample_every_steps`` steps: a sample grid)
    and a checkpoint, then the log line; at the end, every figure of the run.

    With ``writes=False`` (the ranks after 0 of a distributed run) it trains but writes and logs
    nothing."""

    def __init__(
        self,
        run_dir: Path,
        model: ModelConfig,
        config: TrainConfig,
        log: Log,
        writes: bool = True,
    ) -> None:
        self.run_dir, self.model, self.config, self.log = run_dir, model, config, log
        self.writes = writes
        self.drawable = figures.can_draw(model.input_shape) and writes
        self.figure_inputs: tuple[np.ndarray, np.ndarray | None] | None = None

    def _figure(self, name: str) -> Path:
        folder = self.run_dir / "figures"
        folder.mkdir(exist_ok=True)
        return folder / name

    def step_done(self, engine: Engine, state: LoopState) -> None:
        every = self.config.sample_every_steps
        if self.drawable and every and state.step % every == 0:
            path = self._figure(f"samples-step-{state.step:07d}.png")
            run_figures.draw_samples(
                engine,
                path,
                self.config.sample_count,
                self.config.seed,
                epoch=state.epoch + 1,
                step=state.step,
            )

    def epoch_done(self, engine: Engine, record: dict[str, Any], state: LoopState) -> None:
        if not self.writes:
            return
        try:
            self._save_epoch(engine, record, state)
        except OSError as exc:  # disk full, directory made read-only, …: keep the last checkpoint
            with contextlib.suppress(OSError):
                checkpoint.recover(self.run_dir, self.model)
            kept = state.epoch - 1
            then = (
                f"the checkpoint of epoch {kept} is intact: fix the cause, then continue with "
                f"'vaekit train --resume --out {self.run_dir}'"
                if kept
                else "no epoch was saved: fix the cause and start again (--force replaces it)"
            )
            raise CheckpointError(
                f"could not save epoch {state.epoch} in {self.run_dir} "
                f"({exc.strerror or exc}); {then}"
            ) from None
        self.log(format_epoch(record, self.config.epochs))

    def _save_epoch(self, engine: Engine, record: dict[str, Any], state: LoopState) -> None:
        checkpoint.append_metrics(self.run_dir, record)
        epoch = record["epoch"]
        if self.drawable and epoch % self.config.sample_every == 0:
            seed = self.config.seed
            path = self._figure(f"samples-epoch-{epoch:03d}.png")
            run_figures.draw_samples(engine, path, self.config.sample_count, seed, epoch=epoch)
            x, y = self.figure_inputs
            path = self._figure(f"reconstructions-epoch-{epoch:03d}.png")
            run_figures.draw_reconstructions(engine, x[:8], path, seed, y, epoch=epoch)
        checkpoint.save_checkpoint(self.run_dir, engine, state.to_json())

    def _after_divergence(self, saved: int) -> str:
        """What is kept after the loss diverged with ``saved`` epochs saved, and what to do:
        --resume keeps the run's settings and would take the same steps again, so the way to a
        lower learning rate is a new run."""
        lr = self.config.lr
        again = (
            f"start again with a lower learning rate than {lr:g} (the same command with --force "
            f"and e.g. --lr {lr / 10:g})"
        )
        if saved == 0:
            return f"no epoch was saved; {again}"
        return (
            f"the checkpoint of epoch {saved} is kept in {self.run_dir}, but --resume would take "
            f"the same steps again; {again}"
        )

    def train(self, engine: Engine, data: TrainingData, state: LoopState, progress: bool):
        """Run :func:`fit` with this writer, then write the final figures."""
        self.figure_inputs = data.for_figures()
        try:
            history = fit(
                engine,
                self.config,
                data,
                state=state,
                on_epoch=self.epoch_done,
                on_step=self.step_done if self.config.sample_every_steps else None,
                progress=progress and self.writes,
            )
        except TrainingDiverged as exc:
            raise TrainingDiverged(f"{exc}; {self._after_divergence(state.epoch)}") from None
        if self.writes:
            run_figures.draw_all(self.run_dir, engine, *self.figure_inputs, self.config.seed)
        return history


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
    check_compatible(model, data)
    check_run_dir(run_dir, force=force)  # on every rank, before rank 0 may write
    engine = engine_for(model, config, group)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    with _writer_lock(run_dir, main):
        if main:
            prepare_run_dir(run_dir, force=force)
            checkpoint.write_config(run_dir, model, config, created_by)
        if on_start is not None:
            on_start()
        writer = RunWriter(run_dir, model, config, log, writes=main)
        return writer.train(engine, data, LoopState.fresh(config.seed), progress)


def resume_run(
    run_dir: str | Path,
    *,
    epochs: int | None = None,
    data_dir: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
    log: Log = print,
) -> list[dict[str, Any]]:
    """Continue the run in ``run_dir`` from its last complete epoch (to ``epochs`` if given)
    and return the metrics record of that epoch (see :func:`checkpoint.last_metrics`) followed
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
    model, config, record = checkpoint.read_config(run_dir)
    checkpoint.check_not_busy(run_dir)  # on every rank, before anything is loaded
    if epochs is not None and epochs != config.epochs:
        config = replace(config, epochs=epochs)
    if device is not None:
        config = replace(config, device=device)
    where = run_data_dir(config.data, config.data_dir, data_dir)
    if data_dir is not None:
        config = replace(config, data_dir=where)
    data = TrainingData.load(replace(config, data_dir=where))
    check_compatible(model, data)
    engine = engine_for(model, config, group)
    with _writer_lock(run_dir, main):
        if main:
            checkpoint.recover(run_dir, model)  # finish or undo an interrupted save, first
        distributed.barrier()
        state = LoopState.from_json(checkpoint.load_checkpoint(run_dir, engine))
        if state.epoch > config.epochs:
            raise ConfigError(
                f"{run_dir} has already trained {state.epoch} epochs; pass --epochs with a "
                f"number larger than {state.epoch} to train longer"
            )
        if main:
            checkpoint.write_config(run_dir, model, config, record.get("created_by", "train"))
            checkpoint.keep_metrics_until(run_dir, state.epoch)  # drop those after a crash
            if state.epoch == config.epochs:  # e.g. stopped while drawing the final figures
                log(
                    f"{run_dir} has trained all {figures.plural(config.epochs, 'epoch')}; "
                    "drawing its figures (pass --epochs with a larger number to train longer)"
                )
            else:
                log(f"resuming {run_dir} after epoch {state.epoch}")
        saved = checkpoint.last_metrics(run_dir, state.epoch)
        writer = RunWriter(run_dir, model, config, log, writes=main)
        return ([saved] if saved else []) + writer.train(engine, data, state, progress)


def format_epoch(record: dict[str, Any], epochs: int) -> str:
    """One line per epoch: train loss (−ELBO with the current β) and its terms, test −ELBO."""
    line = (
        f"epoch {record['epoch']}/{epochs}  loss {record['loss']:.2f}  "
        f"recon {record['recon']:.2f}  kl {record['kl']:.2f}"
    )
    if "test_loss" in record:
        line += f"  test -ELBO {record['test_loss']:.2f} nats"
    return line + f"  ({record['seconds']:.1f} s)"
