"""Drawing from a trained VAE through any engine: prior samples and reconstructions."""

from __future__ import annotations

import numpy as np

from vaekit.engines import Engine


def sample_prior(engine: Engine, n: int, seed: int = 0) -> np.ndarray:
    """n images: the decoder mean at z ~ N(0, I), z drawn from ``seed``; shape (n, *input_shape)."""
    z = np.random.default_rng(seed).standard_normal((n, engine.config.latent_dim))
    return engine.decode(z.astype(np.float32))


def reconstruct(engine: Engine, x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Encode, draw z = mu + exp(logvar/2)·eps (eps from ``seed``), decode to the mean of p(x|z)."""
    mu, logvar = engine.encode(x)
    eps = np.random.default_rng(seed).standard_normal(mu.shape).astype(mu.dtype)
    return engine.decode(mu + np.exp(0.5 * logvar) * eps)
