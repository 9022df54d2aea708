"""Load a user's own data: ``.npy``, ``.npz``, ``.csv`` or a directory of images.

Every loader returns a :class:`~vaekit.data.datasets.Dataset` whose ``x`` is finite float32,
pixel levels scaled to [0, 1] (see :func:`~vaekit.data.transforms.to_unit_range`), with shape
``(N, D)`` for tables and ``(N, C, H, W)`` for images (``(N, H, W)`` arrays gain a channel
axis), and whose ``y`` is int64 labels of shape ``(N,)`` or ``None``. Files are never
unpickled.
"""

from __future__ import annotations

import csv
import tokenize
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from vaekit.data.datasets import Dataset
from vaekit.data.transforms import to_unit_range
from vaekit.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LABEL_COLUMNS = ("label", "y")
_GREY_MODES = ("1", "L", "LA", "La")
_GREY16_MODES = ("I", "I;16", "I;16B", "I;16L")


def load_file(path: str | Path) -> Dataset:
    """Load user data from ``path``, choosing the reader by suffix (or directory).

    - ``.npy``: one array of examples, no labels;
    - ``.npz``: arrays ``x`` and optional ``y``, else the first array and no labels;
    - ``.csv``: numbers; a first row with any non-numeric cell is a header, and a header
      column named ``label`` or ``y`` holds integer labels;
    - one PNG/JPEG image (one example);
    - a directory of PNG/JPEG images of one size (sorted by name, no labels), or a directory
      of subdirectories, one per class, labelled 0, 1, ... in sorted name order.
    """
    path = Path(path)
    if path.is_dir():
        x, y = _read_image_dir(path)
    elif not path.is_file():
        raise DataError(f"{path} does not exist.")
    elif path.suffix.lower() == ".npy":
        x, y = _read_npy(path), None
    elif path.suffix.lower() == ".npz":
        x, y = _read_npz(path)
    elif path.suffix.lower() == ".csv":
        x, y = _read_csv(path)
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        x, y = _read_image(path)[None], None
    else:
        raise DataError(
            f"{path} has an unsupported type; use .npy, .npz, .csv, .png, .jpg "
            "or a directory of images."
        )
    x = as_examples(x, str(path))
    return Dataset(x=x, y=_labels(y, len(x), str(path)), name=path.name)


def as_examples(x: np.ndarray, source: str) -> np.ndarray:
    """Check the shape of an example array, (N, D), (N, H, W) → (N, 1, H, W) or (N, C, H, W),
    and scale it to float32 (pixel values to [0, 1], see :func:`to_unit_range`)."""
    if x.ndim not in (2, 3, 4):
        raise DataError(
            f"{source} holds an array of shape {x.shape}; expected (N, D), (N, H, W) "
            "or (N, C, H, W)."
        )
    if x.shape[0] == 0:
        raise DataError(f"{source} holds no examples.")
    if x.ndim == 3:
        x = x[:, None]
    return to_unit_range(x, source)


def _labels(y: np.ndarray | None, n: int, source: str) -> np.ndarray | None:
    """Check labels: whole non-negative numbers, one per example; return them as int64."""
    if y is None:
        return None
    if y.dtype.kind not in "iuf" or y.ndim != 1:
        raise DataError(
            f"{source} has labels of type {y.dtype} and shape {y.shape}; "
            "expected one whole number per example."
        )
    if len(y) != n:
        raise DataError(f"{source} has {len(y)} labels for {n} examples.")
    if not np.all(np.isfinite(y)) or np.any(y != np.round(y)) or np.any(y < 0):
        raise DataError(f"{source} has labels that are not whole numbers >= 0.")
    return y.astype(np.int64)


def _read_npy(path: Path) -> np.ndarray:
    try:
        with path.open("rb") as f:
            array = np.load(f, allow_pickle=False)
    except ValueError as exc:
        _refuse_pickle(path, exc)
        raise DataError(f"{path} is not a valid .npy file ({exc}).") from exc
    except (SyntaxError, tokenize.TokenError):  # numpy parses the header as Python literals
        raise DataError(f"{path} is not a valid .npy file (its header is damaged).") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a valid .npy file ({exc}).") from exc
    except MemoryError:
        raise DataError(_too_large(path)) from None
    if not isinstance(array, np.ndarray):
        raise DataError(f"{path} is a .npz archive, not a .npy file; rename it to .npz.")
    return array


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    # The file is opened here, not by np.load, so that it is closed even when np.load fails.
    try:
        with path.open("rb") as f:
            archive = np.load(f, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise DataError(f"{path} is a single .npy array, not a .npz archive.")
            names = archive.files
            if not names:
                raise DataError(f"{path} holds no arrays.")
            if "x" in names:
                return archive["x"], archive["y"] if "y" in names else None
            return archive[names[0]], None
    except ValueError as exc:
        _refuse_pickle(path, exc)
        raise DataError(f"{path} is not a valid .npz file ({exc}).") from exc
    except (SyntaxError, tokenize.TokenError):
        raise DataError(f"{path} is not a valid .npz file (an array header is damaged).") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a valid .npz file ({exc}).") from exc
    except MemoryError:
        raise DataError(_too_large(path)) from None


def _too_large(path: Path) -> str:
    """The error for an array header declaring more data than memory holds (a corrupt file)."""
    return f"{path} declares an array too large for this machine's memory; is it corrupt?"


def _refuse_pickle(path: Path, exc: ValueError) -> None:
    """Raise a clear DataError if ``exc`` is numpy refusing to unpickle part of ``path``: a
    pickle (protocol 2+) or an array of Python objects; anything else without NumPy's header
    is simply not an array file."""
    if "allow_pickle" not in str(exc):
        return
    with path.open("rb") as f:
        start = f.read(6)
    if not start.startswith((b"\x80", b"\x93NUMPY", b"PK")):
        raise DataError(f"{path} is not a NumPy file (it does not start with NumPy's header).")
    raise DataError(
        f"{path} holds Python objects (pickled data), which vaekit never loads; save "
        "numeric arrays instead."
    ) from None


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
        return _stack([_read_image(p) for p in images], images), None
    if not classes:
        raise DataError(f"{path} holds no PNG or JPEG images and no class subdirectories.")
    files, labels = [], []
    for label, folder in enumerate(classes):
        found = _image_files(folder)
        if not found:
            raise DataError(f"{folder} (a class directory) holds no PNG or JPEG images.")
        files += found
        labels += [label] * len(found)
    return _stack([_read_image(p) for p in files], files), np.array(labels, dtype=np.int64)


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        (
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        ),
        key=lambda p: p.name,
    )


def _read_image(path: Path) -> np.ndarray:
    """Read one image as float32 (C, H, W) in [0, 1]: grey -> 1 channel, colour -> 3 (RGB)."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in _GREY16_MODES:
                pixels = np.asarray(img, dtype=np.float32) / np.float32(65535)
            else:
                rgb = img.mode not in _GREY_MODES
                pixels = np.asarray(img.convert("RGB" if rgb else "L"), dtype=np.float32) / 255
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path} is not a readable image ({exc}).") from exc
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


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
