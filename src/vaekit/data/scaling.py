"""Scaling: how raw values become model inputs, fitted once on the training data and stored.

Every method is one affine map per value, x' = (x − shift) / scale, computed in float32:

- ``none``: x' = x (shift 0, scale 1);
- ``unit``: 8-bit levels 0…255 to [0, 1], x' = x / 255;
- ``standardize``: per feature (each value of an example: a column, a pixel of a channel),
  x' = (x − mean) / std over the training examples; a constant feature gets std 1;
- ``minmax``: per feature, x' = (x − min) / (max − min) over the training examples, so the
  training data lie in [0, 1]; later inputs beyond the training range are clipped to [0, 1]
  (as scikit-learn's ``MinMaxScaler(clip=True)``), so a Bernoulli model can score any input; a
  constant feature gets range 1;
- ``auto``: ``unit`` for 8-bit data (uint8 arrays, image files, the named image sets), else
  ``none``: float data are never rescaled unasked.

A run stores its fitted :class:`Scaling` in ``scaling.json``, and every command, the explorer
and the estimator apply it to each input, so one input always gives one answer. Log-densities
are reported for the scaled values x' (nats per example, as the model sees them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.config.limits import SCALINGS
from vaekit.disk import parse_json, read_regular
from vaekit.errors import ConfigError, DataError

SCALING_FILE = "scaling.json"
#: The largest scaling.json read: a shift and a scale per input value, as JSON numbers.
MAX_SCALING_BYTES = 64 * 2**20
#: Examples per chunk when statistics are fitted on data read in pieces.
FIT_CHUNK = 4096


@dataclass(frozen=True, eq=False)
class Scaling:
    """A fitted scaling: ``method`` (resolved, never ``auto``), ``shift`` and ``scale`` (float32,
    scalars or one per value of an example, of the example's shape), and ``low``/``high``, the
    smallest and largest scaled value of the training data (to check a Bernoulli likelihood's
    [0, 1] before training)."""

    method: str
    shift: np.ndarray
    scale: np.ndarray
    low: float
    high: float

    def apply(self, raw: np.ndarray, source: str = "the data") -> np.ndarray:
        """x' = (x − shift) / scale (clipped to [0, 1] for ``minmax``) as a C-contiguous float32
        array of ``raw``'s shape (N, *example shape); non-numeric, NaN or infinite values raise
        :class:`DataError`."""
        x = _numbers(raw, source)
        if self.method == "none":
            return x
        scaled = np.ascontiguousarray((x - self.shift) / self.scale, dtype=np.float32)
        return np.clip(scaled, 0, 1, out=scaled) if self.method == "minmax" else scaled

    def invert(self, x: np.ndarray) -> np.ndarray:
        """Raw units of scaled values: x = x' · scale + shift (float32)."""
        x = np.asarray(x, dtype=np.float32)
        if self.method == "none":
            return x
        return np.ascontiguousarray(x * self.scale + self.shift, dtype=np.float32)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "shape": list(np.shape(self.shift)),
            "shift": np.ravel(self.shift).tolist(),
            "scale": np.ravel(self.scale).tolist(),
            "low": self.low,
            "high": self.high,
        }

    @classmethod
    def from_json(cls, record: Any, where: str = SCALING_FILE) -> Scaling:
        """The scaling a run stored; anything damaged or edited raises :class:`DataError`."""
        try:
            method, shape = record["method"], tuple(record["shape"])
            if method not in SCALINGS or method == "auto":
                raise ValueError(f"method {method!r}")
            shift = np.asarray(record["shift"], dtype=np.float32).reshape(shape)
            scale = np.asarray(record["scale"], dtype=np.float32).reshape(shape)
            low, high = float(record["low"]), float(record["high"])
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise DataError(f"{where} is not a vaekit scaling record ({exc})") from None
        if not (np.isfinite(shift).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise DataError(f"{where} holds a shift or scale that is not finite and positive")
        return cls(method, shift, scale, low, high)

    def save(self, run_dir: str | Path) -> None:
        from vaekit.disk import write_atomic

        write_atomic(Path(run_dir) / SCALING_FILE, json.dumps(self.to_json()).encode())

    @classmethod
    def load(cls, run_dir: str | Path) -> Scaling | None:
        """The scaling stored in ``run_dir``, or None for a run written before scalings were
        stored (its inputs are scaled by ``auto``, as they were then)."""
        path = Path(run_dir) / SCALING_FILE
        if not path.exists() and not path.is_symlink():
            return None
        try:
            record = parse_json(read_regular(path, MAX_SCALING_BYTES, DataError))
        except (ValueError, RecursionError) as exc:
            raise DataError(f"{path} could not be read ({exc})") from None
        return cls.from_json(record, str(path))


def resolve(method: str, dtype: np.dtype, pixels: bool) -> str:
    """The method ``auto`` stands for: ``unit`` for 8-bit levels (uint8, or image pixels),
    else ``none``; any other method is itself."""
    if method not in SCALINGS:
        raise ConfigError(f"scale must be one of {', '.join(SCALINGS)}; got {method!r}")
    if method != "auto":
        return method
    return "unit" if pixels or np.dtype(dtype) == np.uint8 else "none"


def fit(
    method: str,
    chunks: Iterable[np.ndarray],
    dtype: np.dtype,
    *,
    pixels: bool = False,
    source: str = "the data",
    rows: np.ndarray | None = None,
) -> Scaling:
    """Fit ``method`` on the training examples given as ``chunks`` (arrays (n, *shape) of raw
    values, read once, in any number of pieces): per-feature mean and standard deviation or
    minimum and maximum, accumulated in float64 (Chan et al.'s pairwise update of the mean and
    the sum of squared deviations), and the range of the scaled data. ``rows``: the number of
    each example in the data it was read from (the training part's indices), by which a bad
    value is named."""
    method = resolve(method, dtype, pixels)
    count, mean, m2 = 0, None, None
    low = high = None
    for raw in chunks:
        try:
            x = _numbers(raw, source).astype(np.float64)
        except BadValue as bad:
            example = count + bad.where[0]
            raise bad.at(example if rows is None else rows[example]) from None
        if len(x) == 0:
            continue
        n = len(x)
        chunk_mean = x.mean(axis=0)
        chunk_m2 = ((x - chunk_mean) ** 2).sum(axis=0)
        if mean is None:
            mean, m2, low, high = chunk_mean, chunk_m2, x.min(axis=0), x.max(axis=0)
        else:
            delta = chunk_mean - mean
            total = count + n
            mean = mean + delta * (n / total)
            m2 = m2 + chunk_m2 + delta**2 * (count * n / total)
            low, high = np.minimum(low, x.min(axis=0)), np.maximum(high, x.max(axis=0))
        count += n
    if count == 0:
        raise DataError(f"{source} holds no examples.")
    if method == "none":
        shift, scale = np.float32(0), np.float32(1)
    elif method == "unit":
        shift, scale = np.float32(0), np.float32(255)
    elif method == "standardize":
        std = np.sqrt(m2 / count)
        shift, scale = mean, np.where(std > 1e-12 * np.maximum(1, np.abs(mean)), std, 1.0)
    else:  # minmax
        span = high - low
        shift, scale = low, np.where(span > 0, span, 1.0)
    shift = np.asarray(shift, dtype=np.float32)
    scale = np.asarray(scale, dtype=np.float32)
    if not (np.isfinite(shift).all() and np.isfinite(scale).all() and (scale > 0).all()):
        raise DataError(f"{source} has values too large to scale in float32.")
    scaled_low = float(np.min((low.astype(np.float32) - shift) / scale))
    scaled_high = float(np.max((high.astype(np.float32) - shift) / scale))
    return Scaling(method, shift, scale, scaled_low, scaled_high)


def fit_array(method: str, x: np.ndarray, *, pixels: bool = False, source: str = "the data"):
    """:func:`fit` on an array of examples held whole, in chunks of :data:`FIT_CHUNK`."""
    x = np.asarray(x)
    chunks = (x[i : i + FIT_CHUNK] for i in range(0, max(len(x), 1), FIT_CHUNK))
    return fit(method, chunks, x.dtype, pixels=pixels, source=source)


class BadValue(DataError):
    """A value that is no finite float32 number, at index ``where`` (example, then position in
    the example) of the array it was found in; :meth:`at` names it by its example in the data
    the array was read from."""

    def __init__(self, source: str, what: str, where: tuple[int, ...]) -> None:
        super().__init__(f"{source} has {what} at index {where}.")
        self.source, self.what, self.where = source, what, where

    def at(self, example: int) -> BadValue:
        return BadValue(self.source, self.what, (int(example), *self.where[1:]))


def _numbers(raw: np.ndarray, source: str) -> np.ndarray:
    """``raw`` as finite float32 values, else one :class:`BadValue` naming the first bad
    index."""
    x = np.asarray(raw)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{source} holds values of type {x.dtype}; numbers are needed.")
    if x.dtype.kind == "f" and x.dtype.itemsize > 4:
        _refuse_non_finite(x, source, "a NaN or infinite value")
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(x, dtype=np.float32)
    _refuse_non_finite(out, source, "a NaN or infinite value, or one beyond float32 (±3.4e38)")
    return out


def _refuse_non_finite(x: np.ndarray, source: str, what: str) -> None:
    if x.dtype.kind != "f":
        return
    finite = np.isfinite(x)
    if not finite.all():
        where = np.unravel_index(np.argmin(finite), x.shape)
        raise BadValue(source, what, tuple(map(int, where)))
