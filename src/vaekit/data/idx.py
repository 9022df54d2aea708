"""Read and write IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``0, 0, type code, number of dimensions``, then one
big-endian uint32 per dimension, then the values in C order, big-endian. A name ending in
``.gz`` means the file is gzip-compressed. Reading is strict: every way a file can be damaged
raises :class:`~vaekit.errors.DataError` naming the file and what was wrong, and nothing is
allocated from the header until the payload is known to have exactly the declared size.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from vaekit.errors import DataError

#: IDX type code -> element type (big-endian, as stored in the file).
TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_DIMS = 16
_HEADER = 4


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed when the name ends in ``.gz``) into an array.

    The array has the file's element type in native byte order.
    """
    return parse_idx(read_idx_bytes(path), str(path))


def read_idx_bytes(path: str | Path) -> bytes:
    """Return the uncompressed bytes of an IDX file, decompressing when the name ends in ``.gz``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist.") from None
    except OSError as exc:
        raise DataError(f"{path} could not be read ({exc}).") from exc
    if not path.name.endswith(".gz"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path} is not a valid gzip file ({exc}); replace it with an intact copy."
        ) from exc


def parse_idx(data: bytes, source: str) -> np.ndarray:
    """Decode the bytes of an uncompressed IDX file; ``source`` names the file in errors."""
    if len(data) < _HEADER:
        raise DataError(f"{source} is too short to be an IDX file ({len(data)} bytes).")
    zero1, zero2, code, ndim = data[:_HEADER]
    if zero1 != 0 or zero2 != 0:
        raise DataError(
            f"{source} is not an IDX file: its magic number starts with bytes "
            f"{zero1:#04x} {zero2:#04x} instead of 0x00 0x00."
        )
    if code not in TYPE_CODES:
        known = ", ".join(f"{c:#04x}" for c in TYPE_CODES)
        raise DataError(f"{source} has unknown IDX type code {code:#04x} (known: {known}).")
    if not 1 <= ndim <= MAX_DIMS:
        raise DataError(
            f"{source} declares {ndim} dimensions; an IDX file needs between 1 and {MAX_DIMS}."
        )
    offset = _HEADER + 4 * ndim
    if len(data) < offset:
        raise DataError(f"{source} is truncated inside its header of {ndim} dimensions.")
    shape = tuple(int.from_bytes(data[i : i + 4], "big") for i in range(_HEADER, offset, 4))
    dtype = TYPE_CODES[code]
    expected = dtype.itemsize * math.prod(shape)
    actual = len(data) - offset
    if actual < expected:
        raise DataError(
            f"{source} is truncated: its header declares shape {shape} ({expected} bytes of "
            f"values) but only {actual} bytes follow."
        )
    if actual > expected:
        raise DataError(
            f"{source} has {actual - expected} bytes more than its header's shape {shape} "
            f"declares ({expected} bytes of values)."
        )
    values = np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file; gzip-compress it when the name ends in ``.gz``.

    Compression is deterministic (no file name or time stamp in the gzip header), so the same
    array always gives the same bytes. The file is written under a temporary name and renamed.
    """
    path = Path(path)
    array = np.asarray(array)
    code = next((c for c, t in TYPE_CODES.items() if t == array.dtype.newbyteorder(">")), None)
    if code is None:
        raise DataError(f"{path}: IDX cannot store values of type {array.dtype}.")
    if not 1 <= array.ndim <= MAX_DIMS:
        raise DataError(f"{path}: IDX needs an array with 1 to {MAX_DIMS} dimensions.")
    if max(array.shape) >= 2**32:
        raise DataError(f"{path}: IDX cannot store a dimension of 2**32 or more.")
    header = bytes([0, 0, code, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=TYPE_CODES[code]).tobytes()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=9, mtime=0)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)
