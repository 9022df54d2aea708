"""The record every data loader returns: examples, optional labels and a name."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Dataset:
    """Examples ``x`` (float32, C-contiguous; ``(N, C, H, W)`` images or ``(N, D)`` rows),
    optional int64 labels ``y`` of shape ``(N,)``, and a ``name`` for messages and titles.

    The named data sets are in [0, 1]; so is user data loaded by :func:`load_dataset`.
    """

    x: np.ndarray
    y: np.ndarray | None
    name: str

    def __post_init__(self) -> None:
        if self.x.dtype != np.float32 or not self.x.flags.c_contiguous:
            raise ValueError("Dataset.x must be a C-contiguous float32 array.")
        if self.y is not None and (self.y.dtype != np.int64 or self.y.shape != self.x.shape[:1]):
            raise ValueError("Dataset.y must be None or int64 of shape (N,), one per example.")

    def __len__(self) -> int:
        return len(self.x)
