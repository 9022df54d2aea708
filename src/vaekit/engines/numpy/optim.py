"""Optimizers, written out, updating a dict of parameter arrays in place.

Both follow PyTorch's update rules exactly, so the two engines train alike:

- SGD with momentum μ:  v ← μ·v + g (v = g at the first step),  θ ← θ − lr·v   (μ = 0: θ ← θ − lr·g)
- Adam (β1 = 0.9, β2 = 0.999, ε = 1e-8), step t from 1:
      m ← β1·m + (1 − β1)·g,   v ← β2·v + (1 − β2)·g²
      θ ← θ − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
"""

from __future__ import annotations

import math

import numpy as np

Params = dict[str, np.ndarray]


class SGD:
    """Stochastic gradient descent, optionally with (PyTorch-style) momentum."""

    slots = ("momentum",)

    def __init__(self, lr: float, momentum: float = 0.0) -> None:
        self.lr, self.momentum = lr, momentum
        self.state: dict[str, dict[str, np.ndarray]] = {"momentum": {}}
        self.step_count = 0

    def step(self, params: Params, grads: Params) -> None:
        self.step_count += 1
        velocity = self.state["momentum"]
        for name, g in grads.items():
            if self.momentum:
                v = velocity.get(name)
                if v is None:
                    velocity[name] = v = g.copy()
                else:
                    v *= self.momentum
                    v += g
                g = v
            params[name] -= self.lr * g


class Adam:
    """Adam (Kingma & Ba, 2015) with bias correction, as ``torch.optim.Adam``."""

    slots = ("exp_avg", "exp_avg_sq")

    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.lr, self.betas, self.eps = lr, betas, eps
        self.state: dict[str, dict[str, np.ndarray]] = {"exp_avg": {}, "exp_avg_sq": {}}
        self._scratch: dict[str, np.ndarray] = {}  # one preallocated buffer per parameter
        self.step_count = 0

    def step(self, params: Params, grads: Params) -> None:
        self.step_count += 1
        b1, b2 = self.betas
        t = self.step_count
        # θ −= (lr/(1−β1^t))·m/(√v/√(1−β2^t) + ε) = (lr·√(1−β2^t)/(1−β1^t))·m/(√v + ε·√(1−β2^t))
        root_correction = math.sqrt(1 - b2**t)
        step_size = self.lr * root_correction / (1 - b1**t)
        eps = self.eps * root_correction
        m_all, v_all = self.state["exp_avg"], self.state["exp_avg_sq"]
        for name, g in grads.items():
            if name not in m_all:
                m_all[name], v_all[name] = np.zeros_like(g), np.zeros_like(g)
            tmp = self._scratch.get(name)
            if tmp is None:
                tmp = self._scratch[name] = np.empty_like(g)
            m, v = m_all[name], v_all[name]
            m -= g  # m ← β1·m + (1 − β1)·g = β1·(m − g) + g, in place
            m *= b1
            m += g
            np.multiply(g, g, out=tmp)  # v ← β2·(v − g²) + g²
            v -= tmp
            v *= b2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp += eps
            np.divide(m, tmp, out=tmp)
            tmp *= step_size
            params[name] -= tmp
