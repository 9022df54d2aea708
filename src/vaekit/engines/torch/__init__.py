"""The PyTorch engine: the VAE as an ``nn.Module`` (VAEModule) and the engine that trains it.

``TorchEngine`` and ``VAEModule`` are imported on first use, so that
``vaekit.engines.torch.distributed`` (torchrun's environment) can be read without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vaekit.engines.torch.engine import TorchEngine
    from vaekit.engines.torch.model import VAEModule


def __getattr__(name: str) -> Any:
    """``TorchEngine`` and ``VAEModule``, imported (with torch) when first asked for."""
    if name == "TorchEngine":
        from vaekit.engines.torch.engine import TorchEngine

        return TorchEngine
    if name == "VAEModule":
        from vaekit.engines.torch.model import VAEModule

        return VAEModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["VAEModule", "TorchEngine"]
