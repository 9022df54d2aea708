"""The one training loop, for every engine.

Each epoch: a seeded permutation of the training set, batches as slices of it (dynamic
binarization draws a fresh Bernoulli sample of each batch), one engine step per batch with the
KL weight of the warm-up schedule, then the validation and test ELBO, one line of
``metrics.jsonl``, a sample grid, the best weights when the held-out −ELBO improved (``keep``
best) and a crash-safe checkpoint; ``patience`` stops the loop once the held-out −ELBO has not
improved for that many epochs. Resuming restores weights, optimizer, both random generators and
the best held-out loss, so a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.config.settings import MAX_VAL_FRACTION, ModelConfig, TrainConfig
from vaekit.data import RawData, binarize, load_raw
from vaekit.data.datasets import run_data_dir
from vaekit.data.prefetch import batches
from vaekit.data.scaling import Scaling
from vaekit.data.scaling import fit as fit_scaling
from vaekit.data.sources import Scaled, Subset, chunks, in_memory
from vaekit.data.splits import validation_split
from vaekit.draw import figures, gallery
from vaekit.engines import Engine, EngineOptions, StepMetrics, build_engine
from vaekit.engines.protocol import DeviceReading, ResidentData
from vaekit.engines.torch import distributed
from vaekit.engines.torch.distributed import Group
from vaekit.errors import CheckpointError, ConfigError, DataError, TrainingDiverged
from vaekit.measure.evaluation import evaluate_elbo
from vaekit.runs import best_weights, checkpoint, config_file, layout, lock
from vaekit.runs.metrics import append_metrics, keep_metrics_until, last_metrics
from vaekit.text import plural

Log = Callable[[str], None]

#: Without a terminal, an epoch of at least this many steps also reports on stderr every tenth
#: of its steps (with a terminal, a progress bar shows every step).
PROGRESS_LINE_STEPS = 100


#: Training data read from a lazy source (not a NumPy array) whose float32 size exceeds this many
#: bytes is read batch by batch as the loop needs it; smaller data is held in memory.
STREAM_BYTES = 2**30
#: The held-out share of data without a test split when ``val_fraction`` is not given.
DEFAULT_VAL_FRACTION = 0.1
#: Inputs larger than this in magnitude (after scaling) are named as the likely cause when the
#: loss diverges: the weights start at the scale of unit inputs.
LARGE_INPUT = 1e4


@dataclass(frozen=True)
class TrainingData:
    """Model inputs: training examples, optional validation (held out of the training data) and
    test examples, each scaled by ``scaling`` and binarized as the protocol says (except
    ``dynamic`` training data, sampled afresh per batch, and streamed training data, binarized
    per batch). Each set is a NumPy array, or an array-like read on demand when ``streamed``."""

    train: Any
    test: Any | None
    train_labels: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    val: Any | None = None
    val_labels: np.ndarray | None = None
    scaling: Scaling | None = None
    streamed: bool = False
    #: A fixed binarization the loop applies to each batch of streamed training data.
    per_batch: str = "none"

    @classmethod
    def load(
        cls, config: TrainConfig, *, stream: bool | None = None, scaling: Scaling | None = None
    ) -> TrainingData:
        """:meth:`prepare` of the raw training and test data that ``config`` names."""
        size, mode = config.image_size, config.image_mode
        train, test = (
            load_raw(config.data, split, config.data_dir, image_size=size, image_mode=mode)
            for split in ("train", "test")
        )
        return cls.prepare(config, train, test, scaling=scaling, stream=stream)

    @classmethod
    def prepare(
        cls,
        config: TrainConfig,
        train: RawData,
        test: RawData | None,
        *,
        scaling: Scaling | None = None,
        stream: bool | None = None,
    ) -> TrainingData:
        """Hold out the validation split (:func:`held_out_fraction` of ``train``, seeded), fit
        ``config.scale`` on the training part alone (unless a stored ``scaling`` is given),
        scale every set, and apply the binarization protocol: fixed samples for static, and
        for dynamic's held-out data. ``stream`` None: stream training data from a lazy source
        larger than :data:`STREAM_BYTES`."""
        fraction = held_out_fraction(config, test is not None)
        train_idx, val_idx = validation_split(len(train.x), fraction, config.seed)
        if scaling is None:
            scaling = fit_scaling(
                config.scale,
                chunks(Subset(train.x, train_idx)),
                train.x.dtype,
                pixels=train.pixels,
                source=train.name,
                rows=train_idx,
            )
        if stream is None:
            stream = (
                not isinstance(train.x, np.ndarray) and 4 * math.prod(train.x.shape) > STREAM_BYTES
            )
        if stream and config.binarize == "static":
            raise ConfigError(
                "--binarize static draws one sample of the whole data set, which is read in "
                "batches here (it is larger than memory allows); use --binarize dynamic or "
                "threshold"
            )
        fixed = fixed_binarization(config.binarize)

        def inputs(raw: Any, index: np.ndarray | None, name: str, held_out: bool) -> Any:
            view = raw if index is None else Subset(raw, index)
            view = Scaled(view, scaling, name)
            if stream:
                return Binarized(view, fixed) if held_out and fixed != "none" else view
            x = in_memory(view)
            return x if not held_out and config.binarize == "dynamic" else binarize(x, fixed)

        def labels(y: np.ndarray | None, index: np.ndarray) -> np.ndarray | None:
            return None if y is None else y[index]

        has_val = len(val_idx) > 0
        return cls(
            train=inputs(train.x, train_idx, train.name, held_out=False),
            test=None if test is None else inputs(test.x, None, test.name, held_out=True),
            train_labels=labels(train.y, train_idx),
            test_labels=None if test is None else test.y,
            val=inputs(train.x, val_idx, train.name, held_out=True) if has_val else None,
            val_labels=labels(train.y, val_idx) if has_val else None,
            scaling=scaling,
            streamed=stream,
            per_batch="threshold" if stream and config.binarize == "threshold" else "none",
        )

    def held_out(self) -> tuple[Any, np.ndarray | None, str] | None:
        """(examples, labels, name) of the held-out data that scores every epoch: the
        validation split when there is one, else the test split; None without either."""
        if self.val is not None:
            return self.val, self.val_labels, "validation"
        if self.test is not None:
            return self.test, self.test_labels, "test"
        return None

    def for_figures(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Inputs to draw and encode: the held-out data (with labels) when there is some, else
        the training data; data read on demand gives its first ``SCATTER_POINTS`` examples."""
        x, y, _ = self.held_out() or (self.train, self.train_labels, "training")
        if isinstance(x, np.ndarray):
            return x, y
        limit = gallery.SCATTER_POINTS
        return x[:limit], None if y is None else y[:limit]


