"""Read a user's own data: ``.npy``, ``.npz``, ``.csv`` or a directory of images.

Every reader returns a :class:`~vaekit.data.dataset.RawData`: ``x`` the numbers as stored
(scaling is a separate step, :mod:`vaekit.data.scaling`), ``(N, D)`` tables or ``(N, C, H, W)``
images (``(N, H, W)`` arrays gain a channel axis); ``y`` int64 labels ``(N,)`` or ``None``
(:func:`~vaekit.data.labels.class_labels`); ``classes`` the names of the labels' codes where the
data names them (:mod:`vaekit.data.classes`). Files are never unpickled.

What a file declares is checked before memory is allocated for it: an array header's shape and
type against the bytes the file (or archive member) really holds and, for arrays read whole,
against :data:`MAX_DATA_VALUES`; an image's width × height × channels against
:data:`~vaekit.config.settings.MAX_INPUT_VALUES` (the most values one model input may have), and a
folder's images together against :data:`MAX_DATA_VALUES`, before any pixel is decoded.

Data larger than memory stay on disk: a ``.npy`` file or folder of ``.npy`` shards is read row
by row as the loop asks (:class:`~vaekit.data.sources.NpyFile`), a folder of images decoded
batch by batch (:class:`~vaekit.data.sources.Decoded`); ``.npz`` and ``.csv`` are read whole.
"""

from __future__ import annotations

import contextlib
import csv
import io
import lzma
import math
import os
import tokenize
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from vaekit.config.limits import IMAGE_MODES, MAX_IMAGE_SIDE, MAX_INPUT_VALUES
from vaekit.data.classes import as_text, check_names
from vaekit.data.dataset import RawData
from vaekit.data.labels import class_labels
from vaekit.data.sources import Concatenated, Decoded, NpyFile
from vaekit.errors import ConfigError, DataError

