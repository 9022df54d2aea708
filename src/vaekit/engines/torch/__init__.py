"""The PyTorch engine: the VAE as an ``nn.Module`` and the engine that trains it."""

from vaekit.engines.torch.engine import TorchEngine
from vaekit.engines.torch.model import VAE

__all__ = ["VAE", "TorchEngine"]
