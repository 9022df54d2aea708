"""The from-scratch NumPy engine: forward, backward and optimizers by hand, no autograd."""

from vaekit.engines.numpy.engine import NumpyEngine

__all__ = ["NumpyEngine"]
