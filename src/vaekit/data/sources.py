"""Examples read on demand: array-likes that the training loop and evaluation index as they
would a NumPy array, so data larger than memory trains the same way as data held whole.

An *array-like of examples* has ``shape`` (N, *example shape), ``dtype``, ``ndim``, ``len`` and
``x[key]`` for a slice or a 1-D integer index array, which returns a NumPy array of those
examples in that order. NumPy arrays are array-likes; so are the views here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vaekit.data.scaling import Scaling

#: Examples per read when a view is copied whole into memory.
READ_CHUNK = 4096


class Subset:
    """The examples ``index`` (sorted, unique) of ``base``: ``view[key]`` is
    ``base[index[key]]``."""

    def __init__(self, base: Any, index: np.ndarray) -> None:
        self.base, self.index = base, np.asarray(index, dtype=np.int64)
        self.shape = (len(self.index), *base.shape[1:])
        self.dtype = base.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        return self.base[self.index[key]]


class Scaled:
    """``base``'s examples scaled by ``scaling`` as they are read: float32 model inputs."""

    def __init__(self, base: Any, scaling: Scaling, name: str = "the data") -> None:
        self.base, self.scaling, self.name = base, scaling, name
        self.shape = tuple(base.shape)
        self.dtype = np.dtype(np.float32)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        return self.scaling.apply(self.base[key], self.name)


def chunks(x: Any, size: int = READ_CHUNK):
    """``x``'s examples in order, ``size`` at a time (arrays)."""
    for start in range(0, len(x), size):
        yield x[start : start + size]


def in_memory(x: Any) -> np.ndarray:
    """All of ``x`` as one C-contiguous NumPy array (read in chunks when it is a view)."""
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x)
    out = np.empty(x.shape, dtype=x.dtype)
    for start in range(0, len(x), READ_CHUNK):
        out[start : start + READ_CHUNK] = x[start : start + READ_CHUNK]
    return out
