"""The one training loop, for every engine.

Each epoch: a seeded permutation of the training set, batches as slices of it (dynamic
binarization draws a fresh Bernoulli sample of each batch), one engine step per batch with the
KL weight of the warm-up schedule, then the validation and test ELBO and one metrics record;
the loop stops by :func:`stop_reason`: its epochs trained, ``patience`` epochs without a better
held-out −ELBO, or ``max_minutes`` of training.
What a run directory receives is :mod:`vaekit.train.writer`'s; starting and resuming a run,
:mod:`vaekit.train.start`'s.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import numpy as np

from vaekit.config.limits import AUTO, AUTO_MAX_EPOCHS, MAX_VAL_FRACTION
from vaekit.config.settings import TrainConfig
from vaekit.data import binarize
from vaekit.data.pipeline import TrainingData
from vaekit.data.prefetch import batches
from vaekit.engines import Engine, StepMetrics
from vaekit.engines.protocol import DataOnDevice, DeviceReading
from vaekit.engines.threads import cpu_threads
from vaekit.engines.torch import distributed
from vaekit.errors import CheckpointError, ConfigError, TrainingDiverged
from vaekit.measure.evaluation import evaluate_elbo
from vaekit.runs import layout
from vaekit.text import plural

Log = Callable[[str], None]

#: A clock in seconds (the loop's is ``time.perf_counter``; tests give their own).
Clock = Callable[[], float]


#: Without a terminal, an epoch of at least this many steps also reports on stderr every tenth
#: of its steps (with a terminal, a progress bar shows every step).
PROGRESS_LINE_STEPS = 100


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


@dataclass
class LoopState:
    """Where the loop stands: epochs finished, optimizer steps taken, its generator (epoch
    permutations and dynamic binarization), the best held-out −ELBO so far (nats per example)
    with its epoch (None before any held-out score), and the seconds its epochs took, summed
    over every session of the run (what ``max_minutes`` caps)."""

    epoch: int
    step: int
    rng: np.random.Generator
    best_loss: float | None = None
    best_epoch: int | None = None
    seconds: float = 0.0

    @classmethod
    def fresh(cls, seed: int) -> LoopState:
        return cls(0, 0, np.random.default_rng((seed, 1)))

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "loop_rng": self.rng.bit_generator.state,
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, state: Any) -> LoopState:
        """The loop state recorded in a checkpoint's ``state.json``; an edited or damaged record
        (counts that are not whole numbers ≥ 0, a generator state numpy refuses, a best loss
        that is not a finite number, seconds that are not a finite number ≥ 0) raises
        CheckpointError. A checkpoint written before best losses were kept has none, one
        written before training time was kept counts 0 seconds."""
        where = layout.STATE_FILE
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
        best_loss, best_epoch = state.get("best_loss"), state.get("best_epoch")
        if (best_loss is None) != (best_epoch is None) or not (
            best_loss is None
            or (
                isinstance(best_loss, (int, float))
                and not isinstance(best_loss, bool)
                and math.isfinite(best_loss)
                and isinstance(best_epoch, int)
                and not isinstance(best_epoch, bool)
                and 1 <= best_epoch <= state["epoch"]
            )
        ):
            raise CheckpointError(
                f"{where}: best_loss and best_epoch must be a finite number and an epoch "
                f"already trained, or both null; got {best_loss!r} and {best_epoch!r}"
            )
        seconds = state.get("seconds", 0.0)
        if not (
            isinstance(seconds, (int, float))
            and not isinstance(seconds, bool)
            and math.isfinite(seconds)
            and seconds >= 0
        ):
            raise CheckpointError(
                f"{where}: seconds must be a finite number 0 or more, not {seconds!r}"
            )
        return cls(state["epoch"], state["step"], rng, best_loss, best_epoch, float(seconds))

    def improve(self, loss: float) -> bool:
        """Record the held-out loss of the epoch just finished; whether it is the best yet."""
        if self.best_loss is not None and not loss < self.best_loss:
            return False
        self.best_loss, self.best_epoch = float(loss), self.epoch
        return True

    def stalled(self, patience: int) -> bool:
        """Whether ``patience`` (> 0) epochs in a row have passed without a better held-out
        loss than the best one."""
        return (
            bool(patience)
            and self.best_epoch is not None
            and (self.epoch - self.best_epoch >= patience)
        )


def stop_reason(config: TrainConfig, state: LoopState) -> str | None:
    """Why the loop trains no further epoch, or None to train on: ``patience`` (that many epochs
    in a row without a better held-out −ELBO), ``epochs`` (``config.epoch_limit`` trained) or
    ``time`` (the epochs took ``max_minutes`` or more in all, so 0 stops after the first
    epoch), the first that holds. The first two depend only on the metrics, so the same seed
    stops at the same epoch; ``time`` is the one stop that depends on the machine's speed."""
    if state.stalled(config.patience):
        return "patience"
    if state.epoch >= config.epoch_limit:
        return "epochs"
    timed = config.max_minutes is not None and state.epoch  # the first epoch always trains
    if timed and state.seconds >= 60 * config.max_minutes:
        return "time"
    return None


