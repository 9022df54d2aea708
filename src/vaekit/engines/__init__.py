"""Engines: interchangeable implementations of one VAE (see :mod:`vaekit.engines.protocol`)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from vaekit.config.settings import ModelConfig
from vaekit.engines.protocol import Engine, EngineOptions, StepMetrics
from vaekit.errors import ConfigError
from vaekit.model import parameters

if TYPE_CHECKING:
    from vaekit.engines.torch.distributed import Group


def build_engine(
    config: ModelConfig,
    engine: str = "torch",
    options: EngineOptions | None = None,
    *,
    group: Group | None = None,
    **overrides: Any,
) -> Engine:
    """A freshly initialised engine (``torch`` or ``numpy``) for ``config``.

    ``options`` (seed, device, precision, optimizer, lr, momentum, adam_eps; default
    :class:`EngineOptions`) may be given whole (``EngineOptions.of(train_config)``) or field by
    field as keywords (``seed=1, lr=0.01``). ``group``: this process's place among torchrun's
    processes; the torch engine joins the process group and trains data-parallel in it (the only
    engine that can).
    """
    options = replace(options or EngineOptions(), **overrides)
    parameters.check_size(config)  # before anything of that size is allocated
    if engine == "torch":
        from vaekit.engines.torch import TorchEngine

        return TorchEngine(config, options, group=group)
    if group is not None:
        raise ConfigError(
            "distributed training (torchrun) uses PyTorch's DistributedDataParallel: "
            "use --engine torch"
        )
    if engine == "numpy":
        from vaekit.engines.numpy import NumpyEngine

        return NumpyEngine(config, options)
    raise ConfigError(f"engine must be torch or numpy; got {engine!r}")


__all__ = ["Engine", "EngineOptions", "StepMetrics", "build_engine"]
