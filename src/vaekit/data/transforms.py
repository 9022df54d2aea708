"""Binarizing grey levels in [0, 1] (scaling is :mod:`vaekit.data.scaling`).

Binarization protocols (how the literature reports Bernoulli-likelihood results):

- ``none``: keep grey levels in [0, 1] (the PyTorch-example protocol);
- ``threshold``: ``x > 0.5``, deterministic;
- ``static``: one Bernoulli sample with P(1) = x, drawn once with a fixed seed, so every run
  trains and evaluates on the same binary images;
- ``dynamic``: a fresh Bernoulli sample each time (typically per batch), from the generator
  the caller passes in.
"""

from __future__ import annotations

import numpy as np

from vaekit.config.limits import BINARIZATIONS
from vaekit.errors import ConfigError
from vaekit.model.objectives import bernoulli_draw

STATIC_SEED = 20240601


def binarize(x: np.ndarray, mode: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Binarize grey levels ``x`` in [0, 1] according to ``mode`` (see the module docstring).

    ``none`` returns ``x`` unchanged; the other modes return a float32 array of zeros and
    ones. ``static`` uses ``rng`` when given, else a generator seeded with ``STATIC_SEED``;
    ``dynamic`` requires ``rng``. An unknown mode raises :class:`ConfigError`.
    """
    if mode not in BINARIZATIONS:
        raise ConfigError(f"binarize must be one of {', '.join(BINARIZATIONS)}, not {mode!r}.")
    if mode == "none":
        return x
    if mode == "threshold":
        return (x > 0.5).astype(np.float32)
    if mode == "static" and rng is None:
        rng = np.random.default_rng(STATIC_SEED)
    if rng is None:
        raise ValueError("binarize mode 'dynamic' needs a numpy.random.Generator as rng.")
    return bernoulli_draw(x, rng.random(np.shape(x), dtype=np.float32))
