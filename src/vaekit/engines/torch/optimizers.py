"""Adam for the torch engine: ``torch.optim.Adam(fused=True)``'s own kernel, without its class.

Adam (Kingma & Ba, 2015), per parameter θ with gradient g at step t:

    m ← β1·m + (1 − β1)·g,      v ← β2·v + (1 − β2)·g²,
    θ ← θ − lr · (m / (1 − β1^t)) / (√(v / (1 − β2^t)) + ε).

The update is ``torch._fused_adam_``, the kernel ``torch.optim.Adam(fused=True)`` calls, so the
steps are bit for bit those of torch's class. The class itself is not used because building the
first ``torch.optim.Optimizer`` of a process imports ``torch._dynamo`` (its methods are wrapped
to be skipped by the compiler, and the wrapper imports the compiler on first call): 1.6 s on an
AMD EPYC (AVX-512), 4.7 s on a slower one, before the first step of every ``vaekit`` command
that trains, against 0.005 s for everything else a :class:`TorchEngine` builds. vaekit never
compiles, so it has no use for that import. SGD, rarely chosen, stays ``torch.optim.SGD``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, which vaekit has always used


class FusedAdam:
    """Adam over ``params`` with one fused multithreaded kernel per step (CPU and CUDA alike).

    Mirrors the parts of ``torch.optim.Optimizer`` that vaekit uses: ``param_groups`` (one group;
    its ``"lr"`` is read at each step), ``state`` (per parameter: ``step``, a float32 scalar
    tensor on the parameter's device, ``exp_avg`` = m, ``exp_avg_sq`` = v; created at the
    parameter's first step), ``zero_grad`` and ``step``. A ``found_inf`` attribute (a float
    tensor, 1.0 or 0.0), when set, makes the kernel skip the update and the step count stay
    where it was, as in torch's class.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, eps: float) -> None:
        self.param_groups: list[dict[str, Any]] = [{"params": list(params), "lr": lr, "eps": eps}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        self.found_inf: torch.Tensor | None = None

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every gradient (vaekit always sets them anew by one backward pass)."""
        if not set_to_none:
            raise ValueError("FusedAdam only drops gradients (set_to_none=True)")
        for param in self.param_groups[0]["params"]:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        group = self.param_groups[0]
        with_grad = [p for p in group["params"] if p.grad is not None]
        if not with_grad:
            return
        for param in with_grad:
            if param not in self.state:
                self.state[param] = {
                    "step": torch.zeros((), dtype=torch.float32, device=param.device),
                    "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
                }
        states = [self.state[p] for p in with_grad]
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(
            with_grad,
            [p.grad for p in with_grad],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            steps,
            amsgrad=False,
            lr=group["lr"],
            beta1=BETAS[0],
            beta2=BETAS[1],
            weight_decay=0.0,
            eps=group["eps"],
            maximize=False,
            grad_scale=None,
            found_inf=self.found_inf,
        )
        if self.found_inf is not None:  # a skipped step is not counted
            torch._foreach_sub_(steps, [self.found_inf] * len(steps))