class Binarized:
    """``base``'s examples binarized by a fixed ``mode`` (threshold or static) as they are read;
    ``static`` draws from its fixed seed at every read, so it gives the same values to the same
    reads (evaluation reads in fixed batches)."""

    def __init__(self, base: Any, mode: str) -> None:
        self.base, self.mode = base, mode
        self.shape, self.dtype, self.ndim = base.shape, np.dtype(np.float32), base.ndim

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        return binarize(self.base[key], self.mode)


def held_out_fraction(config: TrainConfig, has_test: bool) -> float:
    """The share of the training examples held out for validation: ``config.val_fraction``,
    else :data:`DEFAULT_VAL_FRACTION` for data without a test split and 0 for data with one."""
    if config.val_fraction is not None:
        return config.val_fraction
    return 0.0 if has_test else DEFAULT_VAL_FRACTION


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
    """The data must have the model's input shape, labels for a conditional model, and lie in
    [0, 1] for a Bernoulli likelihood (the training data by the range its scaling recorded, so
    streamed data is not read again; held-out data held in memory by its values)."""
    shape = tuple(data.train.shape[1:])
    if shape != model.input_shape:
        raise ConfigError(
            f"the data have shape {shape} per example, the model expects {model.input_shape}"
        )
    sets = (
        ("training", data.train, data.train_labels),
        ("validation", data.val, data.val_labels),
        ("test", data.test, data.test_labels),
    )
    if model.conditional:
        for split, x, y in sets:
            if x is not None and y is None:
                raise DataError(f"a conditional model needs labels, and the {split} data have none")
            if y is not None and len(y) and y.max() >= model.n_classes:
                raise DataError(
                    f"the {split} data have label {int(y.max())}, outside the model's "
                    f"{model.n_classes} classes"
                )
    if model.likelihood != "bernoulli":
        return
    for split, x, _ in sets:
        if x is None:
            continue
        if split == "training" and data.streamed:
            if data.per_batch == "threshold":
                continue
            low, high = data.scaling.low, data.scaling.high
        elif isinstance(x, np.ndarray) and x.size:
            low, high = float(x.min()), float(x.max())
        else:
            continue
        check_unit_range(low, high, f"the {split} data", data.scaling)


