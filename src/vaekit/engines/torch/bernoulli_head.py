"""The decoder's output layer and its Bernoulli likelihood in one product.

For logits l = h·Wᵀ + b, any x and a sign t_d = ±1 of each value (+1 where x_d ≥ ½):

    softplus(l) − x·l = −log σ(t·l) + c·l,   c = (1 + t)/2 − x

(for t = +1, softplus(−l) + l = softplus(l); for t = −1, −log σ(−l) = softplus(l)), so

    −log p(x|z) = Σ_d softplus(l_d) − x_d·l_d = −Σ_d log σ(t_d·l_d) + h·(Wᵀc) + b·c,

nats per example. The signs go into a copy of the weights, t_d·l_d = h·(t_d·W_d)ᵀ + t_d·b_d, one
copy per input that its samples share, and oneDNN's matmul applies σ to each value as it writes
it (a post-op): no logits are stored and read again. c is 0 wherever x is 0 or 1, so for binary
x each σ(t·l) is the value's likelihood, and for grey levels the rest is one product by the
vector Wᵀc, taken first, while h is still in the cache, and from the grey values' rows of W
alone. What is left is one pass, a product per group of :data:`GROUP` values and a
logarithm per group: Σ_d log σ(t_d·l_d) = Σ_groups log Π_group σ(t_d·l_d). A sample whose group
product falls below float32's smallest normal number (2^−126, where its digits start to go)
takes the formula on its logits instead (:func:`vaekit.model.objectives.bernoulli_nll_by_products`).
The two agree within float32 rounding.

Without gradients only (evaluation, scores), on the CPU, where PyTorch has oneDNN, and for
:data:`MIN_SAMPLES` or more samples of each input (k = 5000's evaluation, not k = 100's).
"""

from __future__ import annotations

import torch

from vaekit.engines.torch.dense import onednn_fits, onednn_linear
from vaekit.model.objectives import bernoulli_nll_by_products, group_products

#: Likelihoods per product: each group of 112 (a seventh of a 28 × 28 image) underflows only
#: where its values' −log p sum to more than 87 nats.
GROUP = 112
#: The fewest samples per input for which the product by input pays: each input has its own
#: signed weights and products, which fewer samples do not make up for. A decoder call and its
#: likelihood took 1.02 of the logits' time for 2,000 samples of 2 images, 0.97 for 2,674 and
#: 0.90 for 4,000 of one (the reference model, one thread, a 2-core AMD EPYC with AVX-512).
MIN_SAMPLES = 2500
#: float32's smallest normal number: a group product below it has lost digits.
SMALLEST_NORMAL = torch.finfo(torch.float32).tiny


def applies(z: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`bernoulli_nll` takes the decoder's work for latents z (S, N, K) and its last
    layer's ``weight``: without gradients, S ≥ MIN_SAMPLES samples of each input, and float32
    on the CPU where PyTorch has oneDNN."""
    return (
        not torch.is_grad_enabled()
        and z.dim() == 3
        and z.shape[0] >= MIN_SAMPLES
        and onednn_fits(z[:, 0], weight)
    )


def bernoulli_nll(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """−log p(x|z), (S, N), nats, for the last layer's input h (S, N, H) of S samples of each
    of the N inputs x (N, D), the layer's ``weight`` (D, H) and ``bias`` (D,): each input by
    its own product, so that a row's number does not depend on the other inputs."""
    nll = torch.empty(h.shape[:2], dtype=h.dtype, device=h.device)
    for n in range(h.shape[1]):
        nll[:, n] = _one_input(h[:, n], weight, bias, x[n])
    return nll


def _one_input(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """−log p(x|z), (S,), for the rows h (S, H) of one input x (D,) (the module docstring)."""
    up = x >= 0.5
    c = up.to(x.dtype) - x
    grey = c.nonzero().squeeze(1)
    if len(grey):  # h·(Wᵀc) + b·c first, while h is still in the cache; c is 0 off the grey
        nll = onednn_linear(h, (c[grey] @ weight[grey])[None], (bias[grey] @ c[grey])[None])
        nll = nll[:, 0]
    else:
        nll = torch.zeros(len(h), dtype=h.dtype)
    signs = torch.where(up, 1.0, -1.0)
    likelihoods = onednn_linear(h, weight * signs[:, None], bias * signs, "sigmoid")
    products = group_products(likelihoods, GROUP)
    nll -= products.log().sum(-1)
    if products.min() < SMALLEST_NORMAL:  # one pass for all rows, then the rows
        low = (products < SMALLEST_NORMAL).any(dim=-1).nonzero().squeeze(1)
        nll[low] = bernoulli_nll_by_products(onednn_linear(h[low], weight, bias), x)
    return nll
