"""Measuring a trained VAE on data, in nats per example."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vaekit.engines import Engine


@dataclass(frozen=True)
class ElboResult:
    """Mean −ELBO = recon + KL over ``n`` examples, nats per example (lower is better)."""

    loss: float
    recon: float
    kl: float
    n: int


def evaluate_elbo(
    engine: Engine, x: np.ndarray, *, seed: int = 0, batch_size: int = 1000
) -> ElboResult:
    """The single-sample ELBO estimate over ``x``, in batches, with eps drawn from ``seed``.

    recon = −log p(x|z) at z = mu + exp(logvar/2)·eps, kl = KL(q(z|x) ‖ N(0, I)) in closed form;
    a fixed seed makes the number comparable between epochs and engines.
    """
    rng = np.random.default_rng(seed)
    recon_sum = kl_sum = 0.0
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        eps = rng.standard_normal((len(batch), engine.config.latent_dim), dtype=np.float32)
        recon, kl = engine.elbo_terms(batch, eps)
        recon_sum += float(recon.sum())
        kl_sum += float(kl.sum())
    n = len(x)
    return ElboResult(loss=(recon_sum + kl_sum) / n, recon=recon_sum / n, kl=kl_sum / n, n=n)
