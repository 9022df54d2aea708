"""Measuring a trained VAE on data, in nats per example, through any engine.

- ELBO(x) = −recon − KL with recon = −log p(x|z), z = mu + exp(logvar/2)·eps, and the KL in
  closed form (one eps per example, drawn from a seed so numbers are comparable).
- Importance-weighted bound (IWAE, Burda et al. 2015) with k samples z_i ~ q(z|x):
  log p(x) ≥ L_k(x) = logsumexp_i [log p(x|z_i) + log p(z_i) − log q(z_i|x)] − log k.
  L_1 is the single-sample ELBO estimate (with a Monte-Carlo KL); L_k rises towards log p(x) as k
  grows, and L_5000 is the "test NLL" papers report (as −L_k).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vaekit import objectives
from vaekit.engines import Engine

#: Upper bound on the numbers held by one decoder call during IWAE (samples × examples × D).
#: 2**21 float32 values (8 MB) keep each chunk's logits in the CPU's cache: measured with
#: ``benchmarks/run.py``, k = 5000 runs 1.8× faster than with 2**24 and uses less memory.
IWAE_CHUNK_VALUES = 2**21


@dataclass(frozen=True)
class ElboResult:
    """Mean −ELBO = recon + KL over ``n`` examples, nats per example (lower is better)."""

    loss: float
    recon: float
    kl: float
    n: int


def _part(y: np.ndarray | None, start: int, stop: int) -> np.ndarray | None:
    return None if y is None else y[start:stop]


def elbo_terms(
    engine: Engine, x: np.ndarray, eps: np.ndarray, y: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(recon, kl) per example, nats, float64: −log p(x|z) at z = mu + exp(logvar/2)·eps, and
    KL(q(z|x) ‖ N(0, I)) in closed form. ``y``: labels, for a conditional model."""
    mu, logvar = engine.encode(x, y)
    z = mu + np.exp(0.5 * logvar) * eps.astype(mu.dtype)
    kl = objectives.kl_standard_normal(mu.astype(np.float64), logvar.astype(np.float64))
    return engine.reconstruction_nll(x, z, y), kl


def evaluate_elbo(
    engine: Engine,
    x: np.ndarray,
    *,
    y: np.ndarray | None = None,
    seed: int = 0,
    batch_size: int = 1000,
) -> ElboResult:
    """The single-sample ELBO estimate over ``x``, in batches, with eps drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    recon_sum = kl_sum = 0.0
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        eps = rng.standard_normal((len(batch), engine.config.latent_dim), dtype=np.float32)
        recon, kl = elbo_terms(engine, batch, eps, _part(y, start, start + batch_size))
        recon_sum += float(recon.sum())
        kl_sum += float(kl.sum())
    n = len(x)
    return ElboResult(loss=(recon_sum + kl_sum) / n, recon=recon_sum / n, kl=kl_sum / n, n=n)


def log_weights(
    engine: Engine,
    x: np.ndarray,
    mu: np.ndarray,
    logvar: np.ndarray,
    eps: np.ndarray,
    y: np.ndarray | None = None,
) -> np.ndarray:
    """log w = log p(x|z) + log p(z) − log q(z|x) for z = mu + σ·eps, eps of shape (S, N, K).

    With z − mu = σ·eps, log p(z) − log q(z|x) = −½ Σ_k z² + ½ Σ_k (eps² + logvar) (the log 2π
    terms cancel). Returns (S, N), float64.
    """
    z = mu + np.exp(0.5 * logvar) * eps
    recon = engine.reconstruction_nll(x, z, y)  # (S, N): x is shared, not copied S times
    z64, eps64 = z.astype(np.float64), eps.astype(np.float64)
    prior_minus_posterior = 0.5 * (
        np.sum(eps64 * eps64 - z64 * z64, axis=2) + np.sum(logvar, axis=1, dtype=np.float64)
    )
    return prior_minus_posterior - recon


def iwae_log_likelihood(
    engine: Engine,
    x: np.ndarray,
    k: int,
    *,
    y: np.ndarray | None = None,
    seed: int = 0,
    batch_size: int = 500,
) -> np.ndarray:
    """L_k(x) per example (nats, float64): the k-sample importance-weighted bound on log p(x).

    Examples go in batches of ``batch_size``; the k samples in chunks sized so that one decoder
    call holds at most IWAE_CHUNK_VALUES numbers. The logsumexp over chunks is streamed in
    float64 (running maximum and rescaled sum), so memory does not grow with k.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    rng = np.random.default_rng(seed)
    latent = engine.config.latent_dim
    out = np.empty(len(x))
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        n = len(batch)
        dim = batch[0].size
        labels = _part(y, start, start + batch_size)
        mu, logvar = engine.encode(batch, labels)
        chunk = max(1, min(k, IWAE_CHUNK_VALUES // (n * max(dim, latent))))
        running_max = np.full(n, -np.inf)
        running_sum = np.zeros(n)
        for done in range(0, k, chunk):
            samples = min(chunk, k - done)
            eps = rng.standard_normal((samples, n, latent), dtype=np.float32).astype(mu.dtype)
            w = log_weights(engine, batch, mu, logvar, eps, labels)
            new_max = np.maximum(running_max, w.max(axis=0))
            running_sum = running_sum * np.exp(running_max - new_max) + np.exp(w - new_max).sum(0)
            running_max = new_max
        out[start : start + n] = running_max + np.log(running_sum) - math.log(k)
    return out


@dataclass(frozen=True)
class LatentStatistics:
    """How the posterior uses each latent dimension, over a data set.

    ``mean_variance[k]`` = Cov_x(E_q[z_k|x]), the variance across examples of the posterior
    mean; dimension k is *active* when it exceeds ``threshold`` (Burda et al., 2015: 0.01).
    ``kl_per_dim[k]`` = mean over examples of ½(e^logvar_k + mu_k² − 1 − logvar_k), nats.
    """

    mean_variance: np.ndarray
    kl_per_dim: np.ndarray
    threshold: float

    @property
    def active_units(self) -> int:
        return int(np.sum(self.mean_variance > self.threshold))


def latent_statistics(
    engine: Engine,
    x: np.ndarray,
    *,
    y: np.ndarray | None = None,
    batch_size: int = 1000,
    threshold: float = 0.01,
) -> LatentStatistics:
    """Active units and KL per latent dimension over ``x`` (posterior means, in batches)."""
    mus, kls = [], []
    for start in range(0, len(x), batch_size):
        stop = start + batch_size
        mu, logvar = (
            a.astype(np.float64) for a in engine.encode(x[start:stop], _part(y, start, stop))
        )
        mus.append(mu)
        kls.append(0.5 * (np.exp(logvar) + mu * mu - 1.0 - logvar))
    mu_all = np.concatenate(mus)
    return LatentStatistics(
        mean_variance=mu_all.var(axis=0),
        kl_per_dim=np.concatenate(kls).mean(axis=0),
        threshold=threshold,
    )
