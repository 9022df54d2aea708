"""Measuring a trained VAE on data, in nats per example, through any engine.

The engine computes the model's terms (its ``elbo_terms`` and ``log_weights``); this module
batches the data, draws the noise from a seed (so numbers are comparable) and streams the sums.

- ELBO(x) = −recon − KL with recon = −log p(x|z), z = mu + exp(logvar/2)·eps, and the KL to the
  prior in closed form (one eps per example).
- Importance-weighted bound (IWAE, Burda et al. 2015) with k samples z_i ~ q(z|x):
  log p(x) ≥ L_k(x) = logsumexp_i [log p(x|z_i) + log p(z_i) − log q(z_i|x)] − log k.
  L_1 is the single-sample ELBO estimate (with a Monte-Carlo KL); L_k rises towards log p(x) as k
  grows, and L_5000 is the "test NLL" papers report (as −L_k).

The noise of L_k is one stream per row, seeded by (``seed``, a hash of the row's bytes), and the
batches and chunks it goes in are sized from k and the model alone: an input draws the same z_i
in any batch, at any position, in any process, alone or not, so that every path (``vaekit
evaluate``, ``vaekit score``, ``VAE.score_samples``, the explorer) gives one input one L_k.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vaekit.engines import Engine
from vaekit.model.priors import has_closed_form_kl

#: Upper bound on the numbers held by one decoder call during IWAE (samples × examples × D).
#: 2**18 float32 values (1 MB) keep each chunk's logits in the cores' own caches, where the
#: likelihood's pass over them runs fastest: k = 5000 of the reference model reached 61% of the
#: GEMM roofline against 41% with 2**21 (8 MB, which had itself run 1.8× faster than 2**24) and
#: 43% with 2**17, whose products are too small (2-core AMD EPYC, AVX-512;
#: ``benchmarks/run.py``).
IWAE_CHUNK_VALUES = 2**18
#: Upper bound on the noise one batch of IWAE draws at once (examples × k × noise dimensions):
#: 2**24 float32 values, 64 MB.
IWAE_NOISE_VALUES = 2**24


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
        eps = rng.standard_normal((len(batch), engine.config.noise_dim), dtype=np.float32)
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

    Examples go in batches of at most ``batch_size`` (fewer for a large k, so that a batch's
    noise stays within IWAE_NOISE_VALUES); the k samples in chunks sized so that one decoder
    call holds at most IWAE_CHUNK_VALUES numbers (at least one sample of the batch's rows).
    Each row's noise comes from its own generator (:func:`row_generators`), and the engines'
    products give a row the same numbers whatever other rows share them (from two rows on: a
    lone row goes with a copy of itself), so a row's L_k does not depend on the rest of x. The
    logsumexp over chunks is streamed in float64 (running maximum and rescaled sum), so memory
    does not grow with k. ``progress``, if given, is called after each batch with the number of
    examples finished so far (cumulative).
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    config = engine.config
    width = max(config.input_dim, config.noise_dim)
    rows = max(1, min(batch_size, IWAE_NOISE_VALUES // (k * config.noise_dim)))
    out = np.empty(len(x))
    for start in range(0, len(x), rows):
        batch = np.asarray(x[start : start + rows])
        labels = _part(y, start, start + rows)
        if len(batch) == 1:  # one row is multiplied by another kernel, rounded otherwise
            batch = np.concatenate([batch, batch])
            labels = None if labels is None else np.concatenate([labels, labels])
        chunk = max(1, min(k, IWAE_CHUNK_VALUES // (len(batch) * width)))
        bound = _bound(engine, batch, labels, k, chunk, seed)
        done = min(start + rows, len(x))
        out[start:done] = bound[: done - start]
        if progress is not None:
            progress(done)
    return out


def _bound(
    engine: Engine, batch: np.ndarray, labels: np.ndarray | None, k: int, chunk: int, seed: int
) -> np.ndarray:
    """L_k of each row of ``batch``: log-weights of its own k noise draws, ``chunk`` samples
    per decoder call, log-sum-exp'd as they stream by."""
    mu, logvar = engine.encode(batch, labels)
    noise = np.empty((len(batch), k, engine.config.noise_dim), dtype=np.float32)
    for row, generator in zip(noise, row_generators(batch, seed), strict=True):
        generator.standard_normal(dtype=np.float32, out=row)  # drawn in place, no stacking
    running_max = np.full(len(batch), -np.inf)
    running_sum = np.zeros(len(batch))
    for done in range(0, k, chunk):
        eps = noise[:, done : done + chunk].transpose(1, 0, 2).astype(mu.dtype)  # (chunk, rows, ·)
        w = engine.log_weights(batch, (mu, logvar), eps, labels)
        new_max = np.maximum(running_max, w.max(axis=0))
        running_sum = running_sum * np.exp(running_max - new_max) + np.exp(w - new_max).sum(0)
        running_max = new_max
    return running_max + np.log(running_sum) - math.log(k)


def row_generators(x: np.ndarray, seed: int) -> list[np.random.Generator]:
    """One generator per row of ``x``, seeded by (``seed``, the first 8 bytes of the BLAKE2b
    digest of the row's bytes): the same row draws the same numbers in every batch and process
    (Python's ``hash`` of bytes changes between processes)."""
    return [np.random.default_rng((seed, int.from_bytes(_digest(row), "little"))) for row in x]


def _digest(row: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(row).tobytes(), digest_size=8).digest()


def outlier_threshold(scores: np.ndarray, fraction: float) -> float:
    """The level that ``fraction`` of the calibration ``scores`` (log p(x), nats) falls below:
    the ⌊fraction·(n−1)⌋-th smallest of the n scores (numpy's ``lower`` quantile, a score
    itself). An input is an outlier when its score is strictly below it, so at most
    fraction·(n−1) of the calibration scores are: their false-positive rate is ≤ ``fraction``."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("a threshold needs at least one score")
    return float(np.quantile(scores, fraction, method="lower"))


@dataclass(frozen=True)
class LatentStatistics:
    """How the posterior uses each latent dimension, over a data set.

    ``mean_variance[k]`` = Cov_x(E_q[z_k|x]), the variance across examples of the posterior
    mean; dimension k is *active* when it exceeds ``threshold`` (Burda et al., 2015: 0.01).
    ``kl_per_dim[k]`` = mean over examples of KL(q(z_k|x) ‖ p(z_k[|y])), nats (for N(0, I):
    ½(e^logvar_k + mu_k² − 1 − logvar_k)), where the model has it in closed form
    (``config.closed_form_kl``: the standard or class prior, one stochastic layer, no flow); NaN
    for every k where it has not (a mixture, the VampPrior, a flow, two layers).
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
    prior = engine.prior
    closed = engine.config.closed_form_kl and has_closed_form_kl(prior)
    for start in range(0, len(x), batch_size):
        stop = start + batch_size
        labels = _part(y, start, stop)
        mu, logvar = (a.astype(np.float64) for a in engine.encode(x[start:stop], labels))
        mus.append(mu)
        kls.append(prior.kl_per_dim(mu, logvar, labels) if closed else np.full(mu.shape, np.nan))
        if progress is not None:
            progress(start + len(mu))
    mu_all = np.concatenate(mus)
    return LatentStatistics(
        mean_variance=mu_all.var(axis=0),
        kl_per_dim=np.concatenate(kls).mean(axis=0),
        threshold=threshold,
    )
