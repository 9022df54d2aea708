"""Array transforms: scaling values to [0, 1] and binarizing them.

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

from vaekit.config import BINARIZATIONS
from vaekit.errors import ConfigError, DataError

STATIC_SEED = 20240601


def to_unit_range(x: np.ndarray, source: str) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 array, pixel values scaled to [0, 1].

    uint8 arrays, and arrays whose values lie in 0..255 with a maximum above 1, are divided
    by 255; arrays already in [0, 1] are only converted. Other real values (standardised
    features, say, for a Gaussian likelihood) are kept as they are; a Bernoulli likelihood
    refuses them when training starts. ``source`` names the data in errors: non-numeric
    values, an empty array, NaN or infinity raise :class:`DataError`.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{source} holds values of type {x.dtype}; numbers are needed.")
    if x.size == 0:
        raise DataError(f"{source} holds no values.")
    if x.dtype.kind == "f":
        _refuse_non_finite(x, source, "a NaN or infinite value")
    low, high = x.min(), x.max()
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(x, dtype=np.float32)
    _refuse_non_finite(out, source, "a value too large for float32 (beyond ±3.4e38)")
    if x.dtype == np.uint8 or (low >= 0 and 1 < high <= 255):
        out = out / np.float32(255)
    return out


def _refuse_non_finite(x: np.ndarray, source: str, what: str) -> None:
    finite = np.isfinite(x)
    if not finite.all():
        where = np.unravel_index(np.argmin(finite), x.shape)
        raise DataError(f"{source} has {what} at index {tuple(map(int, where))}.")


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
    return (rng.random(np.shape(x), dtype=np.float32) < x).astype(np.float32)
