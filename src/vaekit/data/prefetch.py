"""Batches of an epoch, read in the order the loop will use them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


def batches(x: Any, order: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """``x[order[i : i + batch_size]]`` for i = 0, batch_size, …: the examples of each batch of
    an epoch whose permutation is ``order``."""
    for start in range(0, len(order), batch_size):
        yield x[order[start : start + batch_size]]
