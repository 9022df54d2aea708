"""The PyTorch engine: the VAE as an ``nn.Module`` and the engine that trains it.

``TorchEngine`` and ``VAE`` are imported on first use, so that ``vaekit.engines.torch.distributed``
(torchrun's environment) can be read without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vaekit.engines.torch.engine import TorchEngine
    from vaekit.engines.torch.model import VAE


def __getattr__(name: str) -> Any:
    """``TorchEngine`` and ``VAE``, imported (with torch) when first asked for."""
    if name == "TorchEngine":
        from vaekit.engines.torch.engine import TorchEngine

        return TorchEngine
    if name == "VAE":
        from vaekit.engines.torch.model import VAE

        return VAE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["VAE", "TorchEngine"]
