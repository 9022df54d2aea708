"""What a run directory receives while a model trains: per epoch a metrics line, figures and a
crash-safe checkpoint, per step what TensorBoard and the step figures need, at the end every
figure of the run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.data.pipeline import TrainingData
from vaekit.data.scaling import Scaling
from vaekit.disk import write_atomic
from vaekit.draw import figures, gallery
from vaekit.engines import Engine, StepMetrics
from vaekit.engines.threads import cpu_threads
from vaekit.errors import CheckpointError, TrainingDiverged
from vaekit.runs import best_weights, checkpoint
from vaekit.runs.layout import WEIGHTS_FILE
from vaekit.runs.metrics import append_metrics
from vaekit.train.loop import Log, LoopState, fit, learning_rate
from vaekit.train.write_behind import WriteBehind

#: Inputs larger than this in magnitude (after scaling) are named as the likely cause when the
#: loss diverges: the weights start at the scale of unit inputs.
LARGE_INPUT = 1e4


class RunWriter:
    """What a run directory receives: per epoch a metrics line, figures (every ``sample_every``
    epochs: a sample grid and reconstructions; every ``sample_every_steps`` steps: a sample grid)
    and a checkpoint, then the log line; at the end, every figure of the run.

    The training thread takes what the files hold (draws the pictures, serializes the weights)
    and hands it to a thread of its own (:class:`~vaekit.train.write_behind.WriteBehind`), which
    writes it while the next epoch trains. An epoch's files are on disk before the next epoch's
    are handed over, and before training ends or stops (Ctrl-C, SIGTERM, a diverged loss): a run
    that stops has saved every epoch it finished. A write that fails is reported at the end of
    the next epoch, or as training stops.

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
        self.names: tuple[str, ...] | None = None  # the data's class names, set by train
        self.saved = 0  # the last epoch whose checkpoint is on disk, set by train
        self.behind = WriteBehind()
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
        what = f"step {state.step:,} of epoch {state.epoch + 1}"
        with self._writing(what):
            pictures = self._take_step(engine, state, metrics, beta)
        if pictures:
            self.behind.submit(what, lambda: write_pictures(pictures))

    def _take_step(
        self, engine: Engine, state: LoopState, metrics: StepMetrics, beta: float
    ) -> dict[Path, bytes]:
        """Feed TensorBoard the step's scalars; draw the step's sample grid when one is due,
        and return it (by its path) to be written."""
        if self.tracker is not None:
            lr = learning_rate(self.config, state.epoch + 1)
            self.tracker.step(state.step, metrics.loss, metrics.recon, metrics.kl, beta, lr)
        every = self.config.sample_every_steps
        pictures: dict[Path, bytes] = {}
        if self.drawable and every and state.step % every == 0:
            path = self._figure(f"samples-step-{state.step:07d}.png")
            gallery.draw_samples(
                engine,
                path,
                self.config.sample_count,
                self.config.seed,
                epoch=state.epoch + 1,
                step=state.step,
                names=self.names,
                write=pictures.__setitem__,
            )
            self._track_image("samples", pictures[path], state.step)
        return pictures

    def _track_image(self, tag: str, png: bytes, step: int) -> None:
        if self.tracker is not None:
            self.tracker.image(tag, png, step)

    def epoch_done(self, engine: Engine, record: dict[str, Any], state: LoopState) -> None:
        if not self.writes:
            return
        self._finish_writes()  # the epoch before's files first: one epoch in flight at most
        what = f"epoch {state.epoch}"
        with self._writing(what):
            write = self._take_epoch(engine, record, state)
        self.behind.submit(what, write)
        self.log(format_epoch(record, self.config.epochs))

    def _take_epoch(
        self, engine: Engine, record: dict[str, Any], state: LoopState
    ) -> Callable[[], None]:
        """Feed TensorBoard the epoch's record, draw its pictures and take its checkpoint in
        memory, now; return the job that writes them, in the order that keeps a run whole:
        the metrics line, the pictures, the best weights, the checkpoint."""
        if self.tracker is not None:
            self.tracker.epoch(record)
        epoch = record["epoch"]
        pictures: dict[Path, bytes] = {}
        if self.drawable and epoch % self.config.sample_every == 0:
            seed, count, keep = self.config.seed, self.config.sample_count, pictures.__setitem__
            path = self._figure(f"samples-epoch-{epoch:03d}.png")
            gallery.draw_samples(
                engine, path, count, seed, epoch=epoch, names=self.names, write=keep
            )
            self._track_image("samples", pictures[path], state.step)
            x, y = self.figure_inputs
            path = self._figure(f"reconstructions-epoch-{epoch:03d}.png")
            gallery.draw_reconstructions(engine, x[:8], path, seed, y, epoch=epoch, write=keep)
            self._track_image("reconstructions", pictures[path], state.step)
        snapshot = checkpoint.take_checkpoint(engine, state.to_json())
        best = self.config.keep == "best" and state.best_epoch == epoch
        best_loss, split = state.best_loss, "val" if "val_loss" in record else "test"

        def write() -> None:
            append_metrics(self.run_dir, record)
            write_pictures(pictures)
            if best:
                weights = snapshot.files[WEIGHTS_FILE]  # the checkpoint's own
                best_weights.save_best(self.run_dir, weights, epoch, best_loss, split)
            checkpoint.write_checkpoint(self.run_dir, snapshot)
            self.saved = epoch

        return write

    def _finish_writes(self) -> None:
        """Wait for the files handed to the writing thread; if one could not be written, raise
        the CheckpointError of :meth:`_cannot_save`."""
        failure = self.behind.finish()
        if failure is not None:
            raise self._cannot_save(*failure)

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Turn an OSError while writing ``what`` (a full disk, a folder made read-only) into
        the CheckpointError of :meth:`_cannot_save`, once the writes under way have ended (the
        first failure is the one reported)."""
        try:
            yield
        except OSError as exc:
            raise self._cannot_save(*(self.behind.finish() or (what, exc))) from None

    def _cannot_save(self, what: str, exc: OSError) -> CheckpointError:
        """One line: ``what`` could not be saved and why, which checkpoint is intact (undoing
        a save cut short) and how to go on."""
        with contextlib.suppress(OSError):
            checkpoint.recover(self.run_dir, self.model)
        then = (
            f"the checkpoint of epoch {self.saved} is intact: fix the cause, then continue "
            f"with 'vaekit train --resume --out {self.run_dir}'"
            if self.saved
            else "no epoch was saved: fix the cause and start again (--force replaces it)"
        )
        return CheckpointError(
            f"could not save {what} in {self.run_dir} ({exc.strerror or exc}); {then}"
        )

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
        self.figure_inputs, self.names = figure_inputs(data), data.classes
        self.saved = state.epoch
        if self.tracker is not None and data.classes:
            self.tracker.classes(data.classes)
        try:
            history = self._fit(engine, data, state, progress)
            self._finish_writes()
            with self._writing("the final figures"), cpu_threads(self.config.threads):
                if self.writes:
                    gallery.draw_all(self.run_dir, engine, *self.figure_inputs, self.config.seed)
                if self.tracker is not None:
                    self.tracker.close(history[-1] if history else {})
        finally:
            self.behind.close()
        return history

    def _fit(self, engine: Engine, data: TrainingData, state: LoopState, progress: bool):
        """:func:`fit` with this writer's hooks; a run that stops (a diverged loss, Ctrl-C, an
        error) first stops TensorBoard and has its finished epochs' files written."""
        per_step = self.config.sample_every_steps or self.tracker is not None
        try:
            return fit(
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
            self._finish_writes()
            advice = self._after_divergence(self.saved, data.scaling)
            raise TrainingDiverged(f"{exc}; {advice}") from None
        except BaseException:
            self._stop_tracking()
            self._finish_writes()  # a run that stops keeps every epoch it finished
            raise

    def _stop_tracking(self) -> None:
        if self.tracker is not None:
            self.tracker.stop()


def write_pictures(pictures: dict[Path, bytes]) -> None:
    """Write each picture (PNG bytes by path) atomically."""
    for path, png in pictures.items():
        write_atomic(path, png)


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


def figure_inputs(data: TrainingData) -> tuple[np.ndarray, np.ndarray | None]:
    """Inputs to draw and encode: the held-out data (with labels) when there is some, else the
    training data; data read on demand gives its first ``SCATTER_POINTS`` examples."""
    x, y, _ = data.held_out() or (data.train, data.train_labels, "training")
    if isinstance(x, np.ndarray):
        return x, y
    limit = gallery.SCATTER_POINTS
    return x[:limit], None if y is None else y[:limit]
