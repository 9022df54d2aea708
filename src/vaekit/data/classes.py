"""Class names: the words a run's integer labels stand for, kept with the run.

Labels are whole numbers 0 … C−1 inside vaekit (:mod:`vaekit.data.labels`); the data they came
from often names them: the sub-folders of an image folder (``bag/``, ``sneaker/``), the strings of
a CSV's ``label`` column, the classes of a named data set. Code c stands for ``names[c]``, the
names in sorted order. A run stores them once, as it starts, in ``classes.json``::

    {"classes": [{"code": 0, "name": "bag"}, {"code": 1, "name": "coat"}, ...]}

and every command shows and takes labels by these names; a run without the file (labels that
were numbers, or a run from before names were kept) names each class by its number. A model the
estimator fitted on labels that were numbers (``y = [3, 7, 7, …]``) also keeps each class's
number, as ``"value": 3``, so that its ``classes_`` come back as numbers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.config.limits import MAX_CLASSES
from vaekit.disk import parse_json, read_regular, write_atomic
from vaekit.errors import ConfigError, DataError

CLASSES_FILE = "classes.json"
#: The longest class name kept, in characters (a folder name is at most 255 bytes).
MAX_NAME_CHARS = 255
#: The largest classes.json read: MAX_CLASSES names of MAX_NAME_CHARS, escaped.
MAX_CLASSES_BYTES = 64 * 2**20


def as_text(name: str | bytes) -> str:
    """A file name as a class name: its bytes as UTF-8, any that are not shown as ``\\xNN``
    (a name read from disk may hold such bytes; the names a run keeps are always text)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def check_names(names: Sequence[str], source: str) -> tuple[str, ...]:
    """``names`` as a tuple of class names: strings, non-empty, unique, at most
    :data:`MAX_NAME_CHARS` each and :data:`MAX_CLASSES` in all; else :class:`DataError`."""
    names = tuple(names)
    if len(names) > MAX_CLASSES:
        raise DataError(f"{source} names {len(names):,} classes; vaekit supports {MAX_CLASSES:,}")
    for name in names:
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
            raise DataError(
                f"{source} has the class name {name!r}; a class name is text of 1 to "
                f"{MAX_NAME_CHARS} characters"
            )
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{source} names the class {twice!r} twice")
    return names


def names_or_numbers(names: Sequence[str] | None, n_classes: int) -> tuple[str, ...]:
    """The name of each of ``n_classes`` classes: ``names``, or each code as a number."""
    return tuple(names) if names else tuple(str(c) for c in range(n_classes))


def code_of(text: str, names: Sequence[str] | None, n_classes: int) -> int:
    """The code of the class a user typed: one of ``names`` (exactly), else a whole number
    0 … ``n_classes`` − 1; anything else raises :class:`ConfigError` listing the choices."""
    if names and text in names:
        return list(names).index(text)
    if text.isascii() and text.isdigit() and int(text) < n_classes:
        return int(text)
    choices = ", ".join(names_or_numbers(names, n_classes)[:20])
    more = " …" if n_classes > 20 else ""
    raise ConfigError(f"--label {text!r} is not one of this model's classes: {choices}{more}")


def recode(
    y: np.ndarray, names: Sequence[str] | None, run_names: Sequence[str] | None, source: str
) -> np.ndarray:
    """Labels ``y`` of data whose classes are ``names`` as codes of a run whose classes are
    ``run_names``: matched by name (a folder may hold only some of the run's classes, in any
    order); unchanged when either side has no names. A name the run does not know raises
    :class:`DataError`."""
    if not names or not run_names or tuple(names) == tuple(run_names):
        return y
    unknown = [name for name in names if name not in run_names]
    if unknown:
        raise DataError(
            f"{source} has the class {unknown[0]!r}, which the run does not know; its classes "
            f"are {', '.join(run_names[:20])}{' …' if len(run_names) > 20 else ''}"
        )
    table = np.array([list(run_names).index(name) for name in names], dtype=np.int64)
    return table[y]


