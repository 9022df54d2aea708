"""log p(x) of a two-layer model with one latent unit a layer, by brute-force quadrature: the
density that the hierarchy tests hold the IWAE bound to."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch.distributions import Normal


def quadrature_log_px(
    model, x: np.ndarray, log_p2: Callable[[torch.Tensor], torch.Tensor]
) -> np.ndarray:
    """log p(x) = log ∫∫ p(x|z1) p(z1|z2) p(z2) dz1 dz2 for K1 = K2 = 1, float64: the sum over a
    grid of step h on [−12, 12]², times h². ``log_p2``: log p(z2) of points (G, 1), as (G,)."""
    grid = torch.linspace(-12.0, 12.0, 2401, dtype=torch.float64)
    h = float(grid[1] - grid[0])
    xt = torch.from_numpy(x).double()
    with torch.no_grad():
        z1 = grid[:, None, None].expand(-1, len(x), 1)
        log_px_z1 = -model.reconstruction_nll(xt, z1).T  # (N, G1)
        mu1, logvar1 = model.top.decoder(grid[:, None])  # (G2, 1) each
        log_p1 = Normal(mu1.T, torch.exp(0.5 * logvar1.T)).log_prob(grid[:, None])  # (G1, G2)
        joint = log_px_z1[:, :, None] + log_p1[None] + log_p2(grid[:, None])[None, None]
        return (torch.logsumexp(joint.flatten(1), dim=1) + 2 * math.log(h)).numpy()
