"""The prior p(z) over the latent space, as an object every part of vaekit asks.

The engines take the KL term of the ELBO and log p(z) of the importance weights from it; sampling,
the run's figures and the latent manifold draw from it. A prior offers:

- ``log_prob(z)``: log p(z), nats, summed over the last axis (NumPy arrays and torch tensors);
- ``sample(n, rng)``: n draws, (n, K) float64, from a ``numpy.random.Generator``;
- ``quantile(p)``: the inverse CDF of each coordinate's marginal (the manifold's grid);
- where a closed form exists, ``kl(mu, logvar)`` = KL(q(z|x) ‖ p(z)) per example for
  q = N(mu, diag e^logvar), its per-dimension terms ``kl_per_dim`` (free bits) and, for the NumPy
  engine's backward pass, ``kl_grad``.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Protocol

import numpy as np

from vaekit import objectives
from vaekit.config import ModelConfig
from vaekit.objectives import Array


class Prior(Protocol):
    """What the engines, sampling and figures ask of a prior (see the module docstring)."""

    latent_dim: int

    def log_prob(self, z: Array) -> Array: ...

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray: ...

    def quantile(self, p: np.ndarray) -> np.ndarray: ...

    def kl_per_dim(self, mu: Array, logvar: Array) -> Array: ...

    def kl(self, mu: Array, logvar: Array) -> Array: ...

    def kl_grad(self, mu: np.ndarray, logvar: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class StandardNormal:
    """p(z) = N(0, I) in K dimensions: log p(z) = −½ Σ_k (z_k² + log 2π)."""

    def __init__(self, latent_dim: int) -> None:
        self.latent_dim = latent_dim

    def log_prob(self, z: Array) -> Array:
        """log N(z; 0, I), nats, for z (…, K): −½ Σ_k (z_k² + log 2π)."""
        return -0.5 * (z * z + objectives.LOG_2PI).sum(-1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n draws z ~ N(0, I), (n, K), float64."""
        return rng.standard_normal((n, self.latent_dim))

    def quantile(self, p: np.ndarray) -> np.ndarray:
        """Φ⁻¹(p): the value below which a coordinate of z falls with probability p."""
        inv_cdf = NormalDist().inv_cdf
        return np.array([inv_cdf(float(q)) for q in np.ravel(p)]).reshape(np.shape(p))

    def kl_per_dim(self, mu: Array, logvar: Array) -> Array:
        """KL(N(mu, e^logvar) ‖ N(0, 1)) per example and dimension, (N, K), nats."""
        return objectives.kl_per_dim(mu, logvar)

    def kl(self, mu: Array, logvar: Array) -> Array:
        """KL(N(mu, diag e^logvar) ‖ N(0, I)) per example, (N,), nats."""
        return self.kl_per_dim(mu, logvar).sum(-1)

    def kl_grad(self, mu: np.ndarray, logvar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(∂/∂mu, ∂/∂logvar) of :meth:`kl_per_dim`, elementwise."""
        return objectives.kl_per_dim_grad(mu, logvar)


def for_config(config: ModelConfig) -> Prior:
    """The prior of a model: N(0, I) over its ``latent_dim`` dimensions."""
    return StandardNormal(config.latent_dim)
