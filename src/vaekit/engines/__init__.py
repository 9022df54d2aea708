"""Engines: interchangeable implementations of one VAE (see :mod:`vaekit.engines.protocol`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vaekit.config import ModelConfig
from vaekit.engines.protocol import Engine, StepMetrics
from vaekit.errors import ConfigError

if TYPE_CHECKING:
    from vaekit.engines.torch.distributed import Group


def build_engine(
    config: ModelConfig,
    engine: str = "torch",
    *,
    seed: int = 0,
    device: str = "auto",
    optimizer: str = "adam",
    lr: float = 1e-3,
    momentum: float = 0.0,
    adam_eps: float = 1e-8,
    group: Group | None = None,
) -> Engine:
    """A freshly initialised engine (``torch`` or ``numpy``) for ``config``, seeded by ``seed``;
    ``group``: train data-parallel in this (joined) process group, torch engine only."""
    options = dict(
        seed=seed, device=device, optimizer=optimizer, lr=lr, momentum=momentum, adam_eps=adam_eps
    )
    if engine == "torch":
        from vaekit.engines.torch import TorchEngine

        return TorchEngine(config, group=group, **options)
    if group is not None:
        raise ConfigError(
            "distributed training (torchrun) uses PyTorch's DistributedDataParallel: "
            "use --engine torch"
        )
    if engine == "numpy":
        from vaekit.engines.numpy import NumpyEngine

        return NumpyEngine(config, **options)
    raise ConfigError(f"engine must be torch or numpy; got {engine!r}")


__all__ = ["Engine", "StepMetrics", "build_engine"]
