"""Read a user's own data: ``.npy``, ``.npz``, ``.csv`` or a directory of images.

Every reader returns a :class:`~vaekit.data.dataset.RawData` whose ``x`` holds the numbers as
stored (scaling is a separate, explicit step: :mod:`vaekit.data.scaling`), with shape
``(N, D)`` for tables and ``(N, C, H, W)`` for images (``(N, H, W)`` arrays gain a channel
axis), and whose ``y`` is int64 labels of shape ``(N,)`` or ``None`` (see
:func:`~vaekit.data.labels.class_labels`). Files are never unpickled.

What a file declares is checked before memory is allocated for it: an array header's shape and
type against the bytes the file (or archive member) really holds and against
:data:`MAX_DATA_VALUES`; an image's width × height × channels against
:data:`~vaekit.config.MAX_INPUT_VALUES` (the most values one model input may have), and a
folder's images together against :data:`MAX_DATA_VALUES`, before any pixel is decoded.
"""

from __future__ import annotations

import contextlib
import csv
import lzma
import math
import tokenize
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from vaekit.config import MAX_INPUT_VALUES
from vaekit.data.dataset import RawData
from vaekit.data.labels import class_labels
from vaekit.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LABEL_COLUMNS = ("label", "y")
_GREY_MODES = ("1", "L", "LA", "La")
_GREY16_MODES = ("I", "I;16", "I;16B", "I;16L")
_IMAGE_FORMATS = ("PNG", "JPEG")
#: Most values one data file (or folder of images) may declare: 20 times the full MNIST training
#: set; as float32, 4 GB.
MAX_DATA_VALUES = 1_000_000_000
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"
_PICKLE_MAGIC = b"\x80"  # pickle protocol 2 and later


def read_file(
    path: str | Path, *, image_size: tuple[int, int] | None = None, image_mode: str = "auto"
) -> RawData:
    """Read user data from ``path``, choosing the reader by suffix (or directory); the values
    are returned as stored (see :mod:`vaekit.data.scaling` for how they become model inputs).

    - ``.npy``: one array of examples, no labels;
    - ``.npz``: arrays ``x`` and optional ``y``, else the first array and no labels;
    - ``.csv``: numbers; a first row with any non-numeric cell is a header, and a header
      column named ``label`` or ``y`` holds integer labels;
    - one PNG/JPEG image (one example);
    - a directory of PNG/JPEG images of one size (sorted by name, no labels), or a directory
      of subdirectories, one per class, labelled 0, 1, ... in sorted name order; their pixels
      are 8-bit levels 0…255 (``pixels``).
    """
    path = Path(path)
    pixels = False
    if path.is_dir():
        (x, y), pixels = _read_image_dir(path), True
    elif not path.is_file():
        raise DataError(f"{path} does not exist.")
    elif path.suffix.lower() == ".npy":
        x, y = _read_npy(path), None
    elif path.suffix.lower() == ".npz":
        x, y = _read_npz(path)
    elif path.suffix.lower() == ".csv":
        x, y = _read_csv(path)
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        x, y, pixels = _read_image(path)[None], None, True
    else:
        raise DataError(
            f"{path} has an unsupported type; use .npy, .npz, .csv, .png, .jpg "
            "or a directory of images."
        )
    x = as_examples(x, str(path))
    y = None if y is None else class_labels(y, str(path), len(x))
    return RawData(x=x, y=y, name=path.name, pixels=pixels)


def as_examples(x: np.ndarray, source: str) -> np.ndarray:
    """Check the shape of an example array, (N, D), (N, H, W) → (N, 1, H, W) or (N, C, H, W),
    and that it holds numbers; the values are kept as they are."""
    if x.ndim not in (2, 3, 4):
        raise DataError(
            f"{source} holds an array of shape {x.shape}; expected (N, D), (N, H, W) "
            "or (N, C, H, W)."
        )
    if x.shape[0] == 0:
        raise DataError(f"{source} holds no examples.")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{source} holds values of type {x.dtype}; numbers are needed.")
    if x.ndim == 3:
        x = x[:, None]
    return x


