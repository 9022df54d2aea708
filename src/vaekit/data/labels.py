"""Class labels: the one check every label passes, wherever it enters vaekit.

Labels come from data files, named data sets, the estimator's ``y`` and a run's commands. A label
is a whole number c with 0 ≤ c < C, where C is the number of classes of the model that uses it
(or :data:`MAX_CLASSES` for data not yet tied to a model). A conditional model builds a one-hot
code of length C per example, so C is bounded before anything of that size is allocated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from vaekit.config.limits import MAX_CLASSES
from vaekit.errors import ConfigError, DataError
from vaekit.text import plural


def class_labels(
    y: Any,
    source: str,
    n: int | None = None,
    n_classes: int | None = None,
    *,
    where: Sequence[str] | None = None,
) -> np.ndarray:
    """``y`` as int64 labels of shape (n,), each a whole number in [0, n_classes).

    ``n`` is the number of examples the labels belong to (None: any); ``n_classes`` that of the
    model they are for (None: at most :data:`MAX_CLASSES`). Values that are not numbers, not
    whole, negative, NaN, infinite or too large raise :class:`DataError` naming ``source``, the
    first bad label and where it is: ``where[i]`` for label i (a file's line and column, say),
    else its index (:class:`ConfigError` for a label beyond the model's classes); nothing is
    rounded or wrapped around.
    """
    y = np.asarray(y)
    if y.dtype.kind not in "iuf" or y.ndim != 1:
        raise DataError(
            f"{source} has labels of type {y.dtype} and shape {y.shape}; "
            "expected one whole number per example."
        )
    if n is not None and len(y) != n:
        raise DataError(f"{source} has {plural(len(y), 'label')} for {plural(n, 'example')}.")
    bound = MAX_CLASSES if n_classes is None else n_classes
    with np.errstate(invalid="ignore"):
        bad = ~((y >= 0) & (y < bound))  # NaN compares False: it is bad too
        if y.dtype.kind == "f":
            bad |= y != np.floor(y)
    if bad.any():
        index = int(np.argmax(bad))
        value = y[index].item()
        place = f"index {index}" if where is None else where[index]
        label = f"{source}: label {value!r} at {place}"
        whole = y.dtype.kind in "iu" or (math.isfinite(value) and value == int(value))
        if not whole or value < 0:
            raise DataError(f"{label} is not a whole number 0 or more.")
        if n_classes is not None:
            raise ConfigError(
                f"{label} is not one of this model's {n_classes} classes; labels must be between "
                f"0 and {n_classes - 1}."
            )
        raise DataError(
            f"{label} is too large; vaekit supports at most {MAX_CLASSES:,} classes (labels 0 "
            f"to {MAX_CLASSES - 1:,})."
        )
    return y.astype(np.int64)
