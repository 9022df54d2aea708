"""The from-scratch NumPy engine: forward, backward and optimizers by hand, no autograd.

``NumpyEngine`` plugs into vaekit's training loop (``--engine numpy``); it needs NumPy only (no
torch). The small learner API built on it is :class:`vaekit.api.scratch.VAE`.
"""

from vaekit.engines.numpy.engine import NumpyEngine

__all__ = ["NumpyEngine"]