@contextlib.contextmanager
def _reading(path: Path, kind: str) -> Iterator[None]:
    """Turn what numpy and zipfile raise on a damaged ``kind`` file into one DataError."""
    try:
        yield
    except (SyntaxError, tokenize.TokenError):  # numpy parses the header as Python literals
        raise DataError(
            f"{path} is not a valid {kind} file (an array header is damaged)."
        ) from None
    except (
        ValueError,
        OSError,
        EOFError,
        RuntimeError,  # zipfile: an encrypted member, an unknown compression method
        zipfile.BadZipFile,
        zlib.error,
        lzma.LZMAError,
    ) as exc:
        raise DataError(f"{path} is not a valid {kind} file ({exc}).") from None
    except MemoryError:
        raise DataError(
            f"{path} holds an array too large for this machine's memory; use a smaller file."
        ) from None


def _refuse_non_array(start: bytes, source: str) -> None:
    """Refuse data that does not begin as a .npy array does: a pickle, or anything else."""
    if start.startswith(_PICKLE_MAGIC):
        raise DataError(
            f"{source} holds Python objects (pickled data), which vaekit never loads; save "
            "numeric arrays instead."
        )
    if not start.startswith(_NPY_MAGIC):
        raise DataError(f"{source} is not a NumPy array (it does not start with NumPy's header).")


def _read_array(stream: BinaryIO, size: int, source: str) -> np.ndarray:
    """Read the .npy array that fills ``stream`` (``size`` bytes in all).

    Its header is checked before anything is allocated: no Python objects, at most
    :data:`MAX_DATA_VALUES` values, and no more bytes of data than the stream holds, so that a
    header cannot make vaekit reserve more memory than the file itself occupies.
    """
    _refuse_non_array(stream.read(len(_NPY_MAGIC)), source)
    stream.seek(0)
    version = np.lib.format.read_magic(stream)
    if version not in ((1, 0), (2, 0)):
        raise DataError(f"{source} is not a valid .npy array (format version {version}).")
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    if dtype.hasobject:
        _refuse_non_array(_PICKLE_MAGIC, source)
    values = math.prod(shape)
    if any(d < 0 for d in shape) or values > MAX_DATA_VALUES:
        raise DataError(
            f"{source} declares an array of shape {shape}; vaekit reads arrays of at most "
            f"{MAX_DATA_VALUES:,} values."
        )
    available = size - stream.tell()
    if values * dtype.itemsize > available:
        raise DataError(
            f"{source} declares an array of shape {shape} ({values * dtype.itemsize:,} bytes of "
            f"{dtype}) but holds only {available:,} bytes of data; is it cut short?"
        )
    stream.seek(0)
    return np.lib.format.read_array(stream, allow_pickle=False)


