"""Examples read on demand: array-likes that the training loop and evaluation index as they
would a NumPy array, so data larger than memory trains the same way as data held whole.

An *array-like of examples* has ``shape`` (N, *example shape), ``dtype``, ``ndim``, ``len`` and
``x[key]`` for a slice or a 1-D integer index array, which returns a NumPy array of those
examples in that order. NumPy arrays are array-likes; so are the views here: rows of another
array-like (:class:`Subset`), scaled as read (:class:`Scaled`), read from a ``.npy`` file
(:class:`NpyFile`), several one after another (:class:`Concatenated`), and decoded one by one
(:class:`Decoded`, e.g. images). Reading one batch of them is what :mod:`vaekit.data.prefetch`
does in the background.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.data.scaling import BadValue, Scaling
from vaekit.errors import DataError

#: Examples per read when a view is copied whole into memory.
READ_CHUNK = 4096
#: Most buffers one ``preadv`` call may fill (Linux's IOV_MAX).
_IOV_MAX = 1024


class Examples:
    """What every array-like here shares: ``shape`` (N, *example shape) gives ``len`` and
    ``ndim``, as a NumPy array's does."""

    shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]


class Subset(Examples):
    """The examples ``index`` (sorted, unique) of ``base``: ``view[key]`` is
    ``base[index[key]]``."""

    def __init__(self, base: Any, index: np.ndarray) -> None:
        self.base, self.index = base, np.asarray(index, dtype=np.int64)
        self.shape = (len(self.index), *base.shape[1:])
        self.dtype = base.dtype

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        return self.base[self.index[key]]


class Scaled(Examples):
    """``base``'s examples scaled by ``scaling`` as they are read: float32 model inputs."""

    def __init__(self, base: Any, scaling: Scaling, name: str = "the data") -> None:
        self.base, self.scaling, self.name = base, scaling, name
        self.shape = tuple(base.shape)
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        try:
            return self.scaling.apply(self.base[key], self.name)
        except BadValue as bad:  # named by the example of the data it was read from
            read = np.arange(len(self))[key]
            raise bad.at(origin(self.base, int(read[bad.where[0]]))) from None


def origin(view: Any, i: int) -> int:
    """The number of example ``i`` of ``view`` in the data it was read from, through the
    :class:`Subset` and :class:`Scaled` views above it."""
    while isinstance(view, (Subset, Scaled)):
        if isinstance(view, Subset):
            i = int(view.index[i])
        view = view.base
    return i


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


def index_of(key: int | slice | np.ndarray, n: int) -> np.ndarray:
    """``key`` (an int, a slice, or a 1-D array of ints, negative counting from the end) as
    int64 row numbers 0 … n−1 in the order asked for; out of range raises IndexError."""
    if isinstance(key, slice):
        return np.arange(*key.indices(n), dtype=np.int64)
    index = np.asarray(key)
    if index.ndim > 1 or (index.size and index.dtype.kind not in "iu"):
        raise IndexError(f"rows are chosen by a slice or a 1-D array of integers, not {key!r}")
    index = index.astype(np.int64).reshape(-1)
    index = np.where(index < 0, index + n, index)
    if index.size and (index.min() < 0 or index.max() >= n):
        raise IndexError(f"row index out of range for {n} rows")
    return index


def _single(key: Any) -> bool:
    return isinstance(key, (int, np.integer))


def _is_run(index: np.ndarray) -> bool:
    """Whether ``index`` is consecutive ascending rows (readable as one slice)."""
    return len(index) > 0 and bool(np.all(np.diff(index) == 1))


