"""User data files: .npy, .npz, .csv and image directories, and every way they can be wrong.

Readers return raw values (scaling is :mod:`vaekit.data.scaling`, tested in test_scaling.py);
``x[:]`` reads all of a lazily read array-like.
"""

import io
import pathlib
import pickle  # only to build hostile files that the loaders must refuse
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from vaekit.config.limits import MAX_INPUT_VALUES
from vaekit.data import readers
from vaekit.data.labels import MAX_CLASSES, class_labels
from vaekit.data.readers import MAX_DATA_VALUES, read_file
from vaekit.data.sources import Decoded, NpyFile
from vaekit.errors import ConfigError, DataError


class Trap:
    """Unpickling this object creates the file ``marker``: proof that pickle code ran."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def refused(path, match: str | None = None) -> str:
    with pytest.raises(DataError, match=match) as info:
        read_file(path)
    assert str(path) in str(info.value)
    return str(info.value)


# --- .npy ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((4, 6), (4, 6)), ((4, 3, 5), (4, 1, 3, 5)), ((4, 3, 5, 2), (4, 3, 5, 2))],
)
def test_npy_shapes(tmp_path, shape, expected):
    x = np.random.default_rng(0).integers(0, 256, size=shape).astype(np.uint8)
    np.save(tmp_path / "a.npy", x)
    data = read_file(tmp_path / "a.npy")
    assert data.x.shape == expected and data.x.ndim == len(expected) and len(data.x) == 4
    assert data.x.dtype == np.uint8
    assert isinstance(data.x, NpyFile)  # read on demand, not loaded
    np.testing.assert_array_equal(data.x[:].reshape(shape), x)
    assert not data.pixels
    assert data.y is None
    assert data.name == "a.npy"
    assert len(data) == 4


def test_npy_values_are_kept_as_stored(tmp_path):
    x = np.array([[0.0, 0.5], [1.0, 0.25], [-7.0, 300.0]])
    np.save(tmp_path / "a.npy", x)
    data = read_file(tmp_path / "a.npy").x
    assert data.dtype == np.float64
    np.testing.assert_array_equal(data[:], x)


def test_npy_in_fortran_order_is_read_into_memory(tmp_path):
    x = np.asfortranarray(np.arange(12.0).reshape(4, 3))
    np.save(tmp_path / "f.npy", x)
    data = read_file(tmp_path / "f.npy").x
    assert isinstance(data, np.ndarray)
    np.testing.assert_array_equal(data, x)


def test_npy_object_array_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "pickle-ran"
    path = tmp_path / "evil.npy"
    np.save(path, np.array([Trap(marker)], dtype=object), allow_pickle=True)
    assert "never loads" in refused(path)
    assert not marker.exists()
    np.load(path, allow_pickle=True)  # the trap is real: unpickling does run it
    assert marker.exists()


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.zeros((3, 2), dtype=np.complex64), "complex"),
        (np.array([["a", "b"]]), "<U1"),
        (np.zeros((0, 5)), "no examples"),
        (np.zeros((3, 0)), "no values"),
        (np.zeros(5), r"shape \(5,\)"),
        (np.float32(3), r"shape \(\)"),
        (np.zeros((1, 1, 1, 1, 1)), "shape"),
    ],
    ids=["complex", "strings", "empty", "no-columns", "1d", "0d", "5d"],
)
def test_npy_bad_contents(tmp_path, x, match):
    np.save(tmp_path / "bad.npy", x)
    refused(tmp_path / "bad.npy", match)


def test_npy_corrupt_or_misnamed(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    refused(tmp_path / "bad.npy", "not a valid .npy")
    np.savez(tmp_path / "archive.npz", x=np.zeros((2, 2)))
    (tmp_path / "archive.npz").rename(tmp_path / "archive.npy")
    refused(tmp_path / "archive.npy", "rename it to .npz")


def test_plain_pickle_file_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "pickle-ran"
    (tmp_path / "evil.npy").write_bytes(pickle.dumps(Trap(marker)))
    refused(tmp_path / "evil.npy", "never loads")
    assert not marker.exists()


# --- .npz ---------------------------------------------------------------------------------


def test_npz_x_and_y(tmp_path):
    x = np.random.default_rng(0).random((5, 2, 3))
    np.savez(tmp_path / "d.npz", other=np.zeros(3), x=x, y=np.array([0, 1, 2, 1, 0], np.uint8))
    data = read_file(tmp_path / "d.npz")
    assert data.x.shape == (5, 1, 2, 3)
    assert data.y.dtype == np.int64
    np.testing.assert_array_equal(data.y, [0, 1, 2, 1, 0])


def test_npz_without_x_uses_the_first_array(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 4)), y=np.array([1, 2]))
    data = read_file(tmp_path / "d.npz")
    assert data.x.shape == (2, 4)
    assert data.y is None


def test_npz_integral_float_labels_are_accepted(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 4)), y=np.array([1.0, 3.0]))
    np.testing.assert_array_equal(read_file(tmp_path / "d.npz").y, [1, 3])


def test_npz_pickled_member_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "pickle-ran"
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([Trap(marker)], dtype=object))
    assert "never loads" in refused(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("y", "match"),
    [
        (np.array([0, 1, 2]), "3 labels for 4 examples"),
        (np.array([0, 1, 2, 0.5]), "label 0.5 at index 3 is not a whole number"),
        (np.array([0, 1, -2, 0]), "label -2 at index 2 is not a whole number 0 or more"),
        (np.array([0, 1, np.nan, 0]), "label nan at index 2 is not a whole number"),
        (np.array([0, 1, np.inf, 0]), "label inf at index 2 is not a whole number"),
        (np.array([0, 1e300, 1, 0]), r"label 1e\+300 at index 1 is too large"),
        (np.array([0, 1, 65535, 0]), "at most 10,000 classes"),
        (np.array([0, 1, 2, 2**63], dtype=np.uint64), "too large"),
        (np.zeros((4, 1)), r"shape \(4, 1\)"),
        (np.array(["a", "b", "c", "d"]), "<U1"),
    ],
    ids=["count", "fraction", "negative", "nan", "inf", "1e300", "65535", "2^63", "2d", "strings"],
)
def test_npz_bad_labels(tmp_path, y, match):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 3)), y=y)
    refused(tmp_path / "d.npz", match)


def test_npz_empty_corrupt_or_misnamed(tmp_path):
    np.savez(tmp_path / "empty.npz")
    refused(tmp_path / "empty.npz", "no arrays")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    refused(tmp_path / "bad.npz", "not a valid .npz")
    np.save(tmp_path / "single.npy", np.zeros((2, 2)))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    refused(tmp_path / "single.npz", "not a .npz archive")


# --- .csv ---------------------------------------------------------------------------------


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_without_header(tmp_path):
    data = read_file(write(tmp_path / "t.csv", "0,0.5\n1, 0.25\n"))
    np.testing.assert_array_equal(data.x, [[0, 0.5], [1, 0.25]])
    assert data.x.dtype == np.float64 and not data.pixels
    assert data.y is None


@pytest.mark.parametrize("label", ["label", "y", "Label"])
def test_csv_header_with_label_column(tmp_path, label):
    data = read_file(write(tmp_path / "t.csv", f"a,{label},b\n0,3,255\n51,1,0\n"))
    np.testing.assert_array_equal(data.x, [[0, 255], [51, 0]])  # as written: not divided
    assert data.y.dtype == np.int64
    np.testing.assert_array_equal(data.y, [3, 1])


def test_csv_header_without_label_column(tmp_path):
    data = read_file(write(tmp_path / "t.csv", "\ufeffa,b\n0,1\n\n1,0\n"))
    assert data.x.shape == (2, 2)
    assert data.y is None


def test_csv_mixed_first_row_is_a_header(tmp_path):
    data = read_file(write(tmp_path / "t.csv", "0,1,label\n0.5,0.5,2\n"))
    np.testing.assert_array_equal(data.y, [2])


def test_csv_non_numeric_cell_names_line_and_column(tmp_path):
    path = write(tmp_path / "t.csv", "a,b,label\n0,1,2\n\n0,oops,1\n")
    message = refused(path, "line 4 column 2")
    assert "'b'" in message and "'oops'" in message


def test_csv_words_in_a_feature_column_are_refused_where_labels_may_be_names(tmp_path):
    """A label column of words names the classes (vaekit.data.classes); a feature column of words
    is refused at its cell."""
    refused(write(tmp_path / "t.csv", "a,label\ncat,0\n"), "line 2 column 1 \\('a'\\)")
    raw = read_file(write(tmp_path / "n.csv", "a,label\n0,cat\n1,ant\n"))
    assert raw.classes == ("ant", "cat") and raw.y.tolist() == [1, 0]


def test_csv_empty_cell_without_header(tmp_path):
    refused(write(tmp_path / "t.csv", "0,1\n1,\n"), "line 2 column 2")


def test_csv_ragged_rows(tmp_path):
    refused(write(tmp_path / "t.csv", "0,1\n1,0,1\n"), "line 2 has 3 columns instead of 2")


def test_csv_empty_header_only_and_two_label_columns(tmp_path):
    refused(write(tmp_path / "e.csv", "\n\n"), "no rows")
    refused(write(tmp_path / "h.csv", "a,b\n"), "no examples")
    refused(write(tmp_path / "l.csv", "label,y,a\n1,2,0\n"), "more than one label column")


def test_csv_out_of_range_is_kept(tmp_path):
    np.testing.assert_allclose(read_file(write(tmp_path / "r.csv", "0,-3\n")).x, [[0, -3]])


def test_csv_not_text(tmp_path):
    (tmp_path / "b.csv").write_bytes(b"\xff\xfe\x00\x81\x00")
    refused(tmp_path / "b.csv", "CSV")


# --- image directories --------------------------------------------------------------------


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def test_grey_images_sorted_by_name(tmp_path):
    for name, value in [("b.png", 20), ("a.png", 10), ("c.PNG", 30)]:
        save(tmp_path / name, np.full((4, 5), value))
    (tmp_path / "notes.txt").write_text("ignored")
    data = read_file(tmp_path)
    assert isinstance(data.x, Decoded)  # decoded on demand
    assert data.x.shape == (3, 1, 4, 5) and data.pixels
    assert data.x.dtype == np.uint8
    np.testing.assert_array_equal(data.x[:][:, 0, 0, 0], [10, 20, 30])
    np.testing.assert_array_equal(data.x[np.array([2, 0])][:, 0, 0, 0], [30, 10])
    assert data.y is None


def test_rgb_images_are_channels_first(tmp_path):
    pixel = np.zeros((2, 3, 3))
    pixel[..., 0] = 255
    pixel[..., 2] = 51
    save(tmp_path / "a.png", pixel)
    data = read_file(tmp_path)
    assert data.x.shape == (1, 3, 2, 3)
    np.testing.assert_array_equal(data.x[0][:, 0, 0], [255, 0, 51])


def test_other_modes_are_converted(tmp_path):
    save(tmp_path / "grey" / "a.png", np.full((2, 2), 255))
    Image.new("1", (2, 2), 1).save(tmp_path / "grey" / "b.png")
    Image.new("LA", (2, 2), (128, 7)).save(tmp_path / "grey" / "c.png")
    Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16)).save(tmp_path / "grey" / "d.png")
    grey = read_file(tmp_path / "grey")
    assert grey.x.shape == (4, 1, 2, 2)
    assert grey.x.dtype == np.float32  # a 16-bit image: levels / 257
    np.testing.assert_allclose(grey.x[:][:, 0, 0, 0], [255, 255, 128, 255])

    (tmp_path / "colour").mkdir()
    Image.new("RGBA", (2, 2), (255, 0, 0, 10)).save(tmp_path / "colour" / "a.png")
    Image.new("P", (2, 2), 0).save(tmp_path / "colour" / "b.png")
    Image.new("RGB", (2, 2), (0, 255, 0)).save(tmp_path / "colour" / "c.jpg")
    colour = read_file(tmp_path / "colour")
    assert colour.x.shape == (3, 3, 2, 2)
    np.testing.assert_array_equal(colour.x[0][:, 0, 0], [255, 0, 0])


def test_class_subdirectories_give_sorted_labels(tmp_path):
    for cls, n in [("zebra", 2), ("ant", 1), ("cat", 3)]:
        for i in range(n):
            save(tmp_path / cls / f"{i}.png", np.full((3, 3), 100))
    data = read_file(tmp_path)
    assert data.x.shape == (6, 1, 3, 3)
    np.testing.assert_array_equal(data.y, [0, 1, 1, 1, 2, 2])
    assert data.y.dtype == np.int64


def test_corrupt_image_names_the_file(tmp_path):
    save(tmp_path / "a.png", np.zeros((3, 3)))
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert str(tmp_path / "b.png") in refused(tmp_path, "not a readable image")


def test_mixed_sizes_name_the_first_that_differs(tmp_path):
    save(tmp_path / "a.png", np.zeros((3, 3)))
    save(tmp_path / "b.png", np.zeros((3, 3)))
    save(tmp_path / "c.png", np.zeros((3, 4)))
    save(tmp_path / "d.png", np.zeros((5, 4)))
    message = refused(tmp_path, "--image-size H W")
    assert "c.png is 4x3 pixels but a.png is 3x3" in message


def test_bad_directory_layouts(tmp_path):
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "no PNG or JPEG")
    save(tmp_path / "both" / "a.png", np.zeros((2, 2)))
    (tmp_path / "both" / "sub").mkdir()
    refused(tmp_path / "both", "both images and subdirectories")
    save(tmp_path / "classes" / "a" / "1.png", np.zeros((2, 2)))
    (tmp_path / "classes" / "b").mkdir()
    refused(tmp_path / "classes", "class directory")


# --- dispatch -----------------------------------------------------------------------------


def test_unknown_suffix_and_missing_path(tmp_path):
    (tmp_path / "a.txt").write_text("1,2")
    refused(tmp_path / "a.txt", "unsupported type")
    refused(tmp_path / "missing.npy", "does not exist")


# --- labels: one check wherever they enter --------------------------------------------------


def test_class_labels_accepts_whole_numbers_in_range():
    y = class_labels(np.array([0.0, 3.0, 9999.0]), "y", 3)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, [0, 3, MAX_CLASSES - 1])
    np.testing.assert_array_equal(class_labels([2, 0], "y", n_classes=3), [2, 0])


def test_class_labels_beyond_the_model_name_its_classes():
    with pytest.raises(ConfigError, match="label 3 at index 1 .* between 0 and 2"):
        class_labels([0, 3], "y", 2, n_classes=3)


def test_csv_labels_beyond_int64_are_refused_not_wrapped(tmp_path):
    path = write(tmp_path / "d.csv", "label,a\n1e300,0.5\n0,0.2\n")
    refused(path, r"label 1e\+300 at line 2 column 1 is too large")


# --- .npz members: anything but a numeric .npy array is refused, nothing allocated ---------


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_header(shape: tuple[int, ...]) -> bytes:
    """A .npy header declaring float32 ``shape``, followed by only 64 bytes of data."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - len(header) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 64


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