def check_unit_range(low: float, high: float, what: str, scaling: Scaling | None) -> None:
    """Refuse data from ``low`` to ``high`` outside [0, 1] for a Bernoulli likelihood, in one
    line that names the fix."""
    if not (low < 0 or high > 1):
        return
    scaled = "" if scaling is None else f" after --scale {scaling.method}"
    raise DataError(
        f"{what} have values from {low:.4g} to {high:.4g}{scaled}, outside [0, 1], which a "
        "Bernoulli likelihood cannot model; use --scale minmax or --likelihood gaussian"
    )


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


@dataclass
class LoopState:
    """Where the loop stands: epochs finished, optimizer steps taken, its generator (epoch
    permutations and dynamic binarization), and the best held-out −ELBO so far (nats per
    example) with its epoch (None before any held-out score)."""

    epoch: int
    step: int
    rng: np.random.Generator
    best_loss: float | None = None
    best_epoch: int | None = None

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
        }

    @classmethod
    def from_json(cls, state: Any) -> LoopState:
        """The loop state recorded in a checkpoint's ``state.json``; an edited or damaged record
        (counts that are not whole numbers ≥ 0, a generator state numpy refuses, a best loss
        that is not a finite number) raises CheckpointError. A checkpoint written before best
        losses were kept has none."""
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
        return cls(state["epoch"], state["step"], rng, best_loss, best_epoch)

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


def check_held_out(config: TrainConfig, data: TrainingData) -> None:
    """``--patience`` and ``--keep best`` follow the held-out score: refuse them, in one line,
    for data without held-out examples."""
    if data.held_out() is not None:
        return
    for wanted, flag in ((config.patience, "--patience"), (config.keep == "best", "--keep best")):
        if wanted:
            raise ConfigError(
                f"{flag} follows the held-out score, and this run holds out no data; give "
                f"--val-fraction F (0 < F ≤ {MAX_VAL_FRACTION}) or leave {flag} out"
            )


def check_data_on_device(config: TrainConfig, data: TrainingData, engine: Engine) -> None:
    """Refuse ``data_on_device`` yes, in one line, where the training set cannot live on the
    engine's device: an engine without :meth:`~vaekit.engines.protocol.Engine.hold_training_data`
    (NumPy), data read in batches from disk, or one of torchrun's processes."""
    if config.data_on_device != "yes":
        return
    why = _host_only(data, engine)
    if why:
        raise ConfigError(f"--data-on-device yes cannot hold: {why}; use --data-on-device auto")


def _host_only(data: TrainingData, engine: Engine) -> str | None:
    """Why the training set stays in the host's memory whatever is asked, or None."""
    if not hasattr(engine, "hold_training_data"):
        return f"the {engine.name} engine trains from the host's memory"
    if data.streamed:
        return "the training data are read in batches from disk (larger than memory allows)"
    if distributed.from_environment() is not None:
        return "under torchrun each process reads its share of every batch from the host"
    return None


def hold_on_device(config: TrainConfig, data: TrainingData, engine: Engine) -> ResidentData | None:
    """The training set on the engine's device for this run, or None to train from the host:
    ``data_on_device`` no; auto where it is :func:`_host_only` or the engine declines (the torch
    engine takes it on a CUDA GPU with twice its bytes free); yes, or a ConfigError."""
    check_data_on_device(config, data, engine)
    if config.data_on_device == "no" or _host_only(data, engine):
        return None
    labels = data.train_labels if engine.config.conditional else None
    return engine.hold_training_data(
        data.train,
        labels,
        config.binarize == "dynamic",
        required=config.data_on_device == "yes",
    )