# Pillow is imported by the functions that read images: it costs start-up time.
if TYPE_CHECKING:
    from PIL import Image

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

    - ``.npy``: one array of examples, no labels, read from the file on demand;
    - a directory of ``.npy`` files (shards, nothing else): their arrays one after another in
      name order, read on demand; all of one dtype and example shape; no labels;
    - ``.npz``: arrays ``x`` and optional ``y``, else the first array and no labels; a
      ``classes`` member (a 1-D array of strings) names the codes of ``y``;
    - ``.csv``: numbers; a first row with any non-numeric cell is a header, and a header
      column named ``label`` or ``y`` holds the labels: whole numbers, or, when any cell is
      not a number, class names (each cell stripped), coded 0, 1, ... in sorted order;
    - one PNG/JPEG image (one example);
    - a directory of PNG/JPEG images (sorted by name, no labels), or a directory of
      subdirectories, one per class, labelled 0, 1, ... in sorted name order and named by
      the subdirectories (:func:`~vaekit.data.classes.as_text`), decoded on demand; their
      pixels are 8-bit levels 0…255 (``pixels``). Images are read as :func:`read_image` says:
      of one size, or brought to ``image_size`` (H, W); grey or RGB by ``image_mode``, where
      ``auto`` means RGB when any image of the folder has colour.
    """
    path = Path(path)
    _check_image_options(image_size, image_mode)
    pixels, classes = False, None
    if path.is_dir() and _npy_files(path):
        x, y = _read_npy_dir(path), None
    elif path.is_dir():
        (x, y, classes), pixels = _read_image_dir(path, image_size, image_mode), True
    elif not path.is_file():
        there = path.exists() or path.is_symlink()
        raise DataError(f"{path} {'is not a regular file' if there else 'does not exist'}.")
    elif path.suffix.lower() == ".npy":
        x, y = _read_npy(path), None
    elif path.suffix.lower() == ".npz":
        x, y, classes = _read_npz(path)
    elif path.suffix.lower() == ".csv":
        x, y, classes = _read_csv(path)
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        x, y, pixels = read_image(path, image_size, image_mode)[None], None, True
    else:
        raise DataError(
            f"{path} has an unsupported type; use .npy, .npz, .csv, .png, .jpg "
            "or a directory of images or of .npy files."
        )
    x = as_examples(x, str(path))
    y = None if y is None else class_labels(y, str(path), len(x))
    if classes is not None and len(y) and int(y.max()) >= len(classes):
        raise DataError(
            f"{path} has label {int(y.max())} but names only {len(classes)} classes (codes 0 to "
            f"{len(classes) - 1})."
        )
    return RawData(x=x, y=y, name=path.name, pixels=pixels, classes=classes)


def _check_image_options(image_size: tuple[int, int] | None, image_mode: str) -> None:
    if image_mode not in IMAGE_MODES:
        raise ConfigError(f"image_mode must be one of {', '.join(IMAGE_MODES)}, not {image_mode!r}")
    if image_size is None:
        return
    if len(image_size) != 2 or not all(
        isinstance(side, (int, np.integer)) and 1 <= side <= MAX_IMAGE_SIDE for side in image_size
    ):
        raise ConfigError(
            f"image_size must be two whole numbers (H, W) from 1 to {MAX_IMAGE_SIDE}, "
            f"not {tuple(image_size)!r}"
        )


def as_examples(x: Any, source: str) -> Any:
    """Check the shape of an array (or array-like, see :mod:`vaekit.data.sources`) of
    examples, (N, D), (N, H, W) → (N, 1, H, W) or (N, C, H, W), and that it holds numbers;
    the values are kept as they are (and are not read here)."""
    shape = tuple(x.shape)
    _check_examples(shape, x.dtype, source)
    if len(shape) == 3:
        x = x[:, None] if isinstance(x, np.ndarray) else x.reshaped((shape[0], 1, *shape[1:]))
    return x


def _check_examples(shape: tuple[int, ...], dtype: np.dtype, source: str) -> None:
    if len(shape) not in (2, 3, 4):
        raise DataError(
            f"{source} holds an array of shape {shape}; expected (N, D), (N, H, W) or (N, C, H, W)."
        )
    if shape[0] == 0:
        raise DataError(f"{source} holds no examples.")
    if math.prod(shape[1:]) == 0:
        raise DataError(f"{source} holds examples of shape {shape[1:]}, which have no values.")
    if dtype.kind not in "biuf":
        raise DataError(f"{source} holds values of type {dtype}; numbers are needed.")


@contextlib.contextmanager
def _reading(path: Path, kind: str) -> Iterator[None]:
    """Turn what numpy and zipfile raise on a damaged ``kind`` file into one DataError."""
    try:
        yield
    except DataError:  # a ValueError too, already naming the file: not wrapped again
        raise
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


def _array_header(
    stream: BinaryIO, size: int, source: str, limit: int | None = MAX_DATA_VALUES
) -> tuple[tuple, np.dtype, bool]:
    """The shape, dtype and Fortran order that the .npy array filling ``stream`` (``size``
    bytes in all) declares, the stream left at the start of its data.

    The header is checked before anything is allocated: no Python objects, at most ``limit``
    values (None: any number, for arrays read on demand, which allocate only a batch at a
    time), and no more bytes of data than the stream holds, so that a header cannot make vaekit
    reserve more memory than the file itself occupies.
    """
    _refuse_non_array(stream.read(len(_NPY_MAGIC)), source)
    stream.seek(0)
    version = np.lib.format.read_magic(stream)
    if version not in ((1, 0), (2, 0)):
        raise DataError(f"{source} is not a valid .npy array (format version {version}).")
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    if dtype.hasobject:
        _refuse_non_array(_PICKLE_MAGIC, source)
    values = math.prod(shape)
    if any(d < 0 for d in shape):
        raise DataError(f"{source} declares an array of shape {shape}.")
    if limit is not None and values > limit:
        raise DataError(
            f"{source} declares an array of shape {shape}; vaekit reads arrays of at most "
            f"{limit:,} values into memory (save it as a .npy file, which is read in batches)."
        )
    available = size - stream.tell()
    if values * dtype.itemsize > available:
        raise DataError(
            f"{source} declares an array of shape {shape} ({values * dtype.itemsize:,} bytes of "
            f"{dtype}) but holds only {available:,} bytes of data; is it cut short?"
        )
    return tuple(shape), dtype, fortran


def _read_array(stream: BinaryIO, size: int, source: str) -> np.ndarray:
    """Read the .npy array that fills ``stream`` (``size`` bytes in all) into memory, once
    its header has passed :func:`_array_header`."""
    _array_header(stream, size, source)
    stream.seek(0)
    return np.lib.format.read_array(stream, allow_pickle=False)


def _read_npy(path: Path) -> NpyFile | np.ndarray:
    """A .npy file's array, read on demand (:class:`NpyFile`); one in Fortran order (whose
    examples are not contiguous in the file) is read into memory."""
    with _reading(path, ".npy"), path.open("rb") as f:
        if f.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC:
            raise DataError(f"{path} is a .npz archive, not a .npy file; rename it to .npz.")
        f.seek(0)
        size = os.fstat(f.fileno()).st_size
        shape, dtype, fortran = _array_header(f, size, str(path), limit=None)
        _check_examples(shape, dtype, str(path))
        if fortran:
            f.seek(0)
            _array_header(f, size, str(path))  # read whole: within MAX_DATA_VALUES
            f.seek(0)
            return np.lib.format.read_array(f, allow_pickle=False)
        return NpyFile(path, shape, dtype, f.tell())


def _npy_files(folder: Path) -> list[Path]:
    """The .npy files of ``folder``, sorted by name."""
    return sorted(
        (p for p in folder.iterdir() if p.suffix.lower() == ".npy" and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def _read_npy_dir(folder: Path) -> Concatenated:
    """The .npy shards of ``folder`` one after another: each is checked as a .npy file is,
    and all must share dtype and example shape (the first that differs is named)."""
    shards = _npy_files(folder)
    for p in sorted(folder.iterdir(), key=lambda p: p.name):
        if not p.name.startswith(".") and (p.suffix.lower() != ".npy" or not p.is_file()):
            raise DataError(
                f"{folder} holds .npy shards and also {p.name}; a folder of shards holds "
                ".npy files only."
            )
    parts = [as_examples(_read_npy(p), str(p)) for p in shards]
    first = parts[0]
    for shard, part in zip(shards, parts, strict=True):
        if part.dtype != first.dtype or part.shape[1:] != first.shape[1:]:
            raise DataError(
                f"{shard} holds examples of shape {part.shape[1:]} and type {part.dtype} but "
                f"{shards[0].name} holds {first.shape[1:]} of {first.dtype}; all shards of "
                f"{folder} must match."
            )
    total = sum(math.prod(part.shape) for part in parts)
    if total > MAX_DATA_VALUES:
        raise DataError(
            f"{folder} holds shards of {total:,} values in all; vaekit reads at most "
            f"{MAX_DATA_VALUES:,}."
        )
    return Concatenated(parts)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...] | None]:
    """Arrays ``x`` and ``y`` (``x.npy``, ``y.npy``) of a .npz archive and the names of
    ``classes`` (``classes.npy``, strings), else its first member."""
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

            if "x" not in by_name:
                return read(members[0]), None, None
            y = read(by_name["y"]) if "y" in by_name else None
            if "classes" not in by_name:
                return read(by_name["x"]), y, None
            if y is None:
                raise DataError(f"{path} names classes but holds no labels y to name.")
            names = read(by_name["classes"])
            if names.dtype.kind != "U" or names.ndim != 1:
                raise DataError(
                    f"{path} (member classes.npy) holds {names.dtype} of shape {names.shape}; "
                    "the class names are a 1-D array of strings."
                )
            return read(by_name["x"]), y, check_names(names.tolist(), f"{path} (classes)")


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...] | None]:
    """Read a numeric CSV (its label column numbers or class names, see :func:`_csv_labels`);
    rows and columns in errors are 1-based, as in a text editor."""
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
    for line_num, row in lines:
        if len(row) != width:
            raise DataError(f"{path} line {line_num} has {len(row)} columns instead of {width}.")
    label_cells = [row[label_cols[0]] for _, row in lines] if label_cols else []
    named = not all(_is_number(cell) for cell in label_cells)
    values = np.empty((len(lines), width), dtype=np.float64)
    for i, (line_num, row) in enumerate(lines):
        if named:  # the label column is read below, as names
            row = [("0" if j == label_cols[0] else cell) for j, cell in enumerate(row)]
        try:
            values[i] = [float(cell) for cell in row]
        except ValueError:
            col = next(j for j, cell in enumerate(row) if not _is_number(cell))
            name = f" ({header[col]!r})" if header else ""
            raise DataError(
                f"{path} line {line_num} column {col + 1}{name} holds {row[col]!r}, "
                "which is not a number."
            ) from None
    with np.errstate(over="ignore"):
        bad = ~np.isfinite(values.astype(np.float32))  # NaN, ±inf, or beyond float32
    bad[:, label_cols] = False  # labels are checked as labels, below
    if bad.any():
        i, col = np.unravel_index(np.argmax(bad), bad.shape)
        line_num, row = lines[i]
        name = f" ({header[col]!r})" if header else ""
        raise DataError(
            f"{path} line {line_num} column {col + 1}{name} holds {row[col].strip()!r}, which is "
            "not a finite number within float32 (±3.4e38)."
        )
    if not label_cols:
        return values, None, None
    keep = [j for j in range(width) if j != label_cols[0]]
    position = [f"line {line_num} column {label_cols[0] + 1}" for line_num, _ in lines]
    if named:
        return values[:, keep], *_named_labels(label_cells, str(path), position)
    labels = class_labels(values[:, label_cols[0]], str(path), where=position)
    return values[:, keep], labels, None


def _named_labels(
    cells: list[str], source: str, position: list[str]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels that are class names: the names, stripped, are the sorted unique cells, and each
    label is its name's index; an empty cell is refused, naming its place."""
    stripped = [cell.strip() for cell in cells]
    if "" in stripped:
        raise DataError(f"{source} {position[stripped.index('')]} has no label.")
    names = check_names(sorted(set(stripped)), source)
    codes = {name: code for code, name in enumerate(names)}
    return np.array([codes[cell] for cell in stripped], dtype=np.int64), names


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_image_dir(
    path: Path, image_size: tuple[int, int] | None, image_mode: str
) -> tuple[Decoded, np.ndarray | None, tuple[str, ...] | None]:
    """The images of ``path``, or of its class subdirectories, sorted by name (read on
    demand), their labels and the names of their classes (the subdirectories')."""
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
        return _read_images(path, images, image_size, image_mode), None, None
    if not classes:
        raise DataError(
            f"{path} holds no PNG or JPEG images, no class subdirectories and no .npy files."
        )
    files, labels = [], []
    for label, folder in enumerate(classes):
        found = _image_files(folder)
        if not found:
            raise DataError(f"{folder} (a class directory) holds no PNG or JPEG images.")
        files += found
        labels += [label] * len(found)
    names = check_names([as_text(folder.name) for folder in classes], str(path))
    x = _read_images(path, files, image_size, image_mode)
    return x, np.array(labels, dtype=np.int64), names


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
def _open_image(source: Path | bytes) -> Iterator[Image.Image]:
    """``source`` (a file, or the bytes of one) opened as a PNG or JPEG, its header read and
    its declared size checked against :data:`MAX_INPUT_VALUES`, its pixels not decoded yet;
    Pillow's errors, then or while decoding, become DataError."""
    from PIL import Image

    name = "the image" if isinstance(source, bytes) else str(source)
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 million pixels; vaekit refuses far smaller images below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(
                io.BytesIO(source) if isinstance(source, bytes) else source,
                formats=_IMAGE_FORMATS,
            )
        with img:
            width, height = img.size
            channels = _channels(img)
            if width * height * channels > MAX_INPUT_VALUES:
                raise DataError(
                    f"{name} is an image of {width}x{height} pixels with {channels} channel(s), "
                    f"{width * height * channels:,} values; one input may have at most "
                    f"{MAX_INPUT_VALUES:,}."
                )
            yield img
    except DataError:  # a ValueError too, already naming the image: not wrapped again
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{name} is not a readable image ({exc}).") from exc


