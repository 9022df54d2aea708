"""Engines: interchangeable implementations of one VAE (see :mod:`vaekit.engines.protocol`)."""

from __future__ import annotations

from vaekit.config import ModelConfig
from vaekit.engines.protocol import Engine, StepMetrics
from vaekit.errors import ConfigError


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
) -> Engine:
    """A freshly initialised engine (``torch`` or ``numpy``) for ``config``, seeded by ``seed``."""
    options = dict(
        seed=seed, device=device, optimizer=optimizer, lr=lr, momentum=momentum, adam_eps=adam_eps
    )
    if engine == "torch":
        from vaekit.engines.torch import TorchEngine

        return TorchEngine(config, **options)
    if engine == "numpy":
        from vaekit.engines.numpy import NumpyEngine

        return NumpyEngine(config, **options)
    raise ConfigError(f"engine must be torch or numpy; got {engine!r}")


__all__ = ["Engine", "StepMetrics", "build_engine"]
