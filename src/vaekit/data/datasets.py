"""Named data sets (MNIST, Fashion-MNIST, the shipped MNIST subset) and the one entry point.

A named set (``mnist``, ``fashion-mnist``) is looked for in ``<data dir>/<name>/``, where the
data dir is the first that applies of:

1. the directory named by the caller (``--data-dir DIR``);
2. for a run, the data directory stored in its ``config.json`` (absolute), when it holds the
   set (:func:`run_data_dir`), so a run finds its data from any working directory and, when
   moved to a machine without that directory, falls through to 3 and 4 (``--data-dir DIR`` on
   ``--resume`` replaces the stored directory: the run remembers where its data moved);
3. ``$VAEKIT_DATA_DIR``;
4. the user cache directory (``pooch.os_cache("vaekit")``).

``fashion-mnist`` is also looked for in ``/usr/share/datasets/fashion-mnist`` (Debian package
``dataset-fashion-mnist``). The four files keep their original names, gzip-compressed (``.gz``)
or not. A directory that was named (1, 2 or 3) is only ever read: when it lacks the set, loading
fails with one line saying which files are expected where, and nothing is created or
downloaded. Downloads go only into the cache (4), when the set is not there and downloading is
allowed. ``mnist-small`` is shipped inside the package (``mnist_small/``, see its README).

``shapes`` and ``shapes-small`` (:mod:`vaekit.data.shapes`: 64×64 binary sprites with known
generative factors, the full dSprites-like grid of 737,280 and a small grid of 4,608) are drawn
by vaekit, never downloaded. They have no test split: training holds out its seeded validation
part, as for user data. Their file (packed bits, 377 MB for ``shapes``) is looked for in
``<data dir>/shapes/`` of the first data dir above; a named directory is only read (without the
file there, the set is generated in memory and nothing is written); in the cache it is
generated and written on first use.

Every file is verified by the SHA-256 of its uncompressed IDX bytes, the one check that covers
the official ``.gz`` archives, uncompressed copies, and re-compressed copies such as Debian's
(whose ``.gz`` bytes differ from the official archives while their contents are identical).
Downloads are also checked against the SHA-256 of the official archives.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import numpy as np

from vaekit.config.limits import DATASET_NAMES  # written there: the default epochs need them
from vaekit.data import scaling as scaling_module
from vaekit.data import shapes
from vaekit.data.dataset import Dataset, RawData
from vaekit.data.idx import parse_idx, read_idx_bytes
from vaekit.data.readers import read_file
from vaekit.errors import DataError

#: The named sets of handwritten digits (the explorer asks for a digit to be drawn).
DIGIT_SETS = ("mnist", "mnist-small")
SPLITS = ("train", "test")
DATA_DIR_ENV = "VAEKIT_DATA_DIR"
DOWNLOAD_TIMEOUT = 15  # seconds without an answer before trying the next mirror

#: split -> (images file, labels file), names without the .gz suffix.
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_ALL_FILES = _FILES["train"] + _FILES["test"]

#: The names of the named sets' classes, code by code: digits for the MNIST sets, and
#: Fashion-MNIST's official names (https://github.com/zalandoresearch/fashion-mnist#labels).
#: The shapes sets have no labels (their factors are no classes), so no names.
DIGITS = tuple(str(digit) for digit in range(10))
CLASS_NAMES = {
    "mnist": DIGITS,
    "mnist-small": DIGITS,
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}

_DESCRIPTIONS = {
    "mnist": "MNIST handwritten digits, 60,000 train / 10,000 test, 28x28 grey",
    "fashion-mnist": "Fashion-MNIST clothing images, 60,000 train / 10,000 test, 28x28 grey",
    "mnist-small": "MNIST subset shipped with vaekit, 5,000 train / 1,000 test, 28x28 grey",
    "shapes": "sprites with 5 known factors drawn by vaekit, 737,280 images, 64x64 binary",
    "shapes-small": "the shapes grid at 3 scales, 8 angles, 8x8 places: 4,608 images, 64x64",
}

_MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
}

#: Debian's packages of named sets: (package, the directory it installs them in, which vaekit
#: searches after the data directory).
_SYSTEM_PACKAGES = {
    "fashion-mnist": ("dataset-fashion-mnist", Path("/usr/share/datasets/fashion-mnist")),
}
_SYSTEM_DIRS = {name: (folder,) for name, (_, folder) in _SYSTEM_PACKAGES.items()}

_PACKAGED_DIR = Path(__file__).parent / "mnist_small"


def _sums(text: str) -> dict[str, str]:
    """Parse ``sha256sum`` output (``<hash>  <file>`` lines) into {file: hash}."""
    return {name: digest for digest, name in (line.split() for line in text.strip().splitlines())}


#: SHA-256 of the official .gz archives, checked when downloading.
_ARCHIVE_SHA256 = {
    "mnist": _sums("""
        440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609  train-images-idx3-ubyte
        3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c  train-labels-idx1-ubyte
        8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6  t10k-images-idx3-ubyte
        f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6  t10k-labels-idx1-ubyte
    """),
    "fashion-mnist": _sums("""
        3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84  train-images-idx3-ubyte
        a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845  train-labels-idx1-ubyte
        346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073  t10k-images-idx3-ubyte
        67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5  t10k-labels-idx1-ubyte
    """),
}

#: SHA-256 of the uncompressed IDX bytes, checked on every load.
_CONTENT_SHA256 = {
    "mnist": _sums("""
        ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db  train-images-idx3-ubyte
        65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5  train-labels-idx1-ubyte
        0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7  t10k-images-idx3-ubyte
        ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2  t10k-labels-idx1-ubyte
    """),
    "fashion-mnist": _sums("""
        c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888  train-images-idx3-ubyte
        bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9  train-labels-idx1-ubyte
        5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b  t10k-images-idx3-ubyte
        0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34  t10k-labels-idx1-ubyte
    """),
    # As printed by scripts/make_mnist_small.py ("idx sha256").
    "mnist-small": _sums("""
        291661882f80bfc1e8fc3c7ea17a7ed78362748efbfa17feda6a4618fa3c6f3a  train-images-idx3-ubyte
        1531493183c30b840499aae3621a48abf90a239236dbfe6c2e0e7e5b4847c49a  train-labels-idx1-ubyte
        cd91bd4fdff29bebdc917e973c62d3423d99500c4a1507bae8533a05a0677e20  t10k-images-idx3-ubyte
        dbb2abfdff4891cb7b860f7686025eb96be158b3099ccfe7b6532f60e3f77328  t10k-labels-idx1-ubyte
    """),
}


def load_dataset(
    source: str,
    split: str = "train",
    data_dir: str | Path | None = None,
    download: bool = True,
) -> Dataset | None:
    """:func:`load_raw`, scaled by ``auto`` (8-bit levels to [0, 1], other values as they are)
    and held in memory as float32: the named sets as images ``(N, 1, 28, 28)`` in [0, 1] with
    int64 labels. A run scales its data by its own stored scaling instead (see
    :mod:`vaekit.data.scaling`)."""
    raw = load_raw(source, split, data_dir, download=download)
    if raw is None:
        return None
    x = raw.x[:]
    scaling = scaling_module.fit_array("auto", x[:1], pixels=raw.pixels, source=raw.name)
    return Dataset(x=scaling.apply(x, raw.name), y=raw.y, name=raw.name, classes=raw.classes)


def load_raw(
    source: str,
    split: str = "train",
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    image_size: tuple[int, int] | None = None,
    image_mode: str = "auto",
) -> RawData | None:
    """The raw examples of a named data set's ``split``, or of the user data file or directory
    at ``source``.

    A named set (see ``DATASET_NAMES``) gives uint8 images ``(N, 1, 28, 28)`` (``pixels``) and
    int64 labels (their classes named by :data:`CLASS_NAMES`), for split ``train`` or
    ``test``, from ``data_dir`` or else as the module's
    docstring says; a set missing from the cache is downloaded into it when ``download`` is
    true. ``shapes`` and ``shapes-small`` give the images of :mod:`vaekit.data.shapes` (an
    array-like unpacking the rows read, uint8 {0, 255}), no labels, and no test split (None). User
    data (see :func:`vaekit.data.readers.read_file`, which ``image_size`` and
    ``image_mode`` are passed to) has no splits: ``train`` returns all of it and ``test``
    returns ``None``.
    """
    if split not in SPLITS:
        raise DataError(f"Split {split!r} does not exist; use 'train' or 'test'.")
    if source not in DATASET_NAMES:
        if not Path(source).exists():
            raise DataError(
                f"{source} is neither an existing file or directory nor a data set name "
                f"({', '.join(DATASET_NAMES)})."
            )
        if split == "test":
            return None
        return read_file(source, image_size=image_size, image_mode=image_mode)
    if source in shapes.DATASETS:
        return None if split == "test" else _load_shapes(source, data_dir)
    folder = _find(source, _FILES[split], data_dir)
    if folder is None:
        folder = _fetch(source, _FILES[split], data_dir, download)
    images_name, labels_name = _FILES[split]
    images = _read_verified(source, folder, images_name)
    labels = _read_verified(source, folder, labels_name)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"{folder}: {images_name} holds images of shape {images.shape} but "
            f"{labels_name} holds labels of shape {labels.shape}; expected (N, H, W) and (N,)."
        )
    return RawData(
        x=images[:, None],
        y=labels.astype(np.int64),
        name=source,
        pixels=True,
        classes=CLASS_NAMES[source],
    )


def has_test_split(source: str) -> bool:
    """Whether ``source`` has a separate test split (the named data sets but the shapes)."""
    return source in DATASET_NAMES and source not in shapes.DATASETS


def _load_shapes(name: str, data_dir: str | Path | None) -> RawData:
    """The generated set ``name`` from ``<data dir>/shapes/`` as the module's docstring says:
    read from a named directory that holds its file, else generated in memory; in the cache,
    read or generated and written there (a DataError in one line when it cannot be)."""
    grid = shapes.DATASETS[name]
    root, named_by = _data_root(data_dir)
    folder = root / "shapes"
    if named_by is None:
        found = shapes.shapes_dataset(grid, cache_dir=folder)
    else:
        found = shapes.cached(grid, cache_dir=folder) or shapes.generate(grid)
    return RawData(x=found.x, y=None, name=name, pixels=True)


def dataset_status(data_dir: str | Path | None = None) -> list[dict]:
    """Describe each named data set: ``name``, ``present``, ``location``, ``description``.

    ``location`` is where the files were found, or else where they would be downloaded.
    Only checks that the four files exist; never downloads nor reads them.
    """
    status = []
    for name in DATASET_NAMES:
        if name in shapes.DATASETS:
            folder = resolve_data_dir(data_dir) / "shapes"
            location = shapes.cache_path(shapes.DATASETS[name], None, 0, folder)
            found = location if location.is_file() else None
        else:
            found = _find(name, _ALL_FILES, data_dir)
            location = found or _search_dirs(name, data_dir)[0]
        status.append(
            {
                "name": name,
                "present": found is not None,
                "location": str(location),
                "description": _DESCRIPTIONS[name],
            }
        )
    return status


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: ``data_dir``, else ``$VAEKIT_DATA_DIR``, else the user cache."""
    return _data_root(data_dir)[0]