def _diverged(loss: float, epoch: int, step: int) -> TrainingDiverged:
    return TrainingDiverged(f"the loss became {loss} at epoch {epoch}, step {step}")


def _read(resident: ResidentData, state: LoopState, epoch: int) -> DeviceReading:
    """The device's numbers so far (one sync), or TrainingDiverged naming the first step whose
    loss was not finite; the weights are those of the step before it, its step count too."""
    reading = resident.read()
    if reading.diverged is not None:
        step, loss = reading.diverged
        state.step = step - 1
        raise _diverged(loss, epoch, step)
    return reading


EpochHook = Callable[[Engine, dict[str, Any], LoopState], None]
#: After each step: the engine, the loop state, the step's metrics and its KL weight β.
StepHook = Callable[[Engine, LoopState, StepMetrics, float], None]


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
    """Train ``engine`` from ``state`` (default: a fresh start) to ``config.epochs``, or until
    ``config.patience`` epochs in a row bring no lower held-out −ELBO (nats per example; the
    validation split, else the test split), which ``state`` records with its epoch.

    Returns one metrics record per epoch trained; ``on_epoch(engine, record, state)`` runs after
    each epoch and ``on_step(engine, state, metrics, beta)`` after each step. A non-finite loss
    raises :class:`TrainingDiverged` before the weights are changed. With ``progress``: a bar on
    stderr when it is a terminal, else a line there every tenth of a long epoch's steps.

    With the training set on the engine's device (:func:`hold_on_device`), a step reads nothing
    back: the loop reads the device once per epoch, and per step only for ``on_step``, at the
    progress line's steps, and a tenth of the epoch apart for the bar. The divergence contract
    holds there too: from the first non-finite loss on no step changes the weights, and the
    next read raises :class:`TrainingDiverged` naming that step, with the weights of the one
    before it.
    """
    from tqdm import tqdm  # imported when training: it costs start-up time

    state = state or LoopState.fresh(config.seed)
    n = len(data.train)
    steps_per_epoch = math.ceil(n / config.batch_size)
    beta_max = engine.config.beta
    conditional = engine.config.conditional
    history = []
    show_bar = progress and sys.stderr.isatty()
    long_epoch = progress and not show_bar and steps_per_epoch >= PROGRESS_LINE_STEPS
    line_every = steps_per_epoch // 10 if long_epoch else 0
    held_out = data.held_out()
    check_held_out(config, data)
    engine.set_dataset_size(n)  # N for the tcvae objective's minibatch-weighted sampling
    resident = hold_on_device(config, data, engine)
    bar_every = max(1, steps_per_epoch // 10) if show_bar else 0  # device reads for the bar
    while state.epoch < config.epochs and not state.stalled(config.patience):
        epoch = state.epoch + 1
        started = time.perf_counter()
        engine.set_learning_rate(learning_rate(config, epoch))
        order = state.rng.permutation(n)
        totals = np.zeros(3)
        if resident is not None:
            resident.shuffle(order)
            feed: Any = contextlib.nullcontext(itertools.repeat(None, steps_per_epoch))
        else:
            feed = contextlib.closing(batches(data.train, order, config.batch_size))
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch}/{config.epochs}",
            disable=not show_bar,
            leave=False,
            unit="batch",
        )
        with bar, feed as batch_xs:
            for start, x in zip(range(0, n, config.batch_size), batch_xs, strict=True):
                beta = kl_weight(beta_max, config.kl_warmup, state.step + 1, steps_per_epoch)
                done = start // config.batch_size + 1  # steps of this epoch
                line_due = line_every and done % line_every == 0 and done < steps_per_epoch
                if resident is None:
                    index = order[start : start + config.batch_size]
                    y = data.train_labels[index] if conditional else None
                    if config.binarize == "dynamic":
                        x = binarize(x, "dynamic", state.rng)
                    elif data.per_batch != "none":
                        x = binarize(x, data.per_batch)
                    metrics = engine.train_step(x, beta, y)
                    if not math.isfinite(metrics.loss):
                        raise _diverged(metrics.loss, epoch, state.step + 1)
                    totals += np.array([metrics.loss, metrics.recon, metrics.kl]) * len(x)
                else:
                    stop = min(start + config.batch_size, n)
                    resident.train_step(start, stop, beta, state.step + 1)
                    read = on_step is not None or line_due or (bar_every and done % bar_every == 0)
                    metrics = _read(resident, state, epoch).last if read else None
                state.step += 1
                if on_step is not None:
                    on_step(engine, state, metrics, beta)
                bar.update()
                if metrics is not None:
                    bar.set_postfix(loss=f"{metrics.loss:.2f}", refresh=False)
                if line_due:
                    print(
                        f"epoch {epoch}/{config.epochs}: step {done}/{steps_per_epoch}  "
                        f"loss {metrics.loss:.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
        if resident is not None:
            totals = _read(resident, state, epoch).sums
        loss, recon, kl = totals / n
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": state.step,
            "loss": loss,
            "recon": recon,
            "kl": kl,
            "beta": beta,
        }
        for name, x, y in (
            ("val", data.val, data.val_labels),
            ("test", data.test, data.test_labels),
        ):
            if x is not None:
                result = evaluate_elbo(engine, x, y=y if conditional else None, seed=config.seed)
                record.update(
                    {
                        f"{name}_loss": result.loss,
                        f"{name}_recon": result.recon,
                        f"{name}_kl": result.kl,
                    }
                )
        record["seconds"] = time.perf_counter() - started
        state.epoch = epoch
        if held_out is not None:
            state.improve(record["val_loss" if data.val is not None else "test_loss"])
        history.append(record)
        if on_epoch is not None:
            on_epoch(engine, record, state)
    return history