def _channels(img: Image.Image) -> int:
    """Channels an image holds: 1 for grey levels, 3 (RGB) for anything else."""
    return 1 if img.mode in (*_GREY_MODES, *_GREY16_MODES) else 3


def read_image(
    source: str | Path | bytes,
    image_size: tuple[int, int] | None = None,
    image_mode: str = "auto",
) -> np.ndarray:
    """One PNG or JPEG image (a file, or its bytes), as the folders of images are read: an
    array (C, H, W) of 8-bit levels 0…255, uint8, or float32 for 16-bit grey images
    (levels / 257).

    ``image_mode``: ``grey`` (C = 1), ``rgb`` (C = 3: colour as it is, grey repeated), or
    ``auto``: RGB when the image has colour. ``image_size`` (H, W): the image is scaled, its
    aspect ratio kept, to the smallest size that covers H × W (Pillow's bilinear filter, wide
    enough to average every source pixel when shrinking), and the middle H × W is kept;
    None keeps the image's own size. Pass the mode and size a model was trained with to read
    an image as its training images were read.
    """
    _check_image_options(image_size, image_mode)
    source = source if isinstance(source, bytes) else Path(source)
    with _open_image(source) as img:
        if image_mode == "auto":
            image_mode = "rgb" if _channels(img) == 3 else "grey"
        if image_size is not None:
            _check_input_size(source, image_size, image_mode)
        img.load()
        return _pixels(img, image_size, image_mode)