def run_data_dir(source: str, stored: str | None, override: str | Path | None = None) -> str | None:
    """The data directory to read a run's data ``source`` from: ``override`` (``--data-dir``)
    if given, else the run's ``stored`` directory when it holds the named set, else None
    (``$VAEKIT_DATA_DIR``, then the cache)."""
    if override is not None:
        return str(override)
    if stored is None or source not in _MIRRORS:
        return stored
    folder = Path(stored) / source
    return stored if all(_path(folder, stem) is not None for stem in _ALL_FILES) else None


def absolute_source(source: str) -> str:
    """A data set name as it is; a data file or folder as an absolute path (relative paths are
    taken from the working directory), so that a run's ``config.json`` names it from anywhere."""
    return source if source in DATASET_NAMES else os.path.abspath(source)


def _data_root(data_dir: str | Path | None) -> tuple[Path, str | None]:
    """The data directory and how it was named: ``"--data-dir"``, ``"$VAEKIT_DATA_DIR"``, or
    None for the user cache (the only directory vaekit downloads into)."""
    if data_dir is not None:
        return Path(data_dir), "--data-dir"
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]), f"${DATA_DIR_ENV}"
    import pooch  # imported when first needed: it costs start-up time

    return Path(pooch.os_cache("vaekit")), None


