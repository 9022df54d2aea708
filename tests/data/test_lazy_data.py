"""Data read on demand: .npy files and folders of shards read row by row, folders of images
decoded batch by batch (sizes and colour modes), and the background reader of batches."""

import struct
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

from vaekit.data import readers
from vaekit.data.prefetch import THREAD_NAME, batches
from vaekit.data.readers import read_file, read_image
from vaekit.data.sources import Concatenated, NpyFile, Subset, in_memory
from vaekit.errors import ConfigError, DataError

RNG = np.random.default_rng(0)


def _orders(n: int):
    """Index arrays a loop or a user may ask for: random, sorted, reversed, with repeats,
    negative, empty, one row."""
    yield RNG.permutation(n)[: n // 2]
    yield np.sort(RNG.choice(n, n // 3, replace=False))
    yield np.arange(n)[::-1]
    yield RNG.integers(0, n, 50)  # repeats
    yield np.array([-1, 0, -n])
    yield np.array([], dtype=np.int64)
    yield np.array([7])


# --- .npy files -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, ">f8", np.int16])
def test_npy_rows_equal_numpy_for_any_index(tmp_path, dtype):
    x = (RNG.random((301, 5, 3)) * 100).astype(dtype)
    np.save(tmp_path / "x.npy", x)
    lazy = read_file(tmp_path / "x.npy").x
    assert isinstance(lazy, NpyFile) and lazy.shape == (301, 1, 5, 3) and lazy.dtype == x.dtype
    full = np.load(tmp_path / "x.npy")[:, None]
    for index in _orders(len(x)):
        np.testing.assert_array_equal(lazy[index], full[index])
    for key in (slice(None), slice(10, 20), slice(290, 400), slice(5, 5), slice(None, None, -7)):
        np.testing.assert_array_equal(lazy[key], full[key])
    np.testing.assert_array_equal(lazy[3], full[3])
    np.testing.assert_array_equal(in_memory(lazy), full)


def test_npy_rows_beyond_the_end_are_an_index_error(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 2), np.float32))
    lazy = read_file(tmp_path / "x.npy").x
    for key in (np.array([0, 4]), np.array([-5]), np.array([0.5])):
        with pytest.raises(IndexError):
            lazy[key]


def test_npy_cut_short_after_opening_is_a_data_error(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.ones((100, 50), np.float32))
    lazy = read_file(path).x
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size - 1000)
    for key in (np.array([99]), slice(0, 100), np.array([0])):
        with pytest.raises(DataError, match="cut short") as info:
            lazy[key]
        assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_read_cut_short_by_the_kernel_is_completed(tmp_path, monkeypatch):
    """``preadv`` may return fewer bytes than asked for: the rest is read by further calls."""
    import os

    x = RNG.random((40, 30)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    lazy = read_file(tmp_path / "x.npy").x
    real = os.preadv

    def stingy(fd, views, offset):  # at most 100 bytes of the first view per call
        return real(fd, [views[0][:100]], offset)

    monkeypatch.setattr(os, "preadv", stingy)
    np.testing.assert_array_equal(lazy[np.array([3, 4, 5, 9, 1])], x[[3, 4, 5, 9, 1]])
    np.testing.assert_array_equal(lazy[2:30], x[2:30])


# --- folders of .npy shards -------------------------------------------------------------------


def test_shards_are_one_array_in_name_order(tmp_path):
    x = RNG.random((100, 4, 4)).astype(np.float32)
    folder = tmp_path / "shards"
    folder.mkdir()
    for name, part in (("b.npy", x[40:41]), ("a.npy", x[:40]), ("c.npy", x[41:])):
        np.save(folder / name, part)
    data = read_file(folder)
    assert isinstance(data.x, Concatenated) and data.y is None and not data.pixels
    assert data.x.shape == (100, 1, 4, 4) and len(data) == 100
    full = x[:, None]
    for index in _orders(len(x)):
        np.testing.assert_array_equal(data.x[index], full[index])
    np.testing.assert_array_equal(data.x[:], full)
    np.testing.assert_array_equal(data.x[39:42], full[39:42])


@pytest.mark.parametrize(
    "second, words",
    [
        (np.zeros((3, 5), np.float32), r"b.npy holds examples of shape \(5,\) and type float32"),
        (np.zeros((3, 4), np.float64), "float64 but a.npy holds"),
        (np.zeros((3, 2, 2), np.float32), r"shape \(1, 2, 2\)"),
    ],
    ids=["shape", "dtype", "rank"],
)
def test_shards_that_differ_are_refused_naming_the_first(tmp_path, second, words):
    np.save(tmp_path / "a.npy", np.zeros((3, 4), np.float32))
    np.save(tmp_path / "b.npy", second)
    np.save(tmp_path / "c.npy", np.zeros((3, 7), np.int8))
    with pytest.raises(DataError, match=words) as info:
        read_file(tmp_path)
    assert "all shards" in str(info.value)


def test_shard_folder_with_anything_else_is_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 4), np.float32))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="notes.txt; a folder of shards holds .npy files only"):
        read_file(tmp_path)