def stop_sentence(config: TrainConfig, reason: str, state: LoopState) -> str | None:
    """Why a run stopped after ``state.epoch``, for its summary, with the best held-out epoch
    (its weights kept with ``keep`` best): "stopped after epoch 37: the held-out -ELBO has not
    improved for 10 epochs; keeping epoch 27's weights (271.30 nats)". None for a run that
    trained the number of epochs it was given: nothing needs saying."""
    if reason == "patience":
        why = f"the held-out -ELBO has not improved for {plural(config.patience, 'epoch')}"
    elif reason == "time":
        why = (
            f"its epochs took {config.max_minutes:g} minutes or more (max_minutes), the one "
            "stop that depends on the machine's speed"
        )
    elif config.auto:
        why = f"epochs {AUTO} trains at most {AUTO_MAX_EPOCHS:,} epochs"
    else:
        return None
    sentence = f"stopped after epoch {state.epoch}: {why}"
    if state.best_epoch is None:
        return sentence
    loss = f"({state.best_loss:.2f} nats)"
    if config.keep == "best":
        return f"{sentence}; keeping epoch {state.best_epoch}'s weights {loss}"
    return f"{sentence}; the best held-out -ELBO was epoch {state.best_epoch}'s {loss}"


def check_held_out(config: TrainConfig, data: TrainingData) -> None:
    """``--epochs auto``, ``--patience`` and ``--keep best`` follow the held-out score: refuse
    them, in one line, for data without held-out examples."""
    if data.held_out() is not None:
        return
    fraction = f"--val-fraction F (0 < F ≤ {MAX_VAL_FRACTION})"
    for wanted, flag, instead in (
        (config.auto, f"--epochs {AUTO}", "--epochs N"),
        (config.patience, "--patience", "leave --patience out"),
        (config.keep == "best", "--keep best", "leave --keep best out"),
    ):
        if wanted:
            raise ConfigError(
                f"{flag} follows the held-out score, and this run holds out no data; give "
                f"{fraction} or {instead}"
            )


def check_data_on_device(config: TrainConfig, data: TrainingData, engine: Engine) -> None:
    """Refuse ``data_on_device`` yes, in one line, where the training set cannot live on the
    engine's device: an engine without :meth:`~vaekit.engines.protocol.Engine.put_data_on_device`
    (NumPy), data read in batches from disk, or one of torchrun's processes."""
    if config.data_on_device != "yes":
        return
    why = _host_only(data, engine)
    if why:
        raise ConfigError(f"--data-on-device yes cannot hold: {why}; use --data-on-device auto")


def _host_only(data: TrainingData, engine: Engine) -> str | None:
    """Why the training set stays in the host's memory whatever is asked, or None."""
    if not hasattr(engine, "put_data_on_device"):
        return f"the {engine.name} engine trains from the host's memory"
    if data.streamed:
        return "the training data are read in batches from disk (larger than memory allows)"
    if distributed.from_environment() is not None:
        return "under torchrun each process reads its share of every batch from the host"
    return None


def data_on_device(config: TrainConfig, data: TrainingData, engine: Engine) -> DataOnDevice | None:
    """The training set on the engine's device for this run, or None to train from the host:
    ``data_on_device`` no; auto where it is :func:`_host_only` or the engine declines (the torch
    engine takes it on a CUDA GPU with twice its bytes free); yes, or a ConfigError."""
    check_data_on_device(config, data, engine)
    if config.data_on_device == "no" or _host_only(data, engine):
        return None
    labels = data.train_labels if engine.config.conditional else None
    return engine.put_data_on_device(
        data.train,
        labels,
        config.binarize == "dynamic",
        required=config.data_on_device == "yes",
    )


def _diverged(loss: float, epoch: int, step: int) -> TrainingDiverged:
    return TrainingDiverged(f"the loss became {loss} at epoch {epoch}, step {step}")


