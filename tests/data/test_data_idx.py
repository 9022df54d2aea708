"""IDX reading and writing: round trips and every kind of damaged file."""

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vaekit.data.idx import TYPE_CODES, read_idx, write_idx
from vaekit.errors import DataError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def header(code: int, *dims: int) -> bytes:
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


@pytest.mark.parametrize("suffix", [".idx", ".gz"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_each_type(tmp_path, dtype, suffix):
    rng = np.random.default_rng(1)
    array = (rng.normal(size=(3, 4, 5)) * 100).astype(dtype)
    path = tmp_path / f"a{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)
    assert back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_file_layout_is_big_endian_idx(tmp_path):
    path = tmp_path / "a.idx"
    write_idx(path, np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int16))
    assert path.read_bytes() == header(0x0B, 2, 3) + bytes([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6])


def test_gzip_output_is_deterministic_and_gzip(tmp_path):
    array = np.arange(100, dtype=np.uint8).reshape(10, 10)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", array)
    data = (tmp_path / "a.gz").read_bytes()
    assert data == (tmp_path / "b.gz").read_bytes()
    assert data[4:8] == b"\0\0\0\0"  # mtime 0
    assert gzip.decompress(data) == header(0x08, 10, 10) + array.tobytes()
    assert not list(tmp_path.glob("*.tmp"))


@settings(max_examples=30, deadline=None)
@given(
    array=hnp.arrays(
        dtype=st.sampled_from(DTYPES),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
    ),
    compressed=st.booleans(),
)
def test_round_trip_property(tmp_path_factory, array, compressed):
    path = tmp_path_factory.mktemp("idx") / ("a.gz" if compressed else "a")
    write_idx(path, array)
    back = read_idx(path)
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_type_codes_are_the_idx_ones():
    assert sorted(TYPE_CODES) == [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]


def read_bytes_as_idx(tmp_path, data: bytes, name: str = "bad.idx") -> DataError:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    return info.value


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x01\x00\x08\x01" + (1).to_bytes(4, "big") + b"\x00", "magic"),
        (b"\x00\x07\x08\x01" + (1).to_bytes(4, "big") + b"\x00", "magic"),
        (header(0x0A, 1) + b"\x00", "type code 0x0a"),
        (header(0x08), "0 dimensions"),
        (bytes([0, 0, 8, 200]) + b"\0" * 800, "200 dimensions"),
        (b"\x00\x00", "too short"),
        (header(0x08, 2, 3)[:10], "header"),
        (header(0x08, 2, 3) + b"\x00" * 5, "truncated"),
        (header(0x0C, 2) + b"\x00" * 7, "truncated"),
        (header(0x08, 2, 3) + b"\x00" * 7, "1 bytes more"),
        (header(0x08, 2, 2) + b"\x00" * 8, "4 bytes more"),
    ],
    ids=[
        "magic-1",
        "magic-2",
        "type",
        "no-dims",
        "absurd-dims",
        "short",
        "header-cut",
        "payload-cut",
        "payload-cut-int32",
        "extra-byte",
        "dims-mismatch",
    ],
)
def test_damaged_files_are_refused(tmp_path, data, words):
    error = read_bytes_as_idx(tmp_path, data)
    assert words in str(error)


def test_huge_declared_dims_fail_fast_without_allocating(tmp_path):
    huge = 2**32 - 1
    error = read_bytes_as_idx(tmp_path, header(0x0E, huge, huge, huge) + b"\x00" * 64)
    assert "truncated" in str(error)


def test_corrupt_gzip_is_refused(tmp_path):
    error = read_bytes_as_idx(tmp_path, b"this is not gzip at all", "bad.gz")
    assert "gzip" in str(error)


def test_truncated_gzip_is_refused(tmp_path):
    data = gzip.compress(header(0x08, 100) + bytes(range(100)))
    error = read_bytes_as_idx(tmp_path, data[: len(data) // 2], "cut.gz")
    assert "gzip" in str(error)


def test_valid_gzip_of_damaged_idx_is_refused(tmp_path):
    error = read_bytes_as_idx(tmp_path, gzip.compress(header(0x08, 5) + b"\x00"), "short.gz")
    assert "truncated" in str(error)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope.gz")


@pytest.mark.parametrize(
    "array", [np.zeros(3, dtype=np.int64), np.zeros(3, dtype=bool), np.array(5, dtype=np.uint8)]
)
def test_write_refuses_what_idx_cannot_store(tmp_path, array):
    path = tmp_path / "a.idx"
    with pytest.raises(DataError, match="IDX"):
        write_idx(path, array)
    assert not path.exists()