# --- folders of images: sizes and modes --------------------------------------------------------


def save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode).save(path)


def _stripes(width: int, height: int, vertical: bool) -> np.ndarray:
    """Grey image, the middle third (of the columns, or of the rows) 200, the rest 0."""
    image = np.zeros((height, width), np.uint8)
    if vertical:
        image[:, width // 3 : 2 * width // 3] = 200
    else:
        image[height // 3 : 2 * height // 3] = 200
    return image


@pytest.mark.parametrize(("width", "height"), [(60, 20), (20, 60)], ids=["wide", "tall"])
def test_image_size_covers_then_keeps_the_middle(tmp_path, width, height):
    """60x20 to 10x10: scaled by 1/2 to 30x10, the middle 10 columns kept, which are the
    middle third of the source; the same for a tall image and its rows."""
    save(tmp_path / "a.png", _stripes(width, height, vertical=width > height))
    image = read_image(tmp_path / "a.png", (10, 10))
    assert image.shape == (1, 10, 10) and image.dtype == np.uint8
    middle = image[0, 2:-2, 2:-2]  # away from the edges, where the filter reaches outside
    np.testing.assert_array_equal(middle, 200)
    assert read_file(tmp_path, image_size=(10, 10)).x[:].shape == (1, 1, 10, 10)


def test_every_source_size_reads_at_every_target_size():
    """The crop box is computed in floating point; it must never fall a rounding error outside
    the image (which Pillow refuses: "box offset can't be negative"). Every source size from
    40 to 90 pixels a side against a grid of targets, wide, tall and square."""
    import io

    targets = [(28, 28), (32, 32), (64, 64), (28, 45), (45, 28), (90, 40), (7, 100)]
    for width in range(40, 91):
        for height in range(40, 91):
            buffer = io.BytesIO()
            Image.new("L", (width, height), 90).save(buffer, format="PNG")
            data = buffer.getvalue()
            for target in targets:
                image = read_image(data, target)
                assert image.shape == (1, *target), (width, height, target)
                assert image[0, 1:-1, 1:-1].min() == 90, (width, height, target)


def test_image_size_enlarges_and_sets_any_aspect(tmp_path):
    save(tmp_path / "a.png", np.full((3, 5), 90))
    image = read_image(tmp_path / "a.png", (12, 7))
    assert image.shape == (1, 12, 7)
    np.testing.assert_array_equal(image, 90)  # a flat image stays flat


def test_images_of_many_sizes_read_at_one_size(tmp_path):
    for i, (w, h) in enumerate([(28, 28), (40, 30), (17, 50), (100, 3)]):
        save(tmp_path / f"{i}.png", np.full((h, w), 10 * i))
    data = read_file(tmp_path, image_size=(8, 6))
    assert data.x.shape == (4, 1, 8, 6)
    batch = data.x[np.array([3, 1])]
    np.testing.assert_array_equal(batch[:, 0, 4, 3], [30, 10])


def test_image_modes(tmp_path):
    grey, colour = tmp_path / "grey.png", tmp_path / "colour.png"
    save(grey, np.full((4, 4), 77))
    save(colour, np.stack([np.full((4, 4), v) for v in (255, 0, 51)], axis=-1))
    assert read_image(grey).shape == (1, 4, 4)
    assert read_image(colour).shape == (3, 4, 4)  # auto: colour stays colour
    np.testing.assert_array_equal(read_image(grey, image_mode="rgb")[:, 0, 0], [77, 77, 77])
    expected_luma = round(255 * 299 / 1000 + 51 * 114 / 1000)  # ITU-R 601-2, as Pillow
    assert abs(int(read_image(colour, image_mode="grey")[0, 0, 0]) - expected_luma) <= 1
    # a folder in auto mode is RGB when any image has colour, grey otherwise
    (tmp_path / "mixed").mkdir()
    grey.rename(tmp_path / "mixed" / "a.png")
    colour.rename(tmp_path / "mixed" / "b.png")
    mixed = read_file(tmp_path / "mixed")
    assert mixed.x.shape == (2, 3, 4, 4)
    np.testing.assert_array_equal(mixed.x[0][:, 0, 0], [77, 77, 77])
    assert read_file(tmp_path / "mixed", image_mode="grey").x.shape == (2, 1, 4, 4)


def test_sixteen_bit_grey_is_levels_over_257_at_any_size(tmp_path):
    Image.fromarray(np.full((6, 9), 257 * 100, np.uint16)).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png", (4, 4), "rgb")
    assert image.dtype == np.float32 and image.shape == (3, 4, 4)
    np.testing.assert_allclose(image, 100, rtol=1e-6)


def test_an_uploaded_image_reads_as_its_file(tmp_path):
    save(tmp_path / "a.png", RNG.integers(0, 256, (30, 20, 3)))
    from_file = read_image(tmp_path / "a.png", (9, 9), "grey")
    from_bytes = read_image((tmp_path / "a.png").read_bytes(), (9, 9), "grey")
    np.testing.assert_array_equal(from_file, from_bytes)
    folder = read_file(tmp_path, image_size=(9, 9), image_mode="grey").x[0]
    np.testing.assert_array_equal(folder, from_file)
    with pytest.raises(DataError, match="the image is not a readable image"):
        read_image(b"\x89PNG\r\n\x1a\n broken")


@pytest.mark.parametrize(
    "size, mode",
    [
        ((0, 0), "auto"),
        ((-3, 8), "auto"),
        ((5000, 5000), "auto"),
        ((8, 8.5), "auto"),
        (None, "cmyk"),
    ],
)
def test_bad_image_options_are_a_config_error(tmp_path, size, mode):
    save(tmp_path / "a.png", np.zeros((4, 4)))
    with pytest.raises(ConfigError, match="image_size|image_mode"):
        read_file(tmp_path, image_size=size, image_mode=mode)


def _png_cut_short(width: int, height: int) -> bytes:
    """A grey PNG whose header is whole but whose pixel data stop half way."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = RNG.integers(0, 256, (height, width + 1), dtype=np.uint8)
    rows[:, 0] = 0  # each row's filter byte: none
    data = zlib.compress(rows.tobytes())
    idat = data[: len(data) // 2]
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)


def test_an_image_that_fails_to_decode_is_named_when_read(tmp_path):
    for i in range(4):
        save(tmp_path / f"{i}.png", np.full((20, 20), i))
    (tmp_path / "2.png").write_bytes(_png_cut_short(20, 20))
    data = read_file(tmp_path)  # the headers are sound
    np.testing.assert_array_equal(data.x[np.array([0, 1, 3])][:, 0, 0, 0], [0, 1, 3])
    with pytest.raises(DataError, match="2.png is not a readable image"):
        data.x[:]
    with pytest.raises(DataError, match="2.png is not a readable image"):
        list(batches(data.x, np.arange(4), 1))


# --- the background reader ---------------------------------------------------------------------


class Recorded:
    """An array-like over ``x`` that counts its reads and can fail at read ``fail_at``."""

    def __init__(self, x: np.ndarray, fail_at: int | None = None) -> None:
        self.x, self.fail_at = x, fail_at
        self.shape, self.dtype, self.reads = x.shape, x.dtype, 0
        self.changed = threading.Condition()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, key):
        with self.changed:
            if self.reads == self.fail_at:
                raise DataError("the disk said no")
            self.reads += 1
            self.changed.notify_all()
        return self.x[key]

    def wait_for_reads(self, n: int) -> None:
        """Block until ``n`` reads have happened (the timeout only guards against a hang)."""
        with self.changed:
            assert self.changed.wait_for(lambda: self.reads >= n, timeout=60), self.reads


def _readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


@pytest.mark.parametrize("batch_size", [1, 7, 64, 200])
def test_prefetched_batches_are_those_of_the_synchronous_loop(tmp_path, batch_size):
    x = RNG.random((150, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    order = RNG.permutation(150)
    expected = list(batches(x, order, batch_size))  # an array: sliced in this thread
    for lazy in (read_file(tmp_path / "x.npy").x, Subset(x, np.arange(150))):
        got = list(batches(lazy, order, batch_size, depth=2))
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)
    assert not _readers()


def test_an_error_while_reading_is_raised_in_the_loop():
    x = Recorded(np.arange(40.0).reshape(20, 2), fail_at=3)
    got = []
    with pytest.raises(DataError, match="the disk said no"):
        for batch in batches(x, np.arange(20), 2):
            got.append(batch)
    assert len(got) == 3
    assert not _readers()


def test_closing_early_stops_the_reader_even_when_it_waits_for_room():
    x = Recorded(np.arange(200.0).reshape(100, 2))
    gen = batches(x, np.arange(100), 1, depth=2)
    next(gen)
    x.wait_for_reads(4)  # one taken, two queued, one waiting for room
    assert len(_readers()) == 1
    gen.close()
    assert not _readers()
    assert x.reads < 100


def _consume(x, stop_with: type[BaseException] | None) -> int:
    for i, _ in enumerate(batches(x, np.arange(len(x)), 1, depth=1)):
        if i == 2:
            if stop_with is None:
                break
            raise stop_with("stop")
    return i


@pytest.mark.parametrize("stop_with", [None, ValueError, KeyboardInterrupt])
def test_leaving_the_loop_stops_the_reader(stop_with):
    x = Recorded(np.zeros((50, 3)))
    if stop_with is None:
        assert _consume(x, None) == 2
    else:
        with pytest.raises(stop_with):
            _consume(x, stop_with)
    assert not _readers()


def test_data_in_memory_are_sliced_without_a_thread():
    x = np.arange(10.0)
    gen = batches(x, np.arange(10)[::-1], 4)
    assert next(gen).tolist() == [9, 8, 7, 6] and not _readers()
    assert [b.tolist() for b in gen] == [[5, 4, 3, 2], [1, 0]]


def test_a_npy_file_beyond_the_in_memory_limit_is_read_in_batches(tmp_path):
    """Arrays read on demand have no size limit but their file's: a sparse file of more values
    than MAX_DATA_VALUES (4 GB of float32) opens, and its rows read as they are stored."""
    shape = (readers.MAX_DATA_VALUES // 1000 + 1, 1000)
    path = tmp_path / "big.npy"
    with path.open("wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": shape}
        )
        f.truncate(f.tell() + 4 * shape[0] * shape[1])  # sparse: no disk blocks
    data = read_file(path)
    assert data.x.shape == shape
    np.testing.assert_array_equal(data.x[np.array([shape[0] - 1, 0])], np.zeros((2, 1000)))
