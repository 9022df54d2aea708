"""Fuzzing the data readers with hypothesis: random bytes and damaged copies of valid files.

Whatever the bytes, a reader returns valid raw data (read whole without error) or raises
:class:`DataError` (which the command line turns into one line and exit code 2) — never
another exception, never a hang, never unpickled code. Example counts are bounded so CI stays fast.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import pickle  # only to build members the reader must refuse
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from vaekit.data.idx import parse_idx
from vaekit.data.readers import read_file
from vaekit.errors import DataError

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _idx_bytes() -> bytes:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    return (
        b"\x00\x00\x08\x03" + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()
    )


def _npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.linspace(0, 1, 24, dtype=np.float32).reshape(4, 6))
    return buffer.getvalue()


def _npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.full((3, 5), 0.5, np.float32), y=np.arange(3))
    return buffer.getvalue()


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (6, 5), color=128).save(buffer, format="PNG")
    return buffer.getvalue()


VALID = {
    ".npy": _npy_bytes(),
    ".npz": _npz_bytes(),
    ".csv": b"label,a,b\n0,0.1,0.2\n1,0.3,0.4\n",
    ".png": _png_bytes(),
}


@st.composite
def damaged(draw, valid: bytes) -> bytes:
    """``valid`` with random bytes overwritten, then perhaps cut short or extended."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(0, 8))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=16))


def _any_bytes(valid: bytes):
    return st.one_of(st.binary(max_size=256), damaged(valid))


def _read(tmp_path: Path, suffix: str, data: bytes) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        raw = read_file(path)
        x = raw.x[:]  # lazily read data are read (or decoded) here
    except DataError:
        return
    assert x.dtype.kind in "biuf" and len(x) > 0 and x.shape == tuple(raw.x.shape)
    assert raw.y is None or (raw.y.dtype == np.int64 and len(raw.y) == len(x))


@FUZZ
@given(data=_any_bytes(_idx_bytes()))
def test_idx_parser_accepts_or_refuses_cleanly(data):
    try:
        array = parse_idx(data, "fuzz")
    except DataError:
        return
    assert isinstance(array, np.ndarray)


@FUZZ
@given(data=_any_bytes(gzip.compress(_idx_bytes(), mtime=0)))
def test_gzipped_idx_reader_accepts_or_refuses_cleanly(tmp_path, data):
    from vaekit.data.idx import read_idx

    path = tmp_path / "fuzz-idx.gz"
    path.write_bytes(data)
    with contextlib.suppress(DataError):
        read_idx(path)


def _npy_header_cut_at_nul() -> bytes:
    """Found by this fuzzer: numpy's header parser raised tokenize.TokenError on it."""
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (4, 6), \x00"
    header += b" " * (117 - len(header)) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


@FUZZ
@given(data=_any_bytes(VALID[".npy"]))
@example(data=_npy_header_cut_at_nul())
@example(data=b"PK\x03\x04")  # found by this fuzzer: zipfile.BadZipFile escaped
def test_npy_reader(tmp_path, data):
    _read(tmp_path, ".npy", data)


def _npz_compressed_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=np.full((3, 5), 0.5, np.float32), y=np.arange(3))
    return buffer.getvalue()


def _first(pair: tuple) -> object:
    return pair[0]


@st.composite
def npz_archives(draw) -> bytes:
    """A zip of one to three members under plain or hostile names, stored or compressed, each a
    valid, damaged or random .npy, a pickle or a nested archive."""
    name = st.sampled_from(["x.npy", "y.npy", "x", "a.npy", "x.txt", "../x.npy", "a/x.npy"])
    content = st.one_of(
        _any_bytes(VALID[".npy"]),
        st.sampled_from([VALID[".npz"], pickle.dumps([1, 2]), b"", b"1,2\n3,4\n"]),
    )
    compression = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        members = st.lists(st.tuples(name, content), min_size=1, max_size=3, unique_by=_first)
        for member_name, data in draw(members):
            archive.writestr(member_name, data)
    return buffer.getvalue()


@FUZZ
@given(data=st.one_of(_any_bytes(VALID[".npz"]), _any_bytes(_npz_compressed_bytes())))
def test_npz_reader(tmp_path, data):
    _read(tmp_path, ".npz", data)


@FUZZ
@given(data=npz_archives())
def test_npz_reader_on_hostile_members(tmp_path, data):
    _read(tmp_path, ".npz", data)


@FUZZ
@given(data=st.one_of(_any_bytes(VALID[".csv"]), st.text(max_size=200).map(str.encode)))
@example(data=b"1E100")  # found by this fuzzer: finite in float64, infinite in float32
def test_csv_reader(tmp_path, data):
    _read(tmp_path, ".csv", data)


@FUZZ
@given(data=_any_bytes(VALID[".png"]))
def test_image_reader(tmp_path, data):
    _read(tmp_path, ".png", data)