def _check_input_size(source: Any, size: tuple[int, int], mode: str) -> None:
    """Refuse an ``image_size`` whose images would exceed :data:`MAX_INPUT_VALUES`."""
    values = size[0] * size[1] * (3 if mode == "rgb" else 1)
    if values > MAX_INPUT_VALUES:
        name = "the image" if isinstance(source, bytes) else str(source)
        raise DataError(
            f"{name} read at {size[0]}x{size[1]} ({mode}) would have {values:,} values; one "
            f"input may have at most {MAX_INPUT_VALUES:,}."
        )


def _pixels(img: Image.Image, size: tuple[int, int] | None, mode: str) -> np.ndarray:
    """A decoded image as (C, H, W) levels 0…255 in ``mode``, brought to ``size`` (H, W)."""
    from PIL import Image

    if img.mode in _GREY16_MODES:
        img = Image.fromarray(np.asarray(img, dtype=np.float32) / np.float32(257))  # mode F
    else:
        img = img.convert("RGB" if mode == "rgb" else "L")
    if size is not None and img.size != (size[1], size[0]):
        img = _cover_and_crop(img, size)
    pixels = np.asarray(img)
    if pixels.ndim == 3:
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))
    return np.repeat(pixels[None], 3 if mode == "rgb" else 1, axis=0)