def _search_dirs(name: str, data_dir: str | Path | None) -> list[Path]:
    """Directories that may hold the named set, in order; the first is the download target."""
    if name == "mnist-small":
        return [_PACKAGED_DIR]
    return [resolve_data_dir(data_dir) / name, *_SYSTEM_DIRS.get(name, ())]


def _find(name: str, files: tuple[str, ...], data_dir: str | Path | None) -> Path | None:
    """The first search directory holding all ``files`` (each .gz or uncompressed), or None."""
    for folder in _search_dirs(name, data_dir):
        if all(_path(folder, f) is not None for f in files):
            return folder
    return None


def _path(folder: Path, stem: str) -> Path | None:
    """The file ``stem``.gz or ``stem`` in ``folder``, preferring the compressed one."""
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _read_verified(name: str, folder: Path, stem: str) -> np.ndarray:
    """Read one IDX file of the named set after checking the SHA-256 of its contents."""
    path = _path(folder, stem)
    data = read_idx_bytes(path)
    if hashlib.sha256(data).hexdigest() != _CONTENT_SHA256[name][stem]:
        if name == "mnist-small":
            raise DataError(
                f"{path} does not match the file shipped with vaekit; the installation is "
                "corrupt, reinstall vaekit."
            )
        raise DataError(
            f"{path} is not the official {name} file (its SHA-256 differs); delete it to "
            "download it again, or replace it with the original."
        )
    return parse_idx(data, str(path))