class HostBatches:
    """An epoch's batches sliced from the training set in the host's memory (or read from disk
    ahead of the loop), binarized as the run asks, one engine step each; every step's loss comes
    back to the host, which checks it before the next step."""

    def __init__(self, engine: Engine, config: TrainConfig, data: TrainingData, state: LoopState):
        self.engine, self.config, self.data, self.state = engine, config, data, state

    def shuffle(self, order: np.ndarray) -> None:
        self.order, self.sums = order, np.zeros(3)
        self.feed = batches(self.data.train, order, self.config.batch_size)

    def train_step(self, start: int, beta: float, read: bool) -> StepMetrics:
        """The step on rows order[start : start + batch size]; ``read`` is moot (always read)."""
        x, index = next(self.feed), self.order[start : start + self.config.batch_size]
        y = self.data.train_labels[index] if self.engine.config.conditional else None
        if self.config.binarize == "dynamic":
            x = binarize(x, "dynamic", self.state.rng)
        elif self.data.per_batch != "none":
            x = binarize(x, self.data.per_batch)
        metrics = self.engine.train_step(x, beta, y)  # the host waits for the device
        if not math.isfinite(metrics.loss):
            raise _diverged(metrics.loss, self.state.epoch + 1, self.state.step + 1)
        self.sums += np.array([metrics.loss, metrics.recon, metrics.kl]) * len(x)
        return metrics

    def epoch_sums(self) -> np.ndarray:
        """Σ rows·(loss, recon, kl) over the epoch, nats."""
        return self.sums

    def close(self) -> None:
        self.feed.close()  # stops a reading thread


class DeviceBatches:
    """An epoch's batches taken on the device from the training set held there: a step sends
    nothing and reads nothing back unless ``read`` asks (the progress display, ``on_step``), and
    the epoch's sums come back in one transfer."""

    def __init__(self, on_device: DataOnDevice, config: TrainConfig, n: int, state: LoopState):
        self.on_device, self.config, self.n, self.state = on_device, config, n, state

    def shuffle(self, order: np.ndarray) -> None:
        self.on_device.shuffle(order)

    def train_step(self, start: int, beta: float, read: bool) -> StepMetrics | None:
        stop = min(start + self.config.batch_size, self.n)
        self.on_device.train_step(start, stop, beta, self.state.step + 1)
        return self._read().last if read else None  # the host waits for the device if read

    def epoch_sums(self) -> np.ndarray:
        return self._read().sums  # the host waits for the device: once an epoch

    def close(self) -> None:
        pass

    def _read(self) -> DeviceReading:
        """The device's numbers so far (one sync), or TrainingDiverged naming the first step
        whose loss was not finite; the weights are those of the step before it, its step count
        too."""
        reading = self.on_device.read()
        if reading.diverged is not None:
            step, loss = reading.diverged
            self.state.step = step - 1
            raise _diverged(loss, self.state.epoch + 1, step)
        return reading


EpochHook = Callable[[Engine, dict[str, Any], LoopState], None]


#: After each step: the engine, the loop state, the step's metrics (None where the device was
#: not read) and its KL weight β.
StepHook = Callable[[Engine, LoopState, StepMetrics | None, float], None]


#: Where an epoch's batches come from: host arrays, or the training set kept on the device.
Batches = HostBatches | DeviceBatches


def fit(
    engine: Engine,
    config: TrainConfig,
    data: TrainingData,
    *,
    state: LoopState | None = None,
    on_epoch: EpochHook | None = None,
    on_step: StepHook | None = None,
    progress: bool = False,
    clock: Clock = time.perf_counter,
) -> list[dict[str, Any]]:
    """Train ``engine`` from ``state`` (default: a fresh start) until :func:`stop_reason` says
    stop: ``config.epoch_limit`` epochs, ``config.patience`` epochs in a row without a lower
    held-out −ELBO (nats per example; the validation split, else the test split), which
    ``state`` records with its epoch, or ``config.max_minutes`` of epochs by ``clock``.

    Returns one metrics record per epoch trained (``seconds``: the epoch's, by ``clock``; the
    last epoch's also ``stopped``: why the loop stopped after it);
    ``on_epoch(engine, record, state)`` runs after
    each epoch and ``on_step(engine, state, metrics, beta)`` after each step. A non-finite loss
    raises :class:`TrainingDiverged` naming its step, with the weights of the step before it.
    With ``progress``: a bar on stderr when it is a terminal, else a line there every tenth of
    a long epoch's steps. With the training set on the engine's device
    (:func:`data_on_device`), the host reads the device once an epoch, and per step only for
    ``on_step`` and the progress display.
    """
    state = state or LoopState.fresh(config.seed)
    n = len(data.train)
    check_held_out(config, data)
    engine.set_dataset_size(n)  # N for the tcvae objective's minibatch-weighted sampling
    on_device = data_on_device(config, data, engine)
    if on_device is None:
        source: Batches = HostBatches(engine, config, data, state)
    else:
        source = DeviceBatches(on_device, config, n, state)
    history = []
    with cpu_threads(config.threads):
        while stop_reason(config, state) is None:
            record = train_epoch(engine, config, data, state, source, on_step, progress, clock)
            history.append(record)
            if on_epoch is not None:
                on_epoch(engine, record, state)
    return history


