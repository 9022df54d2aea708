"""The VAE's loss terms, each written once, for NumPy arrays and torch tensors alike.

Units: nats per example, summed over dimensions. Every per-example function sums over the last
axis: inputs are flat, (N, D) for data and (N, K) for latents, or (S, N, D) for S decoder outputs
per example, with the data x of shape (N, D) shared by the S samples (broadcast, never copied).
The functions use the array's own library (:func:`namespace`), so torch is never imported here:
the NumPy engine runs where torch is not installed.

- KL(N(mu, diag e^logvar) ‖ N(0, I)) per dimension = ½ (e^logvar_k + mu_k² − 1 − logvar_k), and
  to N(m, e^lv_p): ½ (lv_p − logvar + (e^logvar + (mu − m)²)·e^−lv_p − 1)
- a mixture's log-density log Σ_c w_c N(z; m_c, diag e^lv_c), as matrix products
- the reparameterization z = mu + e^(logvar/2)·eps, and Bernoulli draws 1[u < p]
- log q(z|x) = −½ Σ_k (eps_k² + logvar_k + log 2π) for z = mu + e^(logvar/2)·eps
- the total correlation of the aggregate posterior by minibatch-weighted sampling (β-TCVAE)
- importance log-weight: log w = log p(x|z) + log p(z) − log q(z|x)
- likelihoods (:data:`LIKELIHOODS`), from the decoder output ``out``:
  Bernoulli  −log p(x|z) = Σ_d softplus(l_d) − x_d·l_d   (l = out, logits; x may be grey levels)
  Gaussian   −log p(x|z) = Σ_d (x_d − m_d)² / (2σ_d²) + log σ_d + ½·log 2π   (m = out)
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

LOG_2PI = math.log(2.0 * math.pi)

#: A NumPy array or a torch tensor (the functions below take either).
Array = Any
#: log σ of a Gaussian likelihood: a float (fixed σ), or an array of shape (1,) or (D,) (learned).
LogSigma = Any


def namespace(a: Array) -> ModuleType:
    """The array library of ``a``: ``torch`` for a tensor (already imported, since a tensor
    exists), NumPy for anything else."""
    return sys.modules["torch"] if type(a).__module__.startswith("torch") else np


def as_array(value: Array | float, like: Array) -> Array:
    """``value`` as an array of ``like``'s library, dtype (and device); a tensor of the right kind
    (a learned parameter) is returned as is, so gradients still flow into it."""
    if namespace(like) is np:
        return np.asarray(value, dtype=like.dtype)
    return sys.modules["torch"].as_tensor(value, dtype=like.dtype, device=like.device)


def sigmoid(a: Array) -> Array:
    """σ(a) = 1 / (1 + e^−a) = ½·(1 + tanh(a/2)): one vectorised tanh, no overflow for any a."""
    return 0.5 * (namespace(a).tanh(0.5 * a) + 1.0)


def softplus(a: Array) -> Array:
    """log(1 + e^a) = max(a, 0) + log(1 + e^−|a|), stable for any a."""
    xp = namespace(a)
    return a.clip(min=0.0) + xp.log1p(xp.exp(-abs(a)))


# --- drawing: the reparameterization and Bernoulli draws ------------------------------------------


def reparameterize(mu: Array, logvar: Array, eps: Array) -> Array:
    """z = mu + e^(logvar/2)·eps with eps ~ N(0, I): a draw from N(mu, diag e^logvar) that is a
    differentiable function of mu and logvar (the reparameterization trick, Kingma & Welling,
    2014, §2.4); broadcast shape."""
    return mu + namespace(logvar).exp(0.5 * logvar) * eps


def bernoulli_draw(p: Array, u: Array) -> Array:
    """1 where u < p, else 0, float32: a draw from Bernoulli(p) for u ~ U[0, 1) (dynamic and
    static binarization of grey levels p in [0, 1])."""
    draw = u < p
    return draw.astype(np.float32) if namespace(draw) is np else draw.float()


# --- the latent terms ---------------------------------------------------------------------------


def kl_per_dim(mu: Array, logvar: Array) -> Array:
    """KL(N(mu, e^logvar) ‖ N(0, 1)) for each example and latent dimension,
    ½ (e^logvar + mu² − 1 − logvar), nats, shape of mu: :func:`kl_per_dim_to` N(0, 1) (the same
    floating-point operations: the prior's mean 0 and log-variance 0 change no bit)."""
    return kl_per_dim_to(mu, logvar, 0.0, 0.0)


def kl_per_dim_grad(mu: Array, logvar: Array) -> tuple[Array, Array]:
    """(∂/∂mu, ∂/∂logvar) of :func:`kl_per_dim`, elementwise: (mu, ½·(e^logvar − 1)); for the
    hand-written backward pass."""
    return kl_per_dim_to_grad(mu, logvar, 0.0, 0.0)[:2]


def kl_per_dim_to(mu: Array, logvar: Array, prior_mu: Array, prior_logvar: Array) -> Array:
    """KL(N(mu, e^lv) ‖ N(m, e^lv_p)) for each example and latent dimension, nats, broadcast shape:
    ½ (lv_p − lv + (e^lv + (mu − m)²)·e^−lv_p − 1) with lv = ``logvar``, m = ``prior_mu`` and
    lv_p = ``prior_logvar`` (written ½ ((e^lv + (mu − m)²)·e^−lv_p − 1 − lv + lv_p))."""
    xp = namespace(logvar)
    scale = xp.exp(-as_array(prior_logvar, logvar))
    diff = mu - prior_mu
    return 0.5 * ((xp.exp(logvar) + diff * diff) * scale - 1.0 - logvar + prior_logvar)


def kl_per_dim_to_grad(
    mu: Array, logvar: Array, prior_mu: Array | float, prior_logvar: Array | float
) -> tuple[Array, Array, Array, Array]:
    """(∂/∂mu, ∂/∂logvar, ∂/∂m, ∂/∂lv_p) of :func:`kl_per_dim_to`, elementwise, broadcast shape:
    ((mu − m)·e^−lv_p, ½·(e^(lv − lv_p) − 1), −(mu − m)·e^−lv_p,
    ½·(1 − (e^lv + (mu − m)²)·e^−lv_p)); for the hand-written backward pass."""
    xp = namespace(logvar)
    scale = xp.exp(-as_array(prior_logvar, logvar))
    diff = mu - prior_mu
    d_mu = diff * scale
    d_prior_logvar = 0.5 * (1.0 - (xp.exp(logvar) + diff * diff) * scale)
    return d_mu, 0.5 * xp.expm1(logvar - prior_logvar), -d_mu, d_prior_logvar


def free_bits(kl_means: Array, free_bits: float) -> tuple[Array, Array | None]:
    """(Σ_k max(λ, KL_k), mask) for the batch-mean KL of each latent dimension, KL_k (K,), nats.

    The first is the KL term with free bits λ (Kingma et al., 2016): each dimension's KL is held at
    ≥ λ nats. ``mask`` = [KL_k > λ] marks the dimensions whose KL still gets a gradient (the others
    contribute the constant λ). λ = 0 gives (Σ_k KL_k, None): the plain KL, no mask.
    """
    if free_bits <= 0:
        return kl_means.sum(), None
    return kl_means.clip(min=free_bits).sum(), kl_means > free_bits


def gaussian_log_density_per_dim(eps: Array, logvar: Array) -> Array:
    """log N(z_k; mu_k, e^logvar_k) = −½ (eps_k² + logvar_k + log 2π) for each latent dimension,
    nats, broadcast shape, with the standardised eps = (z − mu)·e^(−logvar/2)."""
    return -0.5 * (eps * eps + logvar + LOG_2PI)


def gaussian_log_density(eps: Array, logvar: Array) -> Array:
    """log q(z|x) = log N(z; mu, diag e^logvar) = −½ Σ_k (eps_k² + logvar_k + log 2π), nats, written
    with the standardised eps = (z − mu)·e^(−logvar/2); eps (…, N, K), logvar (N, K)."""
    return gaussian_log_density_per_dim(eps, logvar).sum(-1)


def gaussian_log_density_at(z: Array, mean: Array, logvar: Array) -> Array:
    """log N(z; mean, diag e^logvar), nats, summed over the last axis: :func:`gaussian_log_density`
    of the standardised eps = (z − mean)·e^(−logvar/2); z (…, N, K), mean and logvar (N, K)."""
    return gaussian_log_density((z - mean) * namespace(logvar).exp(-0.5 * logvar), logvar)


def logsumexp(a: Array, axis: int = -1) -> Array:
    """log Σ exp(a) along ``axis``, stable: max + log Σ exp(a − max)."""
    if namespace(a) is not np:
        return a.logsumexp(axis)
    top = a.max(axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return (top + np.log(np.exp(a - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def mixture_log_density(z: Array, log_weights: Array, means: Array, logvars: Array) -> Array:
    """log Σ_c w_c N(z; m_c, diag e^lv_c), nats, for z (…, K) against C components: log_weights
    (C,) = log w_c, means and logvars (C, K); shape (…).

    Each weighted component's log-density, log w_c − ½ Σ_k ((z_k − m_ck)² e^−lv_ck + lv_ck
    + log 2π), is expanded into one matrix product and a bias,
    [z², z]·[−½ e^−lv, m e^−lv]ᵀ + (log w_c − ½ Σ_k (m² e^−lv + lv)_ck − ½ K log 2π),
    so only (…, 2K) and (…, C) arrays are formed, never (…, C, K), and the (…, C) one is passed
    over twice before the log-sum-exp (an importance-weighted evaluation's hot spot)."""
    xp = namespace(logvars)
    precision = xp.exp(-logvars)
    coefficients = xp.concatenate([-0.5 * precision, means * precision], axis=-1)  # (C, 2K)
    constant = (means * means * precision + logvars).sum(-1) + means.shape[-1] * LOG_2PI
    log_joint = xp.concatenate([z * z, z], axis=-1) @ coefficients.T
    log_joint += log_weights - 0.5 * constant
    return logsumexp(log_joint, axis=-1)


def total_correlation(z: Array, mu: Array, logvar: Array, dataset_size: int) -> Array:
    """TC_i = log q(z_i) − Σ_k log q(z_ik), nats per example (M,), estimated by minibatch-weighted
    sampling (Chen et al., 2018) for z_i ~ q(z|x_i), rows i of z (M, K), against the posteriors
    N(mu_j, diag e^logvar_j) of a whole minibatch of B examples, mu and logvar (B, K), drawn from
    a data set of N = ``dataset_size`` examples:

        log q(z_i)   ≈ logsumexp_j log q(z_i|x_j)   − log(N·B),
        log q(z_ik)  ≈ logsumexp_j log q(z_ik|x_j)  − log(N·B)   (each latent dimension k).

    Its mean over the data estimates the total correlation KL(q(z) ‖ Π_k q(z_k)) of the aggregate
    posterior q(z) = (1/N) Σ_n q(z|x_n), the part of the averaged KL(q(z|x) ‖ N(0, I)) that
    β-TCVAE weighs by β (index-code MI + TC + dimension-wise KL: Chen et al., 2018, eq. 2).
    Forms (M, B, K) arrays.
    """
    xp = namespace(z)
    eps = (z[:, None, :] - mu[None]) * xp.exp(-0.5 * logvar[None])
    per_dim = gaussian_log_density_per_dim(eps, logvar[None])  # log q(z_ik|x_j), (M, B, K)
    log_nb = math.log(dataset_size * mu.shape[0])
    log_joint = logsumexp(per_dim.sum(-1), axis=1) - log_nb
    log_marginals = (logsumexp(per_dim, axis=1) - log_nb).sum(-1)
    return log_joint - log_marginals


def log_weights(recon: Array, log_prior: Array, log_posterior: Array, beta: float = 1.0) -> Array:
    """log w = log p(x|z) + β·(log p(z) − log q(z|x)), nats, shape of ``recon``.

    ``recon`` = −log p(x|z), ``log_prior`` = log p(z), ``log_posterior`` = log q(z|x), each
    (S, N) for S draws z ~ q(z|x) per example. β = 1 gives the importance weights of the IWAE
    bound L_k = logsumexp_i log w_i − log k (Burda et al., 2015).
    """
    return beta * (log_prior - log_posterior) - recon


# --- likelihoods --------------------------------------------------------------------------------


def bernoulli_nll(logits: Array, x: Array, log_sigma: LogSigma = None) -> Array:
    """−log Bernoulli(x; σ(l)) = Σ softplus(l) − x·l, stable for any l."""
    return (softplus(logits) - x * logits).sum(-1)


def bernoulli_nll_torch(logits: Array, x: Array, log_sigma: LogSigma = None) -> Array:
    """:func:`bernoulli_nll` by PyTorch: its fused, stable BCE-with-logits kernel where a gradient
    flows, else (evaluation) :func:`bernoulli_nll_by_products`."""
    torch = sys.modules["torch"]
    if not (torch.is_grad_enabled() and logits.requires_grad):
        return bernoulli_nll_by_products(logits, x)
    target = x.expand_as(logits)
    return torch.nn.functional.binary_cross_entropy_with_logits(
        logits, target, reduction="none"
    ).sum(-1)


#: Factors per product in :func:`bernoulli_nll_by_products`: each σ(|l|) is in [½, 1), so 126 of
#: them multiply to at least 2^−126, float32's smallest normal number.
SIGMOID_PRODUCT_GROUP = 126


def bernoulli_nll_by_products(logits: Array, x: Array) -> Array:
    """Σ_d softplus(l_d) − x_d·l_d (tensors, no gradient) with one sigmoid per element and one
    logarithm per SIGMOID_PRODUCT_GROUP elements, nats per example:

        softplus(l) − x·l = (½ − x)·l + ½·|l| − log σ(|l|),
        Σ_d log σ(|l_d|) = Σ_groups log Π_group σ(|l_d|).

    It equals the fused kernel within float32 rounding, in four passes over the logits instead
    of its six and a logarithm each (``benchmarks/run.py --only evaluation`` measures it).
    """
    torch = sys.modules["torch"]
    if logits.dtype in (torch.bfloat16, torch.float16):  # products of 126 need float32's bits
        logits = logits.float()
    terms = torch.mul(logits, 0.5 - x.to(logits.dtype))  # one buffer for every pass
    linear_part = terms.sum(-1)
    magnitude = torch.abs(logits, out=terms)
    linear_part += 0.5 * magnitude.sum(-1)
    sigmoid = torch.sigmoid(magnitude, out=terms)
    return linear_part - group_products(sigmoid, SIGMOID_PRODUCT_GROUP).log().sum(-1)


def group_products(values: Array, group: int) -> Array:
    """The products of the last axis's values in consecutive groups of ``group`` (the last
    group the rest), (…, ⌈D / group⌉), tensors: Σ_d log v_d = Σ log of them, one logarithm a
    group."""
    torch = sys.modules["torch"]
    width = values.shape[-1]
    whole = width - width % group
    products = values[..., :whole].unflatten(-1, (-1, group)).prod(-1)
    if whole < width:
        products = torch.cat([products, values[..., whole:].prod(-1, keepdim=True)], dim=-1)
    return products


def bernoulli_grad(logits: Array, x: Array, log_sigma: LogSigma = None) -> tuple:
    """(∂/∂l of the per-element −log p, None) = (σ(l) − x, None): Bernoulli has no σ."""
    grad = sigmoid(logits)
    grad -= x
    return grad, None


def gaussian_nll(mean: Array, x: Array, log_sigma: LogSigma) -> Array:
    """−log N(x; mean, σ²I) = Σ (x − mean)²/(2σ²) + log σ + ½ log 2π, with σ = e^log_sigma.

    ``log_sigma`` is a float (one fixed σ) or has shape (1,) or (D,) (learned, one σ or one per
    dimension).
    """
    log_sigma = as_array(log_sigma, mean)
    sq = (x - mean) ** 2 * (0.5 * namespace(mean).exp(-2.0 * log_sigma))
    return (sq + (log_sigma + 0.5 * LOG_2PI)).sum(-1)


def gaussian_grad(mean: Array, x: Array, log_sigma: LogSigma) -> tuple:
    """(∂/∂mean of the per-element −log p, ∂/∂log σ summed over the rows, or None for a fixed σ
    (a float)).

    ∂/∂m_d = (m_d − x_d)/σ_d²;  ∂/∂log σ_d = 1 − (x_d − m_d)²/σ_d², summed to log σ's shape.
    """
    inv_var = namespace(mean).exp(-2.0 * as_array(log_sigma, mean))
    resid = mean - x
    grad = resid * inv_var
    if isinstance(log_sigma, float):
        return grad, None
    per_dim = (1.0 - resid * resid * inv_var).sum(axis=0)
    return grad, per_dim.sum().reshape(1) if log_sigma.shape == (1,) else per_dim


#: The smallest calibrated σ: a decoder that reconstructs a batch exactly must not make log σ −∞.
MIN_CALIBRATED_SIGMA = 1e-3


def calibrated_log_sigma(mean: Array, x: Array) -> Array:
    """log σ* of the Gaussian that fits a batch best: σ*² = mean over rows and dimensions of
    (x − mean)², the value that minimises Σ −log N(x; mean, σ²I) over one shared σ (Rybkin et al.,
    2021, "Simple and Effective VAE Training with Calibrated Decoders"), at least
    :data:`MIN_CALIBRATED_SIGMA`. Shape (1,); for arrays and tensors alike (no gradient flows
    through it in training: at the optimum ∂/∂σ is 0, so mean's gradient is the same)."""
    xp = namespace(mean)
    mse = ((x - mean) ** 2).mean().reshape(1)
    return 0.5 * xp.log(xp.maximum(mse, xp.full_like(mse, MIN_CALIBRATED_SIGMA**2)))


#: The weight of each step's σ*² in the stored one: a running mean over about ten steps.
CALIBRATION_WEIGHT = 0.1


def running_log_sigma(stored: Array, batch: Array, weight: float = CALIBRATION_WEIGHT) -> Array:
    """log σ of the running mean σ² ← (1 − w)·σ² + w·σ*²: what evaluation and sampling use, the
    batch's best σ* (:func:`calibrated_log_sigma`) averaged over recent steps, so that a held-out
    score does not swing with the last batch's fit."""
    xp = namespace(stored)
    return 0.5 * xp.log((1 - weight) * xp.exp(2 * stored) + weight * xp.exp(2 * batch))


@dataclass(frozen=True)
class Likelihood:
    """p(x|z) from the decoder output ``out`` (shape of x, or (S, N, D) sharing x (N, D)).

    - ``nll(out, x, log_sigma)``: −log p(x|z) per example, nats, for arrays and tensors alike;
    - ``torch_nll``: the same by a fused torch kernel, where one exists (used for tensors);
    - ``mean(out)``: the mean of p(x|z) (what a decoded image shows);
    - ``grad(out, x, log_sigma)``: for the hand-written backward pass, (∂(−log p)/∂out per
      element, ∂(−log p)/∂log σ summed over the rows or None).
    """

    nll_formula: Callable[[Array, Array, LogSigma], Array]
    mean: Callable[[Array], Array]
    grad: Callable[[Array, Array, LogSigma], tuple]
    torch_nll: Callable[[Array, Array, LogSigma], Array] | None = None

    def nll(self, out: Array, x: Array, log_sigma: LogSigma = None) -> Array:
        """−log p(x|z) per example, nats (the torch kernel for tensors, where there is one)."""
        if self.torch_nll is not None and namespace(out) is not np:
            return self.torch_nll(out, x, log_sigma)
        return self.nll_formula(out, x, log_sigma)


#: The likelihoods by their ModelConfig name.
LIKELIHOODS: dict[str, Likelihood] = {
    "bernoulli": Likelihood(bernoulli_nll, sigmoid, bernoulli_grad, bernoulli_nll_torch),
    "gaussian": Likelihood(gaussian_nll, lambda out: out, gaussian_grad),
}
