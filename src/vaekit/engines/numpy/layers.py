"""Dense layers and activations, forward and backward, in plain NumPy.

A dense layer computes a = h·Wᵀ + b with W stored (out, in), as ``torch.nn.Linear`` does. Its
backward pass, given g = ∂L/∂a, is ∂L/∂W = gᵀ·h, ∂L/∂b = Σ_rows g and ∂L/∂h = g·W.

Each activation is a pair: ``forward(a) -> h`` and ``backward(a, h, g) -> g ⊙ h'(a)``, with the
derivative written from whichever of a or h gives it most cheaply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vaekit.objectives import sigmoid, softplus

LEAKY_SLOPE = 0.01  # as torch.nn.functional.leaky_relu


@dataclass(frozen=True)
class Activation:
    """h = forward(a); backward(a, h, g) = g ⊙ dh/da."""

    forward: Callable[[np.ndarray], np.ndarray]
    backward: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


ACTIVATIONS: dict[str, Activation] = {
    # relu: h = max(a, 0); h' = [a > 0]
    "relu": Activation(lambda a: np.maximum(a, 0), lambda a, h, g: g * (a > 0)),
    # elu: h = a (a > 0), e^a − 1 (a ≤ 0); h' = 1 (a > 0), h + 1 (a ≤ 0)
    "elu": Activation(
        lambda a: np.where(a > 0, a, np.expm1(np.minimum(a, 0))),
        lambda a, h, g: g * np.where(a > 0, 1, h + 1),
    ),
    # tanh: h' = 1 − h²
    "tanh": Activation(np.tanh, lambda a, h, g: g * (1 - h * h)),
    # sigmoid: h' = h(1 − h)
    "sigmoid": Activation(sigmoid, lambda a, h, g: g * h * (1 - h)),
    # softplus: h' = σ(a)
    "softplus": Activation(softplus, lambda a, h, g: g * sigmoid(a)),
    # leaky relu: h = a (a > 0), 0.01·a (a ≤ 0); h' = 1 or 0.01
    "leaky_relu": Activation(
        lambda a: np.where(a > 0, a, LEAKY_SLOPE * a),
        lambda a, h, g: g * np.where(a > 0, 1, LEAKY_SLOPE).astype(a.dtype),
    ),
}


def dense(h: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """a = h·Wᵀ + b for a batch h (N, in), W (out, in), b (out,)."""
    a = h @ weight.T
    a += bias
    return a


def dense_backward(
    g: np.ndarray, h: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(∂L/∂W, ∂L/∂b, ∂L/∂h) of a = h·Wᵀ + b, given g = ∂L/∂a."""
    return g.T @ h, g.sum(axis=0), g @ weight
