"""An inverse autoregressive flow on the posterior (Kingma et al., 2016).

z0 ~ N(mu, diag e^logvar) is pushed through T steps. Step t reads z and the encoder's last hidden
layer h through a MADE (Germain et al., 2015): masked dense layers whose output k depends only on
the z_j that come before k in the step's order (the order reverses from one step to the next).
With its outputs m (shift) and s (gate logits), σ = sigmoid(s),

    z ← σ ⊙ z + (1 − σ) ⊙ m,        log |det ∂z_new/∂z| = Σ_k log σ_k = −Σ_k softplus(−s_k),

the numerically stable form of the paper. The Jacobian of a step is triangular in its order with
diagonal σ, so the flow's log-determinant is the sum of the steps' and
log q(z_T|x) = log N(z0; mu, diag e^logvar) − Σ_t log |det ∂z_t/∂z_{t−1}|, nats.

Parameters are named as :func:`vaekit.model.parameters.shapes` says
(``flow.{t}.hidden.{i}``, ``flow.{t}.context``, ``flow.{t}.shift``, ``flow.{t}.gate``); the masks
follow from the sizes and are buffers outside the state dict.
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.config.settings import ModelConfig
from vaekit.engines.torch.dense import Dense

#: The gate's initial bias: σ = sigmoid(2) ≈ 0.88 at the start, so that each step starts near
#: the identity (Kingma et al. suggest +1 or +2).
GATE_BIAS = 2.0


def made_degrees(order: torch.Tensor, hidden: tuple[int, ...]) -> list[torch.Tensor]:
    """MADE degrees: ``order`` (K,) gives input k its degree (a permutation of 1…K); hidden unit j
    of every layer gets degree 1 + j mod (K − 1) (0 when K = 1: it reads no z)."""
    k = len(order)
    degrees = [order]
    for units in hidden:
        j = torch.arange(units)
        degrees.append(j % (k - 1) + 1 if k > 1 else torch.zeros(units, dtype=torch.long))
    return degrees


def made_masks(order: torch.Tensor, hidden: tuple[int, ...]) -> list[torch.Tensor]:
    """(out, in) 0/1 masks of the hidden layers and of the heads: a hidden unit of degree d reads
    units of degree ≤ d; output k (degree order[k]) reads hidden units of degree < order[k]. So
    output k depends only on the z_j with order[j] < order[k]."""
    degrees = made_degrees(order, hidden)
    masks = [(d_out[:, None] >= d_in[None, :]).float() for d_in, d_out in pairwise(degrees)]
    masks.append((order[:, None] > degrees[-1][None, :]).float())
    return masks


class MaskedDense(nn.Linear):
    """A dense layer whose weight is multiplied by a fixed 0/1 mask (out, in)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask, persistent=False)
        with torch.no_grad():
            self.weight.mul_(mask)  # stored weights show the structure; masked ones get no gradient

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.weight * self.mask, self.bias)


class IAFStep(nn.Module):
    """One step: a MADE over z (K) with hidden layers ``hidden``, h (N, ``context``) added to its
    first hidden layer, ELU activations, and the heads ``shift`` (m) and ``gate`` (s)."""

    def __init__(self, order: torch.Tensor, hidden: tuple[int, ...], context: int) -> None:
        super().__init__()
        *layer_masks, head_mask = made_masks(order, hidden)
        self.hidden = nn.ModuleList(MaskedDense(m) for m in layer_masks)
        self.context = Dense(context, hidden[0], bias=False)
        self.shift = MaskedDense(head_mask)
        self.gate = MaskedDense(head_mask)
        with torch.no_grad():
            self.gate.bias.fill_(GATE_BIAS)

    def shift_and_gate(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The MADE's outputs (m, s), each (…, N, K), for z (…, N, K) and h (N, H) (h broadcasts
        over the leading sample axes); m_k and s_k read only the z_j before k in the order."""
        a = F.elu(self.hidden[0](z) + self.context(h))
        for layer in self.hidden[1:]:
            a = F.elu(layer(a))
        return self.shift(a), self.gate(a)

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(σ ⊙ z + (1 − σ) ⊙ m, Σ_k log σ_k) for z (…, N, K) and h (N, H)."""
        m, s = self.shift_and_gate(z, h)
        # 1 − σ(s) = σ(−s), exact where σ(s) rounds to 1
        return torch.sigmoid(s) * z + torch.sigmoid(-s) * m, -F.softplus(-s).sum(-1)


class InverseAutoregressiveFlow(nn.Module):
    """``config.flow_steps`` :class:`IAFStep` s over z (``config.latent_dim``), conditioned on the
    encoder's last hidden layer (``config.encoder_width``), registered as ``0``, ``1``, …; step t
    orders the variables 1…K when t is even and K…1 when t is odd."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        forward_order = torch.arange(1, config.latent_dim + 1)
        for t in range(config.flow_steps):
            order = forward_order if t % 2 == 0 else forward_order.flip(0)
            self.add_module(str(t), IAFStep(order, config.flow_hidden, config.encoder_width))

    @property
    def steps(self) -> list[IAFStep]:
        """The steps, in the order they apply."""
        return list(self.children())

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_T, log |det ∂z_T/∂z0|): z0 (…, N, K) and h (N, H) → z_T (…, N, K) and the
        log-determinant (…, N), nats."""
        log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for step in self.steps:
            z, step_log_det = step(z, h)
            log_det = log_det + step_log_det
        return z, log_det