def _cover_and_crop(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``img`` scaled by s = max(W / w, H / h), so that it covers W × H with its aspect ratio
    kept, and cropped to the middle W × H: one resampling of the source box of (W / s) ×
    (H / s) pixels centred in the image."""
    from PIL import Image

    (height, width), (w, h) = size, img.size
    s = max(width / w, height / h)
    box_w, box_h = min(w, width / s), min(h, height / s)  # the covering side is whole: w or h
    box = ((w - box_w) / 2, (h - box_h) / 2, (w + box_w) / 2, (h + box_h) / 2)
    return img.resize((width, height), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)


def _read_images(
    folder: Path, files: list[Path], image_size: tuple[int, int] | None, image_mode: str
) -> Decoded:
    """The images ``files``, decoded on demand by :func:`read_image`, once every header has
    been read: the mode (``auto``: RGB when any image has colour), one size (without
    ``image_size``, the first image that differs is named), and their values together within
    :data:`MAX_DATA_VALUES`."""
    headers = []
    for path in files:
        with _open_image(path) as img:
            headers.append((img.height, img.width, _channels(img), img.mode in _GREY16_MODES))
    if image_mode == "auto":
        image_mode = "rgb" if any(channels == 3 for _, _, channels, _ in headers) else "grey"
    size = image_size or headers[0][:2]
    if image_size is None:
        if max(size) > MAX_IMAGE_SIDE:
            raise DataError(
                f"{files[0]} is {size[1]}x{size[0]} pixels; vaekit trains on images of at most "
                f"{MAX_IMAGE_SIDE:,} pixels a side, so bring them to a size with --image-size H W."
            )
        for path, header in zip(files, headers, strict=True):
            if header[:2] != size:
                raise DataError(
                    f"{path} is {header[1]}x{header[0]} pixels but {files[0].name} is "
                    f"{size[1]}x{size[0]}; bring all images to one size with --image-size H W."
                )
    else:
        _check_input_size(folder, image_size, image_mode)
    shape = (len(files), 3 if image_mode == "rgb" else 1, *size)
    if math.prod(shape) > MAX_DATA_VALUES:
        raise DataError(
            f"{folder} holds images of {math.prod(shape):,} values in all; vaekit reads at most "
            f"{MAX_DATA_VALUES:,}."
        )
    dtype = np.float32 if any(deep for *_, deep in headers) else np.uint8
    read = partial(read_image, image_size=size, image_mode=image_mode)
    return Decoded(files, read, shape, dtype)
