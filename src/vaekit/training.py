"""The one training loop, for every engine.

Each epoch: a seeded permutation of the training set, batches as slices of it (dynamic
binarization draws a fresh Bernoulli sample of each batch), one engine step per batch with the
KL weight of the warm-up schedule, then the test ELBO, one line of ``metrics.jsonl``, a sample
grid and a crash-safe checkpoint. Resuming restores weights, optimizer, and both random
generators, so a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from vaekit import checkpoint, figures
from vaekit.config import ModelConfig, TrainConfig
from vaekit.data import Dataset, binarize, load_dataset
from vaekit.engines import Engine, build_engine
from vaekit.errors import ConfigError, DataError, TrainingDiverged
from vaekit.evaluation import evaluate_elbo
from vaekit.sampling import reconstruct, sample_prior

Log = Callable[[str], None]
SAMPLE_COUNT = 64
RECONSTRUCTION_COUNT = 8


@dataclass(frozen=True)
class TrainingData:
    """Training and (optional) test inputs, binarized as the protocol says (except ``dynamic``
    training data, which is sampled afresh per batch)."""

    train: np.ndarray
    test: np.ndarray | None

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
        return cls(train=train_x, test=test_x)


def fixed_binarization(mode: str) -> str:
    """The binarization for data seen once per run (test sets, figures): dynamic → static."""
    return "static" if mode == "dynamic" else mode


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
    if model.likelihood == "bernoulli":
        for split, x in (("training", data.train), ("test", data.test)):
            if x is not None and (x.min() < 0 or x.max() > 1):
                raise DataError(
                    f"the {split} data have values outside [0, 1], which a Bernoulli likelihood "
                    "cannot model; use --likelihood gaussian"
                )


def engine_for(model: ModelConfig, config: TrainConfig) -> Engine:
    """A fresh engine for ``model`` with the engine, seed, device and optimizer of ``config``."""
    return build_engine(
        model,
        config.engine,
        seed=config.seed,
        device=config.device,
        optimizer=config.optimizer,
        lr=config.lr,
        momentum=config.momentum,
    )


def prepare_run_dir(run_dir: Path, *, force: bool) -> None:
    """Refuse a non-empty ``run_dir`` unless ``force`` (which removes only a run's own files)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} exists and is not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not force:
            raise ConfigError(
                f"run directory {run_dir} is not empty; pass --resume to continue it, "
                "--force to replace it, or choose another --out"
            )
        checkpoint.clear_run(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


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

    Everything is validated (data, configs, engine) before anything is written.
    """
    run_dir = Path(run_dir)
    data = data or TrainingData.load(config)
    check_compatible(model, data)
    engine = engine_for(model, config)
    prepare_run_dir(run_dir, force=force)
    checkpoint.write_config(run_dir, model, config, created_by)
    loop_rng = np.random.default_rng((config.seed, 1))
    return _fit(run_dir, model, config, engine, data, 0, 0, loop_rng, progress, log)


def resume_run(
    run_dir: str | Path,
    *,
    epochs: int | None = None,
    progress: bool = True,
    log: Log = print,
) -> list[dict[str, Any]]:
    """Continue the run in ``run_dir`` from its last complete epoch (to ``epochs`` if given)."""
    run_dir = Path(run_dir)
    model, config, record = checkpoint.read_config(run_dir)
    if epochs is not None and epochs != config.epochs:
        config = replace(config, epochs=epochs)
    data = TrainingData.load(config)
    check_compatible(model, data)
    engine = engine_for(model, config)
    state = checkpoint.load_checkpoint(run_dir, engine)
    done = int(state["epoch"])
    if done >= config.epochs:
        raise ConfigError(
            f"{run_dir} has already trained {done} of {config.epochs} epochs; "
            "pass --epochs with a larger number to train longer"
        )
    checkpoint.write_config(run_dir, model, config, record.get("created_by", "train"))
    _truncate_metrics(run_dir / checkpoint.METRICS_FILE, done)
    loop_rng = np.random.default_rng()
    loop_rng.bit_generator.state = state["loop_rng"]
    log(f"resuming {run_dir} after epoch {done}")
    return _fit(
        run_dir, model, config, engine, data, done, int(state["step"]), loop_rng, progress, log
    )


def _fit(
    run_dir: Path,
    model: ModelConfig,
    config: TrainConfig,
    engine: Engine,
    data: TrainingData,
    first_epoch: int,
    step: int,
    loop_rng: np.random.Generator,
    progress: bool,
    log: Log,
) -> list[dict[str, Any]]:
    n = len(data.train)
    steps_per_epoch = math.ceil(n / config.batch_size)
    history = []
    show_bar = progress and sys.stderr.isatty()
    for epoch in range(first_epoch + 1, config.epochs + 1):
        started = time.perf_counter()
        order = loop_rng.permutation(n)
        totals = np.zeros(3)
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch}/{config.epochs}",
            disable=not show_bar,
            leave=False,
            unit="batch",
        )
        for start in range(0, n, config.batch_size):
            x = data.train[order[start : start + config.batch_size]]
            if config.binarize == "dynamic":
                x = binarize(x, "dynamic", loop_rng)
            step += 1
            beta = kl_weight(model.beta, config.kl_warmup, step, steps_per_epoch)
            metrics = engine.train_step(x, beta)
            if not math.isfinite(metrics.loss):
                bar.close()
                raise TrainingDiverged(
                    f"the loss became {metrics.loss} at epoch {epoch}, step {step}; the last good "
                    f"checkpoint (epoch {epoch - 1}) is kept in {run_dir}; try a lower --lr"
                )
            totals += np.array([metrics.loss, metrics.recon, metrics.kl]) * len(x)
            bar.update()
            bar.set_postfix(loss=f"{metrics.loss:.2f}", refresh=False)
        bar.close()
        loss, recon, kl = totals / n
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "loss": loss,
            "recon": recon,
            "kl": kl,
            "beta": beta,
        }
        if data.test is not None:
            test = evaluate_elbo(engine, data.test, seed=config.seed)
            record.update(test_loss=test.loss, test_recon=test.recon, test_kl=test.kl)
        record["seconds"] = time.perf_counter() - started
        history.append(record)
        _append_metrics(run_dir / checkpoint.METRICS_FILE, record)
        if figures.can_draw(model.input_shape) and epoch % config.sample_every == 0:
            _save_epoch_samples(run_dir, engine, config, epoch)
        state = {"epoch": epoch, "step": step, "loop_rng": loop_rng.bit_generator.state}
        checkpoint.save_checkpoint(run_dir, engine, state)
        log(format_epoch(record, config.epochs))
    if figures.can_draw(model.input_shape):
        save_final_figures(run_dir, engine, data, config.seed)
    return history


def format_epoch(record: dict[str, Any], epochs: int) -> str:
    """One line per epoch: train loss (−ELBO with the current β) and its terms, test −ELBO."""
    line = (
        f"epoch {record['epoch']}/{epochs}  loss {record['loss']:.2f}  "
        f"recon {record['recon']:.2f}  kl {record['kl']:.2f}"
    )
    if "test_loss" in record:
        line += f"  test -ELBO {record['test_loss']:.2f} nats"
    return line + f"  ({record['seconds']:.1f} s)"


def _append_metrics(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _truncate_metrics(path: Path, last_epoch: int) -> None:
    """Drop metrics of epochs after the last checkpoint (written just before a crash)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["epoch"] <= last_epoch:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash
    checkpoint.write_atomic(path, "".join(kept).encode())


def _save_epoch_samples(run_dir: Path, engine: Engine, config: TrainConfig, epoch: int) -> None:
    folder = run_dir / "figures"
    folder.mkdir(exist_ok=True)
    images = sample_prior(engine, SAMPLE_COUNT, seed=config.seed)
    figures.save_sample_grid(
        images, folder / f"samples-epoch-{epoch:03d}.png", f"Samples from the prior, epoch {epoch}"
    )


def save_final_figures(run_dir: Path, engine: Engine, data: TrainingData, seed: int) -> None:
    """``samples.png`` (8×8 prior samples) and ``reconstructions.png`` (test inputs, else train)."""
    figures.save_sample_grid(
        sample_prior(engine, SAMPLE_COUNT, seed=seed),
        run_dir / "samples.png",
        "Samples from the prior",
    )
    originals = (data.test if data.test is not None else data.train)[:RECONSTRUCTION_COUNT]
    figures.save_reconstructions(
        originals,
        reconstruct(engine, originals, seed=seed),
        run_dir / "reconstructions.png",
        "Inputs (top) and their reconstructions (bottom)",
    )