def train_epoch(
    engine: Engine,
    config: TrainConfig,
    data: TrainingData,
    state: LoopState,
    source: Batches,
    on_step: StepHook | None,
    progress: bool,
    clock: Clock,
) -> dict[str, Any]:
    """One epoch of :func:`fit` (its arguments, ``source`` the batches): the steps, then the
    held-out scores; advances ``state`` and returns the epoch's metrics record."""
    n = len(data.train)
    steps_per_epoch = math.ceil(n / config.batch_size)
    epoch = state.epoch + 1
    started = clock()
    engine.set_learning_rate(learning_rate(config, epoch))
    source.shuffle(state.rng.permutation(n))
    with Progress(epoch, config.epochs, steps_per_epoch, progress) as shown, closing(source):
        for done, start in enumerate(range(0, n, config.batch_size), start=1):
            beta = kl_weight(engine.config.beta, config.kl_warmup, state.step + 1, steps_per_epoch)
            metrics = source.train_step(start, beta, on_step is not None or shown.due(done))
            state.step += 1
            if on_step is not None:
                on_step(engine, state, metrics, beta)
            shown.update(done, metrics)
    loss, recon, kl = source.epoch_sums() / n
    record = {"epoch": epoch, "step": state.step, "loss": loss, "recon": recon, "kl": kl}
    record.update(beta=beta, **held_out_scores(engine, config, data))
    record["seconds"] = clock() - started
    state.epoch, state.seconds = epoch, state.seconds + record["seconds"]
    if data.held_out() is not None:
        state.improve(record["val_loss" if data.val is not None else "test_loss"])
    reason = stop_reason(config, state)
    if reason is not None:
        record["stopped"] = reason
    return record


def held_out_scores(engine: Engine, config: TrainConfig, data: TrainingData) -> dict[str, float]:
    """The validation and test −ELBO and its terms, nats per example (``val_loss``, ``val_recon``,
    ``val_kl``, ``test_…``), for the splits the data have."""
    scores = {}
    for name, x, y in (("val", data.val, data.val_labels), ("test", data.test, data.test_labels)):
        if x is not None:
            y = y if engine.config.conditional else None
            result = evaluate_elbo(engine, x, y=y, seed=config.seed)
            scores.update(
                {
                    f"{name}_loss": result.loss,
                    f"{name}_recon": result.recon,
                    f"{name}_kl": result.kl,
                }
            )
    return scores


class Progress:
    """An epoch's progress on stderr: with a terminal, a bar updated every step (its loss every
    tenth of the epoch); without one, a line every tenth of an epoch of at least
    :data:`PROGRESS_LINE_STEPS` steps; nothing when not ``shown``."""

    def __init__(self, epoch: int, epochs: int, steps: int, shown: bool) -> None:
        from tqdm import tqdm  # imported when training: it costs start-up time

        self.epoch, self.epochs, self.steps = epoch, epochs, steps
        bar = shown and sys.stderr.isatty()
        self.line_every = steps // 10 if shown and not bar and steps >= PROGRESS_LINE_STEPS else 0
        self.loss_every = max(1, steps // 10) if bar else 0
        self.bar = tqdm(
            total=steps, desc=f"epoch {epoch}/{epochs}", disable=not bar, leave=False, unit="batch"
        )

    def due(self, done: int) -> bool:
        """Whether step ``done`` (from 1) of the epoch shows its loss."""
        line = self.line_every and done % self.line_every == 0 and done < self.steps
        return bool(line or (self.loss_every and done % self.loss_every == 0))

    def update(self, done: int, metrics: StepMetrics | None) -> None:
        self.bar.update()
        if metrics is not None:
            self.bar.set_postfix(loss=f"{metrics.loss:.2f}", refresh=False)
        if self.line_every and done % self.line_every == 0 and done < self.steps:
            print(
                f"epoch {self.epoch}/{self.epochs}: step {done}/{self.steps}  "
                f"loss {metrics.loss:.2f}",
                file=sys.stderr,
                flush=True,
            )

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()
