"""Measuring a trained VAE on data, in nats per example, through any engine.

The engine computes the model's terms (its ``elbo_terms`` and ``log_weights``); this module
batches the data, draws the noise from a seed (so numbers are comparable) and streams the sums.

- ELBO(x) = −recon − KL with recon = −log p(x|z), z = mu + exp(logvar/2)·eps, and the KL to the
  prior in closed form (one eps per example).
- Importance-weighted bound (IWAE, Burda et al. 2015) with k samples z_i ~ q(z|x):
  log p(x) ≥ L_k(x) = logsumexp_i [log p(x|z_i) + log p(z_i) − log q(z_i|x)] − log k.
  L_1 is the single-sample ELBO estimate (with a Monte-Carlo KL); L_k rises towards log p(x) as k
  grows, and L_5000 is the "test NLL" papers report (as −L_k).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

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


def evaluate_elbo(
    engine: Engine,
    x: np.ndarray,
    *,
    y: np.ndarray | None = None,
    seed: int = 0,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> ElboResult:
    """The single-sample ELBO estimate over ``x``, in batches, with eps drawn from ``seed``.

    ``progress``, if given, is called after each batch with the number of examples finished so
    far (cumulative, ending at ``len(x)``).
    """
    rng = np.random.default_rng(seed)
    recon_sum = kl_sum = 0.0
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        eps = rng.standard_normal((len(batch), engine.config.latent_dim), dtype=np.float32)
        recon, kl = engine.elbo_terms(batch, eps, _part(y, start, start + batch_size))
        recon_sum += float(recon.sum())
        kl_sum += float(kl.sum())
        if progress is not None:
            progress(start + len(batch))
    n = len(x)
    return ElboResult(loss=(recon_sum + kl_sum) / n, recon=recon_sum / n, kl=kl_sum / n, n=n)


def iwae_log_likelihood(
    engine: Engine,
    x: np.ndarray,
    k: int,
    *,
    y: np.ndarray | None = None,
    seed: int = 0,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """L_k(x) per example (nats, float64): the k-sample importance-weighted bound on log p(x).

    Examples go in batches of ``batch_size``; the k samples in chunks sized so that one decoder
    call holds at most IWAE_CHUNK_VALUES numbers. The logsumexp over chunks is streamed in
    float64 (running maximum and rescaled sum), so memory does not grow with k. ``progress``, if
    given, is called after each batch with the number of examples finished so far (cumulative).
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
            w = engine.log_weights(batch, (mu, logvar), eps, labels)
            new_max = np.maximum(running_max, w.max(axis=0))
            running_sum = running_sum * np.exp(running_max - new_max) + np.exp(w - new_max).sum(0)
            running_max = new_max
        out[start : start + n] = running_max + np.log(running_sum) - math.log(k)
        if progress is not None:
            progress(start + n)
    return out


@dataclass(frozen=True)
class LatentStatistics:
    """How the posterior uses each latent dimension, over a data set.

    ``mean_variance[k]`` = Cov_x(E_q[z_k|x]), the variance across examples of the posterior
    mean; dimension k is *active* when it exceeds ``threshold`` (Burda et al., 2015: 0.01).
    ``kl_per_dim[k]`` = mean over examples of KL(q(z_k|x) ‖ p(z_k)), nats (for N(0, I):
    ½(e^logvar_k + mu_k² − 1 − logvar_k)).
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
    progress: Callable[[int], None] | None = None,
) -> LatentStatistics:
    """Active units and KL per latent dimension over ``x`` (posterior means, in batches).

    ``progress``, if given, is called after each batch with the number of examples finished so
    far (cumulative, ending at ``len(x)``).
    """
    mus, kls = [], []
    for start in range(0, len(x), batch_size):
        stop = start + batch_size
        mu, logvar = (
            a.astype(np.float64) for a in engine.encode(x[start:stop], _part(y, start, stop))
        )
        mus.append(mu)
        kls.append(engine.prior.kl_per_dim(mu, logvar))
        if progress is not None:
            progress(start + len(mu))
    mu_all = np.concatenate(mus)
    return LatentStatistics(
        mean_variance=mu_all.var(axis=0),
        kl_per_dim=np.concatenate(kls).mean(axis=0),
        threshold=threshold,
    )