class NpyFile(Examples):
    """The rows of a C-ordered ``.npy`` array in ``path`` (``shape``, ``dtype``, its data
    starting ``offset`` bytes in), read from the file on demand with ``os.preadv`` and never
    mapped, so reading a whole epoch keeps none of the file in this process's memory (the
    kernel's page cache keeps what fits).

    ``x[key]`` reads the requested rows in file order, one system call per run of consecutive
    rows, scattered straight into their places in the result (the order asked for). The
    header must have been checked (see :mod:`vaekit.data.readers`); the file's size is checked
    against it at every read, so a file cut short after it was opened is a :class:`DataError`,
    never a crash.
    """

    def __init__(self, path: str | Path, shape: tuple[int, ...], dtype: Any, offset: int):
        self.path, self.shape, self.dtype = Path(path), tuple(shape), np.dtype(dtype)
        self.offset = int(offset)
        self.row_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize
        with self._open():
            pass

    def reshaped(self, shape: tuple[int, ...]) -> NpyFile:
        """The same rows seen with another example shape of as many values (e.g. (N, 1, H, W)
        for (N, H, W))."""
        if shape[0] != self.shape[0] or math.prod(shape) != math.prod(self.shape):
            raise ValueError(f"cannot view rows of shape {self.shape} as {shape}")
        return NpyFile(self.path, shape, self.dtype, self.offset)

    def __getitem__(self, key: int | slice | np.ndarray) -> np.ndarray:
        if isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(len(self))
            out = np.empty((max(stop - start, 0), *self.shape[1:]), self.dtype)
            with self._open() as fd:
                self._read(fd, start, [memoryview(out.reshape(-1).view(np.uint8))])
            return out
        index = index_of(key, len(self))
        out = np.empty((len(index), *self.shape[1:]), self.dtype)
        flat, size = memoryview(out.reshape(-1).view(np.uint8)), self.row_bytes
        order = np.argsort(index, kind="stable")
        wanted = index[order]
        ends = [*(np.flatnonzero(np.diff(wanted) != 1) + 1).tolist(), len(wanted)]
        order, wanted = order.tolist(), wanted.tolist()
        with self._open() as fd:
            start = 0
            for end in ends:  # a run of consecutive rows of the file
                for first in range(start, end, _IOV_MAX):
                    places = order[first : min(end, first + _IOV_MAX)]
                    views = [flat[i * size : (i + 1) * size] for i in places]
                    self._read(fd, wanted[first], views)
                start = end
        return out[0] if _single(key) else out

    @contextlib.contextmanager
    def _open(self) -> Iterator[int]:
        """The file, open for reading, after checking it still holds all the rows its header
        declares."""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise DataError(f"{self.path} could not be read ({exc.strerror}).") from None
        try:
            size = os.fstat(fd).st_size
            needed = self.offset + len(self) * self.row_bytes
            if size < needed:
                raise DataError(
                    f"{self.path} holds {size:,} bytes but its header declares {needed:,}; "
                    "was it cut short or changed while being read?"
                )
            yield fd
        finally:
            os.close(fd)

    def _read(self, fd: int, row: int, views: list[memoryview]) -> None:
        """Fill ``views``, in turn, with the file's bytes from row ``row`` on: one call, unless
        the kernel returns less (then the rest is asked for again)."""
        position = self.offset + row * self.row_bytes
        views = [v for v in views if v.nbytes]
        got = os.preadv(fd, views, position) if views else 0
        if got == sum(v.nbytes for v in views):
            return
        while got > 0:
            position += got
            while views and got >= views[0].nbytes:
                got -= views.pop(0).nbytes
            if not views:
                return
            views[0] = views[0][got:]
            got = os.preadv(fd, views, position)
        raise DataError(
            f"{self.path} ended before the rows its header declares; was it cut short while "
            "being read?"
        )


class Concatenated(Examples):
    """``parts`` (array-likes of one dtype and example shape) one after another along axis 0:
    a folder of ``.npy`` shards seen as one array; ``x[key]`` reads each part's rows once."""

    def __init__(self, parts: Sequence[Any]) -> None:
        self.parts = list(parts)
        self.starts = np.cumsum([0, *(len(p) for p in self.parts)])
        self.shape = (int(self.starts[-1]), *self.parts[0].shape[1:])
        self.dtype = self.parts[0].dtype

    def __getitem__(self, key: int | slice | np.ndarray) -> np.ndarray:
        index = index_of(key, len(self))
        out = np.empty((len(index), *self.shape[1:]), self.dtype)
        part_of = np.searchsorted(self.starts, index, side="right") - 1
        for p in np.unique(part_of):
            where = np.flatnonzero(part_of == p)
            local = index[where] - self.starts[p]
            if _is_run(local):
                out[where] = self.parts[p][int(local[0]) : int(local[0]) + len(local)]
            else:
                out[where] = self.parts[p][local]
        return out[0] if _single(key) else out


class Decoded(Examples):
    """Examples decoded one by one on demand: ``x[key]`` stacks ``read(items[i])`` (each of
    shape ``shape[1:]``) for the rows asked for, e.g. images decoded from their files."""

    def __init__(
        self,
        items: Sequence[Any],
        read: Callable[[Any], np.ndarray],
        shape: tuple[int, ...],
        dtype: Any,
    ) -> None:
        self.items, self.read = list(items), read
        self.shape, self.dtype = (len(self.items), *shape[1:]), np.dtype(dtype)

    def __getitem__(self, key: int | slice | np.ndarray) -> np.ndarray:
        index = index_of(key, len(self))
        out = np.empty((len(index), *self.shape[1:]), self.dtype)
        for row, i in enumerate(index):
            out[row] = self.read(self.items[i])
        return out[0] if _single(key) else out