X = npy_bytes(np.zeros((4, 6), np.float32))
NPZ_MEMBERS = {
    "raw pickle": (lambda m: {"x.npy": pickle.dumps(Trap(m))}, "never loads"),
    "object dtype": (lambda m: {"x.npy": npy_bytes(np.array([Trap(m)], object))}, "never loads"),
    "text": (lambda m: {"x.npy": b"0.1,0.2\n0.3,0.4\n"}, "does not start with NumPy's header"),
    "random bytes": (lambda m: {"x.npy": bytes(range(7, 256, 3))}, "NumPy's header"),
    "empty member": (lambda m: {"x.npy": b""}, "NumPy's header"),
    "zero-size array": (lambda m: {"x.npy": npy_bytes(np.zeros((0, 6)))}, "no examples"),
    "nested npz": (lambda m: {"x.npy": zip_bytes({"x.npy": X})}, "NumPy's header"),
    "10^12 values": (lambda m: {"x.npy": npy_header((10**6, 10**6))}, "at most 1,000,000,000"),
    "more than it holds": (lambda m: {"x.npy": npy_header((10**4, 10**4))}, "cut short"),
    "negative shape": (lambda m: {"x.npy": npy_header((-4, 6))}, r"shape \(-4, 6\)"),
    "labels of text": (lambda m: {"x.npy": X, "y.npy": b"0,1,2,3"}, "NumPy's header"),
    "parent path": (lambda m: {"../x.npy": X}, "'../x.npy'; the members of a .npz archive"),
    "sub path": (lambda m: {"a/x.npy": X}, "plain names"),
    "windows path": (lambda m: {"a\\x.npy": X}, "plain names"),
}


