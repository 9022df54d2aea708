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
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from vaekit.config.settings import ModelConfig
from vaekit.engines import Engine
from vaekit.engines.memory import keep_freed_memory
from vaekit.engines.protocol import Posterior
from vaekit.engines.threads import cpu_threads, one_thread_in_this_thread, usable_cores
from vaekit.model import objectives
from vaekit.model.priors import has_closed_form_kl

#: Upper bound on the numbers held by one decoder call during IWAE (samples × examples × D).
#: 2**22 float32 values (16 MB): each chunk is one worker's task, and k = 5000 samples of one
#: 784-pixel image fit in one, so each image's fixed work (the signed weights of
#: :mod:`vaekit.engines.torch.bernoulli_head`) and the interpreter's are paid once: a call of
#: 5,000 samples took 7.06 µs a sample against 7.96 for calls of 1,250 (2**20 values; one
#: thread, a 2-core AMD EPYC with AVX-512).
IWAE_CHUNK_VALUES = 2**22
#: Upper bound on the noise one batch of IWAE draws at once (examples × k × noise dimensions):
#: 2**24 float32 values, 64 MB.
IWAE_NOISE_VALUES = 2**24
#: Examples per batch of IWAE where k is small enough (:func:`iwae_batch_rows`).
IWAE_BATCH_SIZE = 500


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
    batch_size: int = IWAE_BATCH_SIZE,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """L_k(x) per example (nats, float64): the k-sample importance-weighted bound on log p(x).

    Examples go in batches of at most ``batch_size`` (fewer for a large k, so that a batch's
    noise stays within IWAE_NOISE_VALUES); the k samples in decoder calls of at most
    IWAE_CHUNK_VALUES numbers each (:func:`iwae_chunks`: all k samples of several rows, or a
    share of one row's, at least one sample of one row).
    Each row's noise comes from its own generator (:func:`row_generators`), and the engines'
    products give a row the same numbers whatever other rows share them (from two rows on: a
    lone row goes with a copy of itself), so a row's L_k does not depend on the rest of x. The
    logsumexp over a row's k log-weights is taken in float64 once they are all in. On the CPU
    the chunks go to ``threads`` workers (None: one per core this process may use), each
    computing with one thread of its own, so the number is the same for any count; they stream
    across batches (:func:`_workers`), and each draws its own rows' noise (``_Batch.noise``).
    ``progress``, if given, is called after each batch with the number of examples finished so
    far (cumulative).
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    config = engine.config
    rows = iwae_batch_rows(config, k, batch_size)

    def batch(start: int, chunks: list[Chunk]) -> _Batch:
        """The batch from ``start``, with its decoder calls, encoded here as the calls reach it."""
        part = np.asarray(x[start : start + rows])
        labels = _part(y, start, start + rows)
        if len(part) == 1:  # one row is multiplied by another kernel, rounded otherwise
            part = np.concatenate([part, part])
            labels = None if labels is None else np.concatenate([labels, labels])
        return _Batch(
            start=start,
            size=min(rows, len(x) - start),
            x=part,
            y=labels,
            posterior=engine.encode(part, labels),
            generators=row_generators(part, seed),
            chunks=chunks,
            k=k,
            noise_dim=config.noise_dim,
        )

    def log_weights(call: tuple[_Batch, Chunk]) -> tuple[_Batch, Chunk]:
        """One decoder call: its chunk's log-weights, written into the batch's."""
        owner, chunk = call
        chunk_rows, samples = chunk
        posterior = tuple(part[chunk_rows] for part in owner.posterior)
        labels = None if owner.y is None else owner.y[chunk_rows]
        w = engine.log_weights(owner.x[chunk_rows], posterior, owner.noise(chunk), labels)
        owner.w[chunk_rows, samples] = w.T
        return call

    starts = range(0, len(x), rows)
    plans = [iwae_chunks(config, k, min(rows, len(x) - start)) for start in starts]
    out = np.empty(len(x))
    with _workers(engine, threads if sum(map(len, plans)) > 1 else 1) as map_in_order:
        batches = map(batch, starts, plans)
        every_call = ((owner, chunk) for owner in batches for chunk in owner.chunks)
        for owner, chunk in map_in_order(log_weights, every_call):
            if chunk is owner.chunks[-1]:  # in order: the batch's other calls are done too
                bound = objectives.logsumexp(owner.w, axis=1) - math.log(k)
                out[owner.start : owner.start + owner.size] = bound[: owner.size]
                if progress is not None:
                    progress(owner.start + owner.size)
    return out


def iwae_batch_rows(config: ModelConfig, k: int, batch_size: int = IWAE_BATCH_SIZE) -> int:
    """Examples per batch of L_k: ``batch_size``, or fewer for a large k, so that a batch's
    noise (examples × k × noise dimensions) stays within IWAE_NOISE_VALUES; at least one."""
    return max(1, min(batch_size, IWAE_NOISE_VALUES // (k * config.noise_dim)))


#: A chunk of L_k's work: the rows of a batch and the samples of theirs that one decoder call takes.
Chunk = tuple[slice, slice]


def iwae_chunks(config: ModelConfig, k: int, rows: int) -> list[Chunk]:
    """The decoder calls for a batch of ``rows`` examples, as (rows, samples) slices of it, each
    within IWAE_CHUNK_VALUES numbers (samples × rows × the wider of the input and the noise):

    - where that holds all k samples of two rows or more, each call takes all k samples of as
      many rows as fit. A call of one row would make products of another kind, rounded
      otherwise: a lone example goes with its copy (the batch's row 1), and a last lone row
      joins the call before it (one row over);
    - otherwise each call takes one row and an equal share of its k samples (as equal as k
      allows), so that an input's samples are one product of many rows
      (:mod:`vaekit.engines.torch.bernoulli_head`).

    The calls depend on k, the model and the batch's size alone."""
    width = max(config.input_dim, config.noise_dim)
    per_call = max(1, IWAE_CHUNK_VALUES // width)  # samples × rows
    if 2 * k <= per_call:
        step = per_call // k
        starts = list(range(0, rows, step))
        if len(starts) > 1 and rows - starts[-1] == 1:
            starts.pop()
        stops = [*starts[1:], max(rows, 2)]
        return [(slice(a, b), slice(0, k)) for a, b in zip(starts, stops, strict=True)]
    share = math.ceil(k / math.ceil(k / per_call))
    return [
        (slice(row, row + 1), slice(first, min(first + share, k)))
        for row in range(rows)
        for first in range(0, k, share)
    ]


@dataclass(eq=False)
class _Batch:
    """A batch of L_k: its rows, their posteriors and generators, its decoder calls, and the
    log-weights ``w`` (rows, k) that the calls fill in."""

    start: int  # its first row in x
    size: int  # its rows in x (a lone row's copy aside)
    x: np.ndarray
    y: np.ndarray | None
    posterior: Posterior
    generators: list[np.random.Generator]  # one per row (row_generators)
    chunks: list[Chunk]  # its decoder calls (iwae_chunks)
    k: int
    noise_dim: int
    w: np.ndarray = field(init=False)
    _shared: dict[int, np.ndarray] = field(init=False, default_factory=dict)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        computed = max(rows.stop for rows, _ in self.chunks)  # a lone row's copy, or not
        self.w = np.empty((computed, self.k))  # a row's k in a row: summed alike in any batch

    def noise(self, chunk: Chunk) -> np.ndarray:
        """A call's noise, (samples, rows, noise_dim) float32: all k draws of each of its rows,
        drawn by the call itself, or a share of one row's k, drawn once by the first of its
        calls and kept for the others."""
        rows, samples = chunk
        if len(range(self.k)[samples]) < self.k:
            return self._row(rows.start)[samples, None]
        noise = np.empty((rows.stop - rows.start, self.k, self.noise_dim), dtype=np.float32)
        for row, generator in zip(noise, self.generators[rows], strict=True):
            generator.standard_normal(dtype=np.float32, out=row)  # drawn in place, no stacking
        return np.ascontiguousarray(noise.transpose(1, 0, 2))

    def _row(self, row: int) -> np.ndarray:
        with self._lock:  # the calls of a row's shares run at once on different workers
            if row not in self._shared:
                noise = np.empty((self.k, self.noise_dim), dtype=np.float32)
                self.generators[row].standard_normal(dtype=np.float32, out=noise)
                self._shared[row] = noise
            return self._shared[row]


#: ``map``: the function's results over the items, in order.
Map = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


@contextmanager
def _workers(engine: Engine, threads: int | None) -> Iterator[Map]:
    """A map in order over the decoder calls: for an engine that computes on the CPU, with
    ``threads`` ≥ 2 (None: one per core this process may use), the calls go to that many worker
    threads with one thread each for their products, a few calls ahead of the one whose result
    is awaited, so that a batch's first calls start while its last ones finish; with one, they
    are computed here with one thread. Every call's products thus use one thread, and the
    numbers do not depend on the count. An engine off the CPU computes here, in order.

    Independent calls on single-threaded workers never wait for one another, where one call's
    products over several threads meet at every operation."""
    count = usable_cores() if threads is None else threads
    if not engine.on_cpu:
        yield map
        return
    keep_freed_memory()  # every call allocates the same megabytes: no page faults for them
    if count < 2:
        with cpu_threads(1):
            yield map
        return
    single = {"initializer": one_thread_in_this_thread}
    with (
        cpu_threads(1),
        ThreadPoolExecutor(count, thread_name_prefix="vaekit-iwae", **single) as pool,
    ):
        yield partial(_in_order, pool, 2 * count)


def _in_order(
    executor: Executor, ahead: int, fn: Callable[[Any], Any], items: Iterable[Any]
) -> Iterator[Any]:
    """fn(item) for each item, in order, computed by ``executor`` up to ``ahead`` items ahead of
    the one the caller awaits. The calls not yet started are cancelled if the caller stops."""
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(executor.submit(fn, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


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
