"""The from-scratch NumPy engine: forward, backward and optimizers by hand, no autograd.

``NumpyEngine`` plugs into vaekit's training loop (``--engine numpy``); ``VAE`` is the small
learner API built on it (``fit``, ``encode``, ``reconstruct``, ``generate`` and the estimator's
``transform``, ``sample``, ``score_samples``, ``save``, ``load``).
"""

from vaekit.engines.numpy.engine import NumpyEngine
from vaekit.engines.numpy.learner import VAE

__all__ = ["VAE", "NumpyEngine"]
