"""The VAE's loss terms, written out once per array library (NumPy, then PyTorch).

Units: nats per example, summed over dimensions. Every function sums over the last axis and
returns one value per example: inputs are flat, (N, D) for data and (N, K) for latents, or
(S, N, D) for S decoder outputs per example, with the data x of shape (N, D) shared by the S
samples (broadcast, never copied).

- KL(q(z|x) ‖ N(0, I)) = ½ Σ_k (exp(logvar_k) + mu_k² − 1 − logvar_k)
- Bernoulli:  −log p(x|z) = Σ_d softplus(l_d) − x_d·l_d   (l = decoder logits; x may be grey levels)
- Gaussian:   −log p(x|z) = Σ_d (x_d − m_d)² / (2σ_d²) + log σ_d + ½·log 2π
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)


# --- NumPy -------------------------------------------------------------------------------------


def kl_standard_normal(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """KL(N(mu, diag e^logvar) ‖ N(0, I)) = ½ Σ (e^logvar + mu² − 1 − logvar), nats per example."""
    return 0.5 * np.sum(np.exp(logvar) + mu * mu - 1.0 - logvar, axis=1)


def bernoulli_nll(logits: np.ndarray, x: np.ndarray) -> np.ndarray:
    """−log Bernoulli(x; sigmoid(l)) = Σ max(l, 0) − x·l + log(1 + e^−|l|), stable for any l."""
    return np.sum(np.maximum(logits, 0.0) - x * logits + np.log1p(np.exp(-np.abs(logits))), axis=-1)


def gaussian_nll(mean: np.ndarray, x: np.ndarray, log_sigma: np.ndarray | float) -> np.ndarray:
    """−log N(x; mean, σ²I) = Σ (x − mean)²/(2σ²) + log σ + ½ log 2π, with σ = e^log_sigma.

    ``log_sigma`` is a scalar (one σ) or has shape (D,) (one σ per dimension).
    """
    inv_var = np.exp(-2.0 * np.asarray(log_sigma, dtype=mean.dtype))
    sq = (x - mean) ** 2 * (0.5 * inv_var)
    return np.sum(sq + (np.asarray(log_sigma, dtype=mean.dtype) + 0.5 * LOG_2PI), axis=-1)


# --- PyTorch (same formulas; autograd differentiates them) --------------------------------------


def kl_per_dim_torch(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """½ (e^logvar + mu² − 1 − logvar) for each example and latent dimension, (N, K)."""
    return 0.5 * (logvar.exp() + mu * mu - 1.0 - logvar)


def kl_standard_normal_torch(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """See :func:`kl_standard_normal`."""
    return kl_per_dim_torch(mu, logvar).sum(dim=1)


def free_bits_torch(kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Σ_k max(λ, KL_k): the KL term with each dimension's batch-mean KL held at ≥ λ nats
    (Kingma et al., 2016); λ = 0 gives the plain KL."""
    return kl_per_dim.clamp(min=free_bits).sum() if free_bits > 0 else kl_per_dim.sum()


def bernoulli_nll_torch(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """See :func:`bernoulli_nll` (PyTorch's fused, stable BCE-with-logits)."""
    target = x.expand_as(logits)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(dim=-1)


def gaussian_nll_torch(
    mean: torch.Tensor, x: torch.Tensor, log_sigma: torch.Tensor | float
) -> torch.Tensor:
    """See :func:`gaussian_nll`; ``log_sigma`` is a float (fixed σ) or a learned tensor."""
    log_sigma = torch.as_tensor(log_sigma, dtype=mean.dtype, device=mean.device)
    sq = (x - mean).square() * (0.5 * torch.exp(-2.0 * log_sigma))
    return (sq + (log_sigma + 0.5 * LOG_2PI)).sum(dim=-1)