def save(
    run_dir: str | Path, names: Sequence[str], values: Sequence[int | float] | None = None
) -> None:
    """Write ``classes.json`` into ``run_dir`` (atomically); ``values``: the number each class
    was, for labels that were numbers (see the module docstring)."""
    entries = [{"code": c, "name": name} for c, name in enumerate(names)]
    for entry, value in zip(entries, values or (), strict=False):
        entry["value"] = value
    record = {"classes": entries}
    write_atomic(Path(run_dir) / CLASSES_FILE, (json.dumps(record, indent=1) + "\n").encode())


def load(run_dir: str | Path) -> tuple[str, ...] | None:
    """The class names ``run_dir`` keeps, or None when it keeps none; a damaged or edited
    file raises :class:`DataError`."""
    entries = _entries(Path(run_dir) / CLASSES_FILE)
    return None if entries is None else tuple(e["name"] for e in entries)


def load_values(run_dir: str | Path) -> tuple[int | float, ...] | None:
    """The number each class was, when the run keeps one for every class (see
    :func:`save`), else None."""
    entries = _entries(Path(run_dir) / CLASSES_FILE)
    if not entries or any("value" not in e for e in entries):
        return None
    return tuple(e["value"] for e in entries)


def _entries(path: Path) -> list[dict] | None:
    """The checked entries of the class record at ``path``, or None without one."""
    if not path.exists() and not path.is_symlink():
        return None
    try:
        record = parse_json(read_regular(path, MAX_CLASSES_BYTES, DataError))
        entries = record["classes"]
        if not isinstance(entries, list) or any(
            not isinstance(e, dict) or e.get("code") != c for c, e in enumerate(entries)
        ):
            raise ValueError("the codes are not 0, 1, 2, … in order")
        values = [e["value"] for e in entries if "value" in e]
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            raise ValueError("a class's value is not a number")
        names = [e["name"] for e in entries]
    except (ValueError, RecursionError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a vaekit class-name record ({exc})") from None
    check_names(names, str(path))
    return entries


# --- the estimator's labels: values of any kind, codes inside -------------------------------


def class_codes(y: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes, codes) of the labels ``y`` of ``n`` examples, of any kind scikit-learn takes
    (numbers, strings, a pandas Series): the classes are ``numpy.unique(y)`` and each code the
    index of its label's class; labels of mixed kinds, NaN, or not one per example raise
    :class:`DataError`."""
    labels = np.asarray(y)
    if labels.ndim != 1 or len(labels) != n:
        raise DataError(f"y has shape {labels.shape}; expected one label per example, ({n},)")
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise DataError("y holds NaN or infinite labels")
    if labels.dtype.kind not in "biufUO":
        raise DataError(f"y holds labels of type {labels.dtype}; use numbers or strings")
    try:
        found, codes = np.unique(labels, return_inverse=True)
    except TypeError:
        raise DataError("y mixes labels of different kinds (numbers and strings, say)") from None
    if found.dtype.kind == "O" and not all(isinstance(v, str) for v in found.tolist()):
        raise DataError("y holds objects that are neither numbers nor strings")
    return found, codes.reshape(-1).astype(np.int64)


def codes_of(labels: Any, classes: np.ndarray) -> np.ndarray:
    """The codes of ``labels`` (one value or a 1-D array, values of ``classes``); a value that
    is no class raises :class:`ConfigError` naming the classes."""
    values = np.asarray(labels)
    if values.ndim > 1:
        raise DataError(f"labels have shape {values.shape}; expected one or one per example")
    index = {value: code for code, value in enumerate(classes.tolist())}
    codes = []
    for value in np.atleast_1d(values).tolist():
        if value not in index:
            shown = ", ".join(map(repr, classes.tolist()[:20]))
            raise ConfigError(f"{value!r} is not one of this model's classes: {shown}")
        codes.append(index[value])
    return np.array(codes, dtype=np.int64).reshape(values.shape)


def stored_classes(run_dir: Path, n_classes: int) -> np.ndarray:
    """The ``classes_`` of a conditional model saved in ``run_dir``: the numbers it keeps,
    else its class names (names that are its codes 0, 1, …, as a MNIST run's, and a run
    without names give the codes, as numbers)."""
    values = load_values(run_dir)
    if values is not None:
        return np.array(values)
    names = load(run_dir)
    if names is None or names == names_or_numbers(None, n_classes):
        return np.arange(n_classes)
    return np.array(names)
