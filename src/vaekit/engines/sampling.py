"""Drawing from a trained VAE through any engine: prior samples and reconstructions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vaekit.data.labels import class_labels
from vaekit.engines import Engine
from vaekit.errors import ConfigError
from vaekit.model.objectives import reparameterize


def default_labels(engine: Engine, n: int) -> np.ndarray | None:
    """Labels for n samples of a conditional model when none are asked for: the classes in
    turn (0, 1, …, C−1, 0, …); None for an unconditional model."""
    classes = engine.config.n_classes
    return np.arange(n, dtype=np.int64) % classes if classes else None


def check_labels(engine: Engine, labels: np.ndarray | None, n: int) -> np.ndarray | None:
    """Labels as int64 (n,), within the model's classes; None for an unconditional model."""
    classes = engine.config.n_classes
    if not classes:
        if labels is not None:
            raise ConfigError("this model is not conditional; it takes no labels")
        return None
    if labels is None:
        return default_labels(engine, n)
    return class_labels(np.broadcast_to(labels, (n,)), "labels", n, classes)


def sample_prior(
    engine: Engine, n: int, seed: int = 0, labels: np.ndarray | int | None = None
) -> np.ndarray:
    """n images: the decoder mean at z ~ p(z), the engine's prior, z drawn from ``seed``; shape
    (n, *input_shape).

    A conditional model draws the digits of ``labels`` (one label, or one per sample; default:
    the classes in turn), z from p(z|y) where its prior is the class prior."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"the number of samples must be a whole number of 1 or more, got {n!r}")
    labels = check_labels(engine, labels, n)
    z = engine.prior.sample(n, np.random.default_rng(seed), labels)
    return engine.decode(z.astype(np.float32), labels)


def reconstruct(
    engine: Engine, x: np.ndarray, seed: int = 0, labels: np.ndarray | None = None
) -> np.ndarray:
    """Encode, draw z = mu + exp(logvar/2)·eps (eps from ``seed``), decode to the mean of p(x|z)."""
    y = check_labels(engine, labels, len(x)) if labels is not None else None
    mu, logvar = engine.encode(x, y)
    eps = np.random.default_rng(seed).standard_normal(mu.shape).astype(mu.dtype)
    return engine.decode(reparameterize(mu, logvar, eps), y)


def posterior_means(
    engine: Engine,
    x: np.ndarray,
    labels: np.ndarray | None = None,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """E[z|x] (E[z|x, y] for a conditional model) of the first ``limit`` inputs (None: all), in
    batches of 1,000; ``progress``, if given, is called after each with the number of inputs
    encoded."""
    x = x[:limit]
    y = labels[:limit] if engine.config.conditional else None
    parts = []
    for i in range(0, len(x), 1000):
        parts.append(engine.encode(x[i : i + 1000], None if y is None else y[i : i + 1000])[0])
        if progress is not None:
            progress(i + len(parts[-1]))
    return np.concatenate(parts)