def _read_npy(path: Path) -> np.ndarray:
    with _reading(path, ".npy"), path.open("rb") as f:
        if f.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC:
            raise DataError(f"{path} is a .npz archive, not a .npy file; rename it to .npz.")
        f.seek(0)
        return _read_array(f, path.stat().st_size, str(path))


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Arrays ``x`` and ``y`` (``x.npy``, ``y.npy``) of a .npz archive, else its first member."""
    with _reading(path, ".npz"), path.open("rb") as f:
        start = f.read(len(_NPY_MAGIC))
        if start.startswith(_NPY_MAGIC):
            raise DataError(f"{path} is a single .npy array, not a .npz archive.")
        if not start.startswith(_ZIP_MAGIC):
            _refuse_non_array(start, str(path))
        f.seek(0)
        with zipfile.ZipFile(f) as archive:
            members = archive.infolist()
            if not members:
                raise DataError(f"{path} holds no arrays.")
            for info in members:
                if "/" in info.filename or "\\" in info.filename:
                    raise DataError(
                        f"{path} holds a member named {info.filename!r}; the members of a .npz "
                        "archive have plain names such as x.npy."
                    )
            by_name = {info.filename.removesuffix(".npy"): info for info in members}

            def read(info: zipfile.ZipInfo) -> np.ndarray:
                with archive.open(info) as member:
                    return _read_array(member, info.file_size, f"{path} (member {info.filename})")

            if "x" in by_name:
                return read(by_name["x"]), read(by_name["y"]) if "y" in by_name else None
            return read(members[0]), None


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a numeric CSV; rows and columns in errors are 1-based, as in a text editor."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            lines = [(reader.line_num, row) for row in reader if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} could not be read as CSV text ({exc}).") from exc
    if not lines:
        raise DataError(f"{path} holds no rows.")
    header = None
    if not all(_is_number(cell) for cell in lines[0][1]):
        header = [cell.strip() for cell in lines[0][1]]
        lines = lines[1:]
    width = len(header or lines[0][1])
    label_cols = [i for i, name in enumerate(header or []) if name.lower() in LABEL_COLUMNS]
    if len(label_cols) > 1:
        raise DataError(f"{path} has more than one label column ('label' or 'y').")
    values = np.empty((len(lines), width), dtype=np.float64)
    for i, (line_num, row) in enumerate(lines):
        if len(row) != width:
            raise DataError(f"{path} line {line_num} has {len(row)} columns instead of {width}.")
        try:
            values[i] = [float(cell) for cell in row]
        except ValueError:
            col = next(j for j, cell in enumerate(row) if not _is_number(cell))
            name = f" ({header[col]!r})" if header else ""
            raise DataError(
                f"{path} line {line_num} column {col + 1}{name} holds {row[col]!r}, "
                "which is not a number."
            ) from None
    if not label_cols:
        return values, None
    keep = [j for j in range(width) if j != label_cols[0]]
    return values[:, keep], values[:, label_cols[0]]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_image_dir(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read images from ``path``, or from its class subdirectories, sorted by name."""
    images = _image_files(path)
    classes = sorted(
        (p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    if images and classes:
        raise DataError(
            f"{path} holds both images and subdirectories; keep either images only, or one "
            "subdirectory of images per class."
        )
    if images:
        return _read_images(path, images), None
    if not classes:
        raise DataError(f"{path} holds no PNG or JPEG images and no class subdirectories.")
    files, labels = [], []
    for label, folder in enumerate(classes):
        found = _image_files(folder)
        if not found:
            raise DataError(f"{folder} (a class directory) holds no PNG or JPEG images.")
        files += found
        labels += [label] * len(found)
    return _read_images(path, files), np.array(labels, dtype=np.int64)


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        (
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        ),
        key=lambda p: p.name,
    )


@contextlib.contextmanager
def _open_image(path: Path) -> Iterator[Image.Image]:
    """``path`` opened as a PNG or JPEG, its header read and its declared size checked against
    :data:`MAX_INPUT_VALUES`, its pixels not decoded yet; Pillow's errors become DataError."""
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 million pixels; vaekit refuses far smaller images below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path, formats=_IMAGE_FORMATS)
        with img:
            width, height = img.size
            channels = _channels(img)
            if width * height * channels > MAX_INPUT_VALUES:
                raise DataError(
                    f"{path} is an image of {width}x{height} pixels with {channels} channel(s), "
                    f"{width * height * channels:,} values; one input may have at most "
                    f"{MAX_INPUT_VALUES:,}."
                )
            yield img
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path} is not a readable image ({exc}).") from exc


def _channels(img: Image.Image) -> int:
    """Channels an image is read with: 1 for grey levels, 3 (RGB) for anything else."""
    return 1 if img.mode in (*_GREY_MODES, *_GREY16_MODES) else 3


def _read_image(path: Path) -> np.ndarray:
    """Read one image as (C, H, W) 8-bit levels: grey -> 1 channel, colour -> 3 (RGB); uint8,
    or float32 levels 0…255 for 16-bit grey images (levels / 257)."""
    with _open_image(path) as img:
        img.load()
        if img.mode in _GREY16_MODES:
            pixels = np.asarray(img, dtype=np.float32) / np.float32(257)
        else:
            rgb = img.mode not in _GREY_MODES
            pixels = np.asarray(img.convert("RGB" if rgb else "L"), dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _read_images(folder: Path, files: list[Path]) -> np.ndarray:
    """Read and stack ``files``, once their declared sizes together are known to be within
    :data:`MAX_DATA_VALUES` (every header is read before any image is decoded)."""
    total = 0
    for path in files:
        with _open_image(path) as img:
            total += img.width * img.height * _channels(img)
    if total > MAX_DATA_VALUES:
        raise DataError(
            f"{folder} holds images of {total:,} values in all; vaekit reads at most "
            f"{MAX_DATA_VALUES:,}."
        )
    return _stack([_read_image(p) for p in files], files)


def _stack(pixels: list[np.ndarray], files: list[Path]) -> np.ndarray:
    """Stack per-image arrays, naming the first file whose size or channels differ."""
    first = pixels[0].shape
    for p, f in zip(pixels, files, strict=True):
        if p.shape != first:
            raise DataError(
                f"{f} has {p.shape[0]} channel(s) of {p.shape[2]}x{p.shape[1]} pixels but "
                f"{files[0].name} has {first[0]} of {first[2]}x{first[1]}; all images must "
                "match."
            )
    return np.stack(pixels)