@pytest.mark.parametrize("case", NPZ_MEMBERS)
def test_npz_member_that_is_not_a_numeric_array_is_refused(tmp_path, case):
    marker = tmp_path / "pickle-ran"
    members, match = NPZ_MEMBERS[case]
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        (tmp_path / "d.npz").write_bytes(zip_bytes(members(marker), compression))
        refused(tmp_path / "d.npz", match)
    assert not marker.exists()


def test_npy_declaring_more_than_it_holds_is_refused_before_allocating(tmp_path):
    (tmp_path / "big.npy").write_bytes(npy_header((60_000, 784)))
    assert "holds only 64 bytes" in refused(tmp_path / "big.npy", "cut short")


def test_compressed_npz_loads(tmp_path):
    x = np.random.default_rng(0).random((3, 5)).astype(np.float32)
    np.savez_compressed(tmp_path / "d.npz", x=x, y=np.array([2, 0, 1]))
    data = read_file(tmp_path / "d.npz")
    np.testing.assert_array_equal(data.x, x)
    np.testing.assert_array_equal(data.y, [2, 0, 1])


# --- images: the declared size is checked before any pixel is decoded ----------------------


def png_of_zeros(width: int, height: int) -> bytes:
    """A valid grey PNG of ``width`` × ``height`` black pixels, compressed row by row (a few
    tens of kilobytes for tens of megapixels, never held uncompressed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    deflate = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte 0, then the pixels
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.fixture
def no_decoding(monkeypatch):
    """Make decoding pixels fail loudly: a refusal must come from the header alone."""

    def decode(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(Image.Image, "load", decode)
    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)


def test_image_larger_than_one_input_is_refused_before_decoding(tmp_path, no_decoding):
    side = 7072  # 7072² = 50,013,184 grey values, just over the limit; the PNG is about 50 KB
    assert side * side > MAX_INPUT_VALUES
    (tmp_path / "big.png").write_bytes(png_of_zeros(side, side))
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "big.png").write_bytes(png_of_zeros(side, side))
    for path in (tmp_path / "big.png", tmp_path / "folder"):
        message = refused(path, "7072x7072 pixels with 1 channel")
        assert "50,013,184 values; one input may have at most 50,000,000" in message


def test_folder_of_images_is_refused_by_total_size_before_decoding(tmp_path, monkeypatch):
    for name in ("a.png", "b.png", "c.png"):
        save(tmp_path / name, np.zeros((6, 6)))
    monkeypatch.setattr(readers, "MAX_DATA_VALUES", 100)  # 3 × 36 = 108 values
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("pixels were decoded"))
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))
    refused(tmp_path, "108 values in all; vaekit reads at most 100")
    assert MAX_DATA_VALUES == 1_000_000_000  # the real limit, patched only above


def test_image_of_another_format_is_refused(tmp_path):
    Image.new("L", (4, 4)).save(tmp_path / "a.png", format="BMP")  # not PNG, whatever its name
    refused(tmp_path / "a.png", "not a readable image")
