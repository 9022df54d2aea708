"""Dense layers and activations, forward and backward, for NumPy arrays and torch tensors.

A dense layer computes a = h·Wᵀ + b with W stored (out, in), as ``torch.nn.Linear`` does. Its
backward pass, given g = ∂L/∂a, is ∂L/∂W = gᵀ·h, ∂L/∂b = Σ_rows g and ∂L/∂h = g·W. Every product
is :func:`linear` (a·bᵀ on strided views, no transposed copies): NumPy's matmul for arrays, the
torch engine's (oneDNN on the CPU where PyTorch has it) for tensors.

Each activation is a pair: ``forward(a) -> h`` and ``backward(a, h, g) -> g ⊙ h'(a)``, with the
derivative written from whichever of a or h gives it most cheaply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vaekit.model.objectives import Array, namespace, sigmoid, softplus

LEAKY_SLOPE = 0.01  # as torch.nn.functional.leaky_relu


@dataclass(frozen=True)
class Activation:
    """h = forward(a); backward(a, h, g) = g ⊙ dh/da."""

    forward: Callable[[Array], Array]
    backward: Callable[[Array, Array, Array], Array]


ACTIVATIONS: dict[str, Activation] = {
    # relu: h = max(a, 0); h' = [a > 0]
    "relu": Activation(lambda a: a.clip(min=0), lambda a, h, g: g * (a > 0)),
    # elu: h = a (a > 0), e^a − 1 (a ≤ 0); h' = 1 (a > 0), h + 1 (a ≤ 0)
    "elu": Activation(
        lambda a: namespace(a).where(a > 0, a, namespace(a).expm1(a.clip(max=0))),
        lambda a, h, g: namespace(a).where(a > 0, g, g * (h + 1)),
    ),
    # tanh: h' = 1 − h²
    "tanh": Activation(lambda a: namespace(a).tanh(a), lambda a, h, g: g * (1 - h * h)),
    # sigmoid: h' = h(1 − h)
    "sigmoid": Activation(sigmoid, lambda a, h, g: g * h * (1 - h)),
    # softplus: h' = σ(a)
    "softplus": Activation(softplus, lambda a, h, g: g * sigmoid(a)),
    # leaky relu: h = a (a > 0), 0.01·a (a ≤ 0); h' = 1 or 0.01
    "leaky_relu": Activation(
        lambda a: namespace(a).where(a > 0, a, LEAKY_SLOPE * a),
        lambda a, h, g: namespace(a).where(a > 0, g, LEAKY_SLOPE * g),
    ),
}


def linear(a: Array, b: Array, bias: Array | None = None) -> Array:
    """a·bᵀ (+ bias) for a (M, K) and b (N, K), either of them any strided view (a transpose)."""
    if namespace(a) is np:
        out = a @ b.T
        if bias is not None:
            out += bias
        return out
    from vaekit.engines.torch.dense import linear as torch_linear  # a tensor: torch is loaded

    return torch_linear(a, b, bias)


def dense(h: Array, weight: Array, bias: Array) -> Array:
    """a = h·Wᵀ + b for a batch h (N, in), W (out, in), b (out,)."""
    return linear(h, weight, bias)


def dense_backward(
    g: Array, h: Array, weight: Array, input_grad: bool = True
) -> tuple[Array, Array, Array | None]:
    """(∂L/∂W, ∂L/∂b, ∂L/∂h) of a = h·Wᵀ + b, given g = ∂L/∂a; ∂L/∂h is None without
    ``input_grad`` (an input that is data needs none, and its product is skipped)."""
    return linear(g.T, h.T), g.sum(axis=0), linear(g, weight.T) if input_grad else None
