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
from vaekit.engines import Engine, build_engine
from vaekit.engines.torch import distributed
from vaekit.engines.torch.distributed import Group
from vaekit.errors import CheckpointError, ConfigError, DataError, TrainingDiverged
from vaekit.evaluation import evaluate_elbo

Log = Callable[[str], None]


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
    with a ``group``, this process first joins it (on its local GPU, if CUDA is used)."""
    device = config.device
    if group is not None and config.engine == "torch":  # build_engine refuses other engines
        device = distributed.device_for(group, config.device)
        distributed.start(group, device)
    return build_engine(
        model,
        config.engine,
        seed=config.seed,
        device=device,
        optimizer=config.optimizer,
        lr=config.lr,
        momentum=config.momentum,
        adam_eps=config.adam_eps,
        group=group,
    )


def check_run_dir(run_dir: Path, *, force: bool) -> None:
    """Refuse a ``run_dir`` that is a file, or a non-empty directory without ``force``."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} exists and is not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not force:
        raise ConfigError(
            f"run directory {run_dir} is not empty; pass --resume to continue it, "
            "--force to replace it, or choose another --out"
        )


def prepare_run_dir(run_dir: Path, *, force: bool) -> None:
    """Check ``run_dir`` (see :func:`check_run_dir`), then empty it of a run's own files (with
    ``force``) or create it."""
    check_run_dir(run_dir, force=force)
    if run_dir.is_dir() and any(run_dir.iterdir()):
        checkpoint.clear_run(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


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
    def from_json(cls, state: dict[str, Any]) -> LoopState:
        rng = np.random.default_rng()
        rng.bit_generator.state = state["loop_rng"]
        return cls(int(state["epoch"]), int(state["step"]), rng)


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
    :class:`TrainingDiverged` before the weights are changed.
    """
    state = state or LoopState.fresh(config.seed)
    n = len(data.train)
    steps_per_epoch = math.ceil(n / config.batch_size)
    beta_max = engine.config.beta
    conditional = engine.config.conditional
    history = []
    show_bar = progress and sys.stderr.isatty()
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
            run_figures.draw_samples(engine, path, self.config.sample_count, self.config.seed)

    def epoch_done(self, engine: Engine, record: dict[str, Any], state: LoopState) -> None:
        if not self.writes:
            return
        try:
            self._save_epoch(engine, record, state)
        except OSError as exc:  # disk full, directory made read-only, …: keep the last checkpoint
            with contextlib.suppress(OSError):
                checkpoint.recover(self.run_dir)
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
            run_figures.draw_samples(engine, path, self.config.sample_count, seed)
            x, y = self.figure_inputs
            path = self._figure(f"reconstructions-epoch-{epoch:03d}.png")
            run_figures.draw_reconstructions(engine, x[:8], path, seed, y)
        checkpoint.save_checkpoint(self.run_dir, engine, state.to_json())

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
            raise TrainingDiverged(
                f"{exc}; the last good checkpoint (epoch {state.epoch}) is kept in "
                f"{self.run_dir}; try a lower --lr"
            ) from None
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
) -> list[dict[str, Any]]:
    """Train a new model into ``run_dir``; returns the per-epoch metrics.

    Everything is validated (data, configs, engine) before anything is written. Launched by
    torchrun, every process trains its share and only rank 0 writes.
    """
    run_dir = Path(run_dir)
    group = distributed.from_environment()
    main = group is None or group.is_main
    data = data or TrainingData.load(config)
    check_compatible(model, data)
    check_run_dir(run_dir, force=force)  # on every rank, before rank 0 may write
    engine = engine_for(model, config, group)
    if main:
        prepare_run_dir(run_dir, force=force)
        checkpoint.write_config(run_dir, model, config, created_by)
    writer = RunWriter(run_dir, model, config, log, writes=main)
    return writer.train(engine, data, LoopState.fresh(config.seed), progress)


def resume_run(
    run_dir: str | Path,
    *,
    epochs: int | None = None,
    progress: bool = True,
    log: Log = print,
) -> list[dict[str, Any]]:
    """Continue the run in ``run_dir`` from its last complete epoch (to ``epochs`` if given)
    and return the metrics of all its epochs; a finished run only gets its final figures again.
    Under torchrun, every process resumes from the same checkpoint."""
    run_dir = Path(run_dir)
    group = distributed.from_environment()
    main = group is None or group.is_main
    model, config, record = checkpoint.read_config(run_dir)
    if epochs is not None and epochs != config.epochs:
        config = replace(config, epochs=epochs)
    data = TrainingData.load(config)
    check_compatible(model, data)
    engine = engine_for(model, config, group)
    if main:
        checkpoint.recover(run_dir)  # finish or undo an interrupted save, before anyone reads
    distributed.barrier()
    state = LoopState.from_json(checkpoint.load_checkpoint(run_dir, engine))
    if state.epoch > config.epochs:
        raise ConfigError(
            f"{run_dir} has already trained {state.epoch} epochs; pass --epochs with a number "
            f"larger than {state.epoch} to train longer"
        )
    kept = [r for r in checkpoint.read_metrics(run_dir) if r["epoch"] <= state.epoch]
    if main:
        checkpoint.write_config(run_dir, model, config, record.get("created_by", "train"))
        checkpoint.write_metrics(run_dir, kept)  # drop epochs after the checkpoint (a crash)
        if state.epoch == config.epochs:  # e.g. stopped while drawing the final figures
            log(
                f"{run_dir} has trained all {config.epochs} epochs; drawing its figures "
                "(pass --epochs with a larger number to train longer)"
            )
        else:
            log(f"resuming {run_dir} after epoch {state.epoch}")
    writer = RunWriter(run_dir, model, config, log, writes=main)
    return kept + writer.train(engine, data, state, progress)


def format_epoch(record: dict[str, Any], epochs: int) -> str:
    """One line per epoch: train loss (−ELBO with the current β) and its terms, test −ELBO."""
    line = (
        f"epoch {record['epoch']}/{epochs}  loss {record['loss']:.2f}  "
        f"recon {record['recon']:.2f}  kl {record['kl']:.2f}"
    )
    if "test_loss" in record:
        line += f"  test -ELBO {record['test_loss']:.2f} nats"
    return line + f"  ({record['seconds']:.1f} s)"
