"""The held-out split of data that has no test split: a seeded draw, the same on every call."""

from __future__ import annotations

import numpy as np

from vaekit.errors import DataError
from vaekit.text import plural


def validation_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, validation indices) of ``n`` examples, each sorted, disjoint, and
    together 0 … n−1: round(fraction · n) examples (at least one when ``fraction`` > 0) drawn
    without replacement by a generator seeded with (``seed``, 2), so a run, its resumption and
    every later command hold out the same examples. ``fraction`` 0 holds out nothing."""
    if fraction <= 0:
        return np.arange(n), np.arange(0)
    n_val = max(1, round(fraction * n))
    if n_val >= n:
        raise DataError(
            f"holding out {fraction:g} of {plural(n, 'example')} leaves none to train on; use "
            "more "
            "data or a smaller --val-fraction"
        )
    held_out = np.random.default_rng((seed, 2)).choice(n, size=n_val, replace=False)
    mask = np.zeros(n, dtype=bool)
    mask[held_out] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)
