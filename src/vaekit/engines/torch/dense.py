"""Dense layers whose matrix multiplies run on the faster float32 GEMM of the CPU.

``torch.nn.Linear`` multiplies with MKL's sgemm, whose kernels are the fast ones on Intel's CPUs
only; oneDNN picks its kernels by instruction set (docs/benchmarks.md, "Speed", has the
measurements). :class:`Dense` is an ``nn.Linear`` (same parameters, same names) whose forward
and backward passes call oneDNN's matmul for a float32 CPU matrix where PyTorch has oneDNN and
the CPU is not Intel's (:func:`prefers_onednn`: a fixed rule, not a timing, so a run and its
resume multiply alike), and ``F.linear`` otherwise; without gradients, oneDNN on every CPU
(:func:`uses_onednn`).

For a = h·Wᵀ + b and g = ∂L/∂a:  ∂L/∂h = g·W,  ∂L/∂W = gᵀ·h,  ∂L/∂b = Σ_rows g; each product
is one oneDNN matmul on strided views (no transposed copies).

On top of it: :class:`GatedDense`, a gated layer of two such products, and
:class:`HiddenLayers`, an MLP's hidden layers with their activation (pointwise or gated).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@functools.cache
def onednn_matmul_available() -> bool:
    """True when this PyTorch build has oneDNN's pointwise linear and it multiplies correctly."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        a = torch.arange(6.0).reshape(2, 3)
        w = torch.arange(12.0).reshape(4, 3)
        return bool(torch.equal(op(a, w, None, "none", [], ""), a @ w.T))
    except (AttributeError, RuntimeError):
        return False


def cpu_vendor(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's vendor string (``GenuineIntel``, ``AuthenticAMD`` …) from Linux's cpuinfo, or
    "" where there is none to read."""
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip() == "vendor_id":
                    return value.strip()
    except OSError:
        pass
    return ""


@functools.cache
def prefers_onednn() -> bool:
    """Whether float32 CPU training products go to oneDNN: where it works and the CPU is not
    Intel's (where MKL, behind ``F.linear``, runs its own best kernels)."""
    return onednn_matmul_available() and cpu_vendor() != "GenuineIntel"


def onednn_linear(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, then: str = "none"
) -> torch.Tensor:
    """h·Wᵀ (+ b) by oneDNN, and ``then`` (``relu``, ``sigmoid``) applied to each value as the
    product writes it; ``weight`` may be any strided (out, in) view."""
    return torch.ops.mkldnn._linear_pointwise(h, weight, bias, then, [], "")


class _OneDnnLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias):
        ctx.save_for_backward(h, weight)
        return onednn_linear(h, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        h, weight = ctx.saved_tensors
        grad = grad.contiguous()
        d_h = onednn_linear(grad, weight.T, None) if ctx.needs_input_grad[0] else None
        d_w = onednn_linear(grad.T, h.T, None) if ctx.needs_input_grad[1] else None
        d_b = grad.sum(dim=0) if ctx.needs_input_grad[2] else None
        return d_h, d_w, d_b


def onednn_fits(h: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether oneDNN can multiply this input by this weight: a non-empty float32 CPU matrix by a
    float32 weight, and PyTorch has oneDNN."""
    return (
        h.device.type == "cpu"
        and h.dtype == torch.float32
        and weight.dtype == torch.float32
        and h.dim() == 2
        and h.shape[0] > 0
        and onednn_matmul_available()
    )


def uses_onednn(h: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :class:`Dense` sends this input and weight to oneDNN: in training where it is
    preferred (:func:`prefers_onednn`); without gradients (scores, samples) wherever it fits,
    because a row's score must not depend on the rest of its batch, and oneDNN's does not from
    two rows on, while MKL's does for small batches."""
    return onednn_fits(h, weight) and (prefers_onednn() or not torch.is_grad_enabled())


def linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """h·Wᵀ (+ b) for the hand-written training step (no autograd): oneDNN where it is preferred
    (:func:`prefers_onednn`), ``F.linear`` otherwise; either may be any strided view."""
    if onednn_fits(h, weight) and prefers_onednn():
        return onednn_linear(h, weight, bias)
    return F.linear(h, weight, bias)


class Dense(nn.Linear):
    """``nn.Linear`` with oneDNN matrix multiplies on the CPU (see the module docstring)."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if uses_onednn(h, self.weight):
            return _OneDnnLinear.apply(h, self.weight, self.bias)
        return F.linear(h, self.weight, self.bias)


#: The pointwise hidden activations by name (``config.limits.POINTWISE_ACTIVATIONS``), shared by
#: every torch network.
ACTIVATIONS = {
    "relu": F.relu,
    "elu": F.elu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "leaky_relu": F.leaky_relu,  # negative slope 0.01
}


class _Gated:
    """A gated dense layer (Dauphin et al., 2017; Tomczak & Welling, 2018):

        h_out = (h·Wᵀ + b) ⊙ sigmoid(h·Vᵀ + c),

    (N, out) for h (N, in). W and b are the layer's own ``weight`` and ``bias`` (its class's
    product), V and c its ``gate``'s, a second dense layer of the same shape: a gated layer
    takes two (in → out) products where a pointwise one takes one. The sigmoid gate replaces
    the activation: the layer is not followed by one."""

    gate: nn.Module

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return super().forward(h) * torch.sigmoid(self.gate(h))


class GatedDense(_Gated, Dense):
    """A gated layer (:class:`_Gated`'s formula) of :class:`Dense` products; parameters
    ``weight``, ``bias``, ``gate.weight``, ``gate.bias``."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)
        self.gate = Dense(in_features, out_features)


class GatedLinear(_Gated, nn.Linear):
    """A :class:`GatedDense` whose products are ``nn.Linear``'s, as the ONNX export, which has
    no operator for oneDNN's, turns it (and its gate) into."""


class HiddenLayers(nn.ModuleList):
    """The hidden layers of an MLP over ``sizes`` (its input width first): each
    h ← act(h·Wᵀ + b) for a pointwise ``activation`` (:data:`ACTIVATIONS`), or a
    :class:`GatedDense` for ``gated``. The encoder's, the decoder's and those of the networks
    between two stochastic layers are built here. Layer i's parameters are ``i.weight`` and
    ``i.bias`` (and ``i.gate.*`` when gated), as :func:`vaekit.model.parameters.shapes` names
    them under ``….hidden``."""

    def __init__(self, sizes: Sequence[int], activation: str) -> None:
        gated = activation == "gated"
        super().__init__((GatedDense if gated else Dense)(a, b) for a, b in pairwise(sizes))
        self.act = None if gated else ACTIVATIONS[activation]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for layer in self:
            if self.act is F.relu and not torch.is_grad_enabled() and uses_onednn(h, layer.weight):
                h = onednn_linear(h, layer.weight, layer.bias, "relu")  # no pass of its own
            else:
                h = layer(h) if self.act is None else self.act(layer(h))
        return h