class RunWriter:
    """What a run directory receives: per epoch a metrics line, figures (every ``sample_every``
    epochs: a sample grid and reconstructions; every ``sample_every_steps`` steps: a sample grid)
    and a checkpoint, then the log line; at the end, every figure of the run.

    With ``writes=False`` (the ranks after 0 of a distributed run) it trains but writes and logs
    nothing. With ``config.logger`` ``tensorboard`` it also feeds a
    :class:`~vaekit.train.tracking.TensorBoardLogger`: each step's scalars, each epoch's record and
    figures, and at the end the settings with the final metrics."""

    def __init__(
        self,
        run_dir: Path,
        model: ModelConfig,
        config: TrainConfig,
        log: Log,
        writes: bool = True,
        first_step: int = 0,
    ) -> None:
        self.run_dir, self.model, self.config, self.log = run_dir, model, config, log
        self.writes = writes
        self.drawable = figures.can_draw(model.input_shape) and writes
        self.figure_inputs: tuple[np.ndarray, np.ndarray | None] | None = None
        self.tracker = None
        if writes and config.logger != "none":
            from vaekit.train import tracking  # torch's TensorBoard writer: only when asked for

            resumed = first_step + 1 if first_step else None
            self.tracker = tracking.make_logger(
                config.logger, run_dir, model, config, purge_step=resumed
            )

    def _figure(self, name: str) -> Path:
        folder = self.run_dir / "figures"
        folder.mkdir(exist_ok=True)
        return folder / name

    def step_done(
        self, engine: Engine, state: LoopState, metrics: StepMetrics, beta: float
    ) -> None:
        with self._writing(f"step {state.step:,} of epoch {state.epoch + 1}", state.epoch):
            self._save_step(engine, state, metrics, beta)

    def _save_step(
        self, engine: Engine, state: LoopState, metrics: StepMetrics, beta: float
    ) -> None:
        if self.tracker is not None:
            lr = learning_rate(self.config, state.epoch + 1)
            self.tracker.step(state.step, metrics.loss, metrics.recon, metrics.kl, beta, lr)
        every = self.config.sample_every_steps
        if self.drawable and every and state.step % every == 0:
            path = self._figure(f"samples-step-{state.step:07d}.png")
            gallery.draw_samples(
                engine,
                path,
                self.config.sample_count,
                self.config.seed,
                epoch=state.epoch + 1,
                step=state.step,
            )
            self._track_image("samples", path, state.step)

    def _track_image(self, tag: str, path: Path, step: int) -> None:
        if self.tracker is not None and path.exists():
            self.tracker.image(tag, path, step)

    def epoch_done(self, engine: Engine, record: dict[str, Any], state: LoopState) -> None:
        if not self.writes:
            return
        with self._writing(f"epoch {state.epoch}", state.epoch - 1):
            self._save_epoch(engine, record, state)
        self.log(format_epoch(record, self.config.epochs))

    @contextlib.contextmanager
    def _writing(self, what: str, kept: int) -> Iterator[None]:
        """Turn an OSError while writing ``what`` (a full disk, a folder made read-only) into
        one line saying that the checkpoint of epoch ``kept`` is intact and how to go on."""
        try:
            yield
        except OSError as exc:
            with contextlib.suppress(OSError):
                checkpoint.recover(self.run_dir, self.model)  # undo a save cut short
            then = (
                f"the checkpoint of epoch {kept} is intact: fix the cause, then continue with "
                f"'vaekit train --resume --out {self.run_dir}'"
                if kept
                else "no epoch was saved: fix the cause and start again (--force replaces it)"
            )
            raise CheckpointError(
                f"could not save {what} in {self.run_dir} ({exc.strerror or exc}); {then}"
            ) from None

    def _save_epoch(self, engine: Engine, record: dict[str, Any], state: LoopState) -> None:
        append_metrics(self.run_dir, record)
        if self.tracker is not None:
            self.tracker.epoch(record)
        epoch = record["epoch"]
        if self.drawable and epoch % self.config.sample_every == 0:
            seed = self.config.seed
            path = self._figure(f"samples-epoch-{epoch:03d}.png")
            gallery.draw_samples(engine, path, self.config.sample_count, seed, epoch=epoch)
            self._track_image("samples", path, state.step)
            x, y = self.figure_inputs
            path = self._figure(f"reconstructions-epoch-{epoch:03d}.png")
            gallery.draw_reconstructions(engine, x[:8], path, seed, y, epoch=epoch)
            self._track_image("reconstructions", path, state.step)
        if self.config.keep == "best" and state.best_epoch == epoch:
            split = "val" if "val_loss" in record else "test"
            best_weights.save_best(self.run_dir, engine, epoch, state.best_loss, split)
        checkpoint.save_checkpoint(self.run_dir, engine, state.to_json())

    def _after_divergence(self, saved: int, scaling: Scaling | None) -> str:
        """What is kept after the loss diverged with ``saved`` epochs saved, and what to do:
        inputs of a huge scale (by the range ``scaling`` recorded) need scaling first; else a
        lower learning rate, which takes a new run (--resume keeps the run's settings and would
        take the same steps again)."""
        lr = self.config.lr
        again = (
            f"start again with a lower learning rate than {lr:g} (the same command with --force "
            f"and e.g. --lr {lr / 10:g})"
        )
        largest = 0.0 if scaling is None else max(abs(scaling.low), abs(scaling.high))
        if largest > LARGE_INPUT:
            again = (
                f"the inputs reach {largest:.3g} after --scale {scaling.method}, far from the "
                "unit scale the model's first steps assume: start again with --scale "
                "standardize (the same command with --force)"
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
        per_step = self.config.sample_every_steps or self.tracker is not None
        try:
            history = fit(
                engine,
                self.config,
                data,
                state=state,
                on_epoch=self.epoch_done,
                on_step=self.step_done if per_step else None,
                progress=progress and self.writes,
            )
        except TrainingDiverged as exc:
            self._stop_tracking()
            advice = self._after_divergence(state.epoch, data.scaling)
            raise TrainingDiverged(f"{exc}; {advice}") from None
        except BaseException:
            self._stop_tracking()
            raise
        if state.epoch < self.config.epochs and state.stalled(self.config.patience):
            self.log(
                f"stopped early after epoch {state.epoch}: the held-out -ELBO has not improved "
                f"for {plural(self.config.patience, 'epoch')} (best "
                f"{state.best_loss:.2f} nats at epoch {state.best_epoch})"
            )
        with self._writing("the final figures", state.epoch):
            if self.writes:
                gallery.draw_all(self.run_dir, engine, *self.figure_inputs, self.config.seed)
            if self.tracker is not None:
                self.tracker.close(history[-1] if history else {})
        return history

    def _stop_tracking(self) -> None:
        if self.tracker is not None:
            self.tracker.stop()


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
    check_held_out(config, data)
    check_logger(config)
    check_run_dir(run_dir, force=force)  # on every rank, before rank 0 may write
    engine = engine_for(model, config, group)
    check_data_on_device(config, data, engine)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    with _writer_lock(run_dir, main):
        if main:
            prepare_run_dir(run_dir, force=force)
            config_file.write_config(run_dir, model, config, created_by)
            if data.scaling is not None:
                data.scaling.save(run_dir)
        if on_start is not None:
            on_start()
        writer = RunWriter(run_dir, model, config, log, writes=main)
        return writer.train(engine, data, LoopState.fresh(config.seed), progress)


def resume_run(
    run_dir: str | Path,
    *,
    epochs: int | None = None,
    patience: int | None = None,
    data_dir: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
    log: Log = print,
) -> list[dict[str, Any]]:
    """Continue the run in ``run_dir`` from its last complete epoch (to ``epochs`` if given,
    stopping early with ``patience`` if given, both stored)
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
    if epochs is not None and epochs != config.epochs:
        config = replace(config, epochs=epochs)
    if device is not None:
        config = replace(config, device=device)
    if patience is not None:
        config = replace(config, patience=patience)
    where = run_data_dir(config.data, config.data_dir, data_dir)
    if data_dir is not None:
        config = replace(config, data_dir=where)
    scaling = Scaling.load(run_dir)  # None for a run from before scalings were stored: auto
    data = TrainingData.load(replace(config, data_dir=where), scaling=scaling)
    check_compatible(model, data)
    check_held_out(config, data)
    check_logger(config)
    engine = engine_for(model, config, group)
    check_data_on_device(config, data, engine)
    with _writer_lock(run_dir, main):
        if main:
            checkpoint.recover(run_dir, model)  # finish or undo an interrupted save, first
        distributed.barrier()
        state = LoopState.from_json(checkpoint.load_checkpoint(run_dir, engine))
        if state.epoch > config.epochs:
            raise ConfigError(
                f"{run_dir} has already trained {plural(state.epoch, 'epoch')}; pass --epochs "
                "with a "
                f"number larger than {state.epoch} to train longer"
            )
        if main:
            config_file.write_config(run_dir, model, config, record.get("created_by", "train"))
            keep_metrics_until(run_dir, state.epoch)  # drop those after a crash
            best_weights.keep_best_until(run_dir, state.epoch)
            if scaling is None and data.scaling is not None:
                data.scaling.save(run_dir)
            if state.epoch < config.epochs and state.stalled(config.patience):
                log(f"{run_dir} stopped early; drawing its figures")
            elif state.epoch == config.epochs:  # e.g. stopped while drawing the final figures
                log(
                    f"{run_dir} has trained all {plural(config.epochs, 'epoch')}; "
                    "drawing its figures (pass --epochs with a larger number to train longer)"
                )
            else:
                log(f"resuming {run_dir} after epoch {state.epoch}")
        saved = last_metrics(run_dir, state.epoch)
        writer = RunWriter(run_dir, model, config, log, writes=main, first_step=state.step)
        return ([saved] if saved else []) + writer.train(engine, data, state, progress)


def format_epoch(record: dict[str, Any], epochs: int) -> str:
    """One line per epoch: train loss (−ELBO with the current β) and its terms, test −ELBO."""
    line = (
        f"epoch {record['epoch']}/{epochs}  loss {record['loss']:.2f}  "
        f"recon {record['recon']:.2f}  kl {record['kl']:.2f}"
    )
    for name in ("val", "test"):
        if f"{name}_loss" in record:
            line += f"  {name} -ELBO {record[f'{name}_loss']:.2f}"
    if "val_loss" in record or "test_loss" in record:
        line += " nats"
    return line + f"  ({record['seconds']:.1f} s)"
