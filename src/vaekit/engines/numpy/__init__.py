"""The from-scratch NumPy engine: forward, backward and optimizers by hand, no autograd.

``NumpyEngine`` plugs into vaekit's training loop (``--engine numpy``); it needs NumPy only (no
torch). The NumPy tutorial's class built on it is :class:`vaekit.api.scratch.ScratchVAE`.
"""

from vaekit.engines.numpy.engine import NumpyEngine

__all__ = ["NumpyEngine"]
