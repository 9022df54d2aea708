"""The records data loaders return: raw examples as stored (:class:`RawData`) and scaled,
in-memory float32 examples (:class:`Dataset`), each with optional labels, the names of their
classes (:mod:`vaekit.data.classes`) and a name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Dataset:
    """Examples ``x`` (float32, C-contiguous; ``(N, C, H, W)`` images or ``(N, D)`` rows),
    optional int64 labels ``y`` of shape ``(N,)``, a ``name`` for messages and titles, and
    ``classes``: the name of each class, code by code (None: the classes are their numbers).

    The named data sets are in [0, 1]; so is user data loaded by :func:`load_dataset`.
    """

    x: np.ndarray
    y: np.ndarray | None
    name: str
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.x.dtype != np.float32 or not self.x.flags.c_contiguous:
            raise ValueError("Dataset.x must be a C-contiguous float32 array.")
        if self.y is not None and (self.y.dtype != np.int64 or self.y.shape != self.x.shape[:1]):
            raise ValueError("Dataset.y must be None or int64 of shape (N,), one per example.")
        _check_named(self.y, self.classes, "Dataset")

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True, eq=False)
class RawData:
    """Examples as stored, before scaling: ``x`` holds raw numbers of shape (N, *example shape),
    ``(N, D)`` rows or ``(N, C, H, W)`` images, as a NumPy array or a lazily read array-like
    (``len``, ``shape``, ``dtype`` and indexing by a slice or an index array; see
    :mod:`vaekit.data.sources`); ``y`` int64 labels (N,) or None; ``pixels`` says the values
    are 8-bit image levels 0…255 (what ``--scale auto`` divides by 255); ``classes`` names
    the classes code by code, as the data did (a folder's sub-folders, a CSV's label strings,
    a named set's classes), or None."""

    x: Any
    y: np.ndarray | None
    name: str
    pixels: bool = False
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _check_named(self.y, self.classes, "RawData")

    def __len__(self) -> int:
        return len(self.x)


def _check_named(y: np.ndarray | None, classes: tuple[str, ...] | None, record: str) -> None:
    """Names, when given, are a tuple with one name for every code of ``y``."""
    if classes is None:
        return
    if not isinstance(classes, tuple) or not classes:
        raise ValueError(f"{record}.classes must be None or a non-empty tuple of names.")
    if y is not None and len(y) and int(y.max()) >= len(classes):
        raise ValueError(f"{record}.classes must name every code of y.")