def _fetch(name: str, needed: tuple[str, ...], data_dir: str | Path | None, download: bool) -> Path:
    """Download the four files of ``name`` into the cache, or say in one line where to put them.

    ``needed`` are the files the caller looked for. A named data directory is never written to.
    """
    root, named_by = _data_root(data_dir)
    root = Path(os.path.abspath(root))  # messages name the directory whatever the working one
    target = root / name
    if name not in _MIRRORS:
        raise DataError(f"{target} is missing files shipped with vaekit; reinstall vaekit.")
    missing = [f"{stem}.gz" for stem in needed if _path(target, stem) is None]
    if named_by is not None:
        raise DataError(
            f"{name} not found in {root} ({named_by}): expected {' and '.join(missing)} "
            f"(or without .gz) in {target}/{_system_hint(name)}"
        )
    files = ", ".join(f"{stem}.gz" for stem in _ALL_FILES)
    where = f"pass --data-dir DIR for a directory DIR whose {name}/ holds {files}"
    where += _system_hint(name)
    if not download:
        raise DataError(f"{name} is not in the cache {target} and downloading is off; {where}.")
    created = [d for d in (target, *target.parents) if not d.exists()]
    for stem in _ALL_FILES:
        if _path(target, stem) is not None:
            continue
        for mirror in _MIRRORS[name]:
            try:
                _download(mirror + stem + ".gz", _ARCHIVE_SHA256[name][stem], target)
                break
            except (OSError, ValueError) as exc:
                error = exc
        else:
            for folder in created:  # leave no empty folders behind
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise DataError(
                f"{name} is not in the cache {target} and could not be downloaded "
                f"({_reason(error)}, from {len(_MIRRORS[name])} mirrors); {where}."
            )
    return target


def _system_hint(name: str) -> str:
    """Where else vaekit looked for ``name`` and how that place gets it, as a clause (or "")."""
    if name not in _SYSTEM_PACKAGES:
        return ""
    package, folder = _SYSTEM_PACKAGES[name]
    return f"; vaekit also looks in {folder}, where 'apt-get install {package}' (Debian) puts it"


def _reason(error: Exception) -> str:
    """A few words on why a download failed (the full text of a connection error runs to
    hundreds of characters of pool and socket details)."""
    response = getattr(error, "response", None)
    if response is not None:
        return f"HTTP {response.status_code}"
    if isinstance(error, ValueError):
        return "the file did not match its SHA-256"
    return getattr(error, "strerror", None) or type(error).__name__


def _download(url: str, sha256: str, folder: Path) -> None:
    """Download ``url`` into ``folder`` under its own name, checking its SHA-256 (pooch)."""
    import pooch

    downloader = pooch.HTTPDownloader(progressbar=False, timeout=DOWNLOAD_TIMEOUT)
    pooch.retrieve(
        url,
        known_hash=f"sha256:{sha256}",
        fname=url.rsplit("/", 1)[1],
        path=folder,
        downloader=downloader,
    )
