"""Named data sets (MNIST, Fashion-MNIST, the shipped MNIST subset) and the one entry point.

Where the named sets are looked for:

- ``mnist``: ``<data dir>/mnist/``; ``fashion-mnist``: ``<data dir>/fashion-mnist/``, then
  ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``). The data dir
  is the ``data_dir`` argument, else ``$VAEKIT_DATA_DIR``, else the user cache directory.
  The four files keep their original names, gzip-compressed (``.gz``) or not. When they are
  missing and downloading is allowed, they are downloaded into ``<data dir>/<name>/``.
- ``mnist-small``: shipped inside the package (``mnist_small/``, see its README).

Every file is verified by the SHA-256 of its uncompressed IDX bytes, the one check that covers
the official ``.gz`` archives, uncompressed copies, and re-compressed copies such as Debian's
(whose ``.gz`` bytes differ from the official archives while their contents are identical).
Downloads are also checked against the SHA-256 of the official archives.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pooch

from vaekit.data.idx import parse_idx, read_idx_bytes
from vaekit.data.transforms import to_unit_range
from vaekit.errors import DataError

DATASET_NAMES = ("mnist", "fashion-mnist", "mnist-small")
SPLITS = ("train", "test")
DATA_DIR_ENV = "VAEKIT_DATA_DIR"
DOWNLOAD_TIMEOUT = 15  # seconds without an answer before trying the next mirror

#: split -> (images file, labels file), names without the .gz suffix.
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_ALL_FILES = _FILES["train"] + _FILES["test"]

_DESCRIPTIONS = {
    "mnist": "MNIST handwritten digits, 60,000 train / 10,000 test, 28x28 grey",
    "fashion-mnist": "Fashion-MNIST clothing images, 60,000 train / 10,000 test, 28x28 grey",
    "mnist-small": "MNIST subset shipped with vaekit, 5,000 train / 1,000 test, 28x28 grey",
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

_SYSTEM_DIRS = {"fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),)}

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


@dataclass(frozen=True, eq=False)
class Dataset:
    """Examples ``x`` (float32, C-contiguous; ``(N, C, H, W)`` images or ``(N, D)`` rows),
    optional int64 labels ``y`` of shape ``(N,)``, and a ``name`` for messages and titles.

    The named data sets are in [0, 1]; so is user data loaded by :func:`load_dataset`.
    """

    x: np.ndarray
    y: np.ndarray | None
    name: str

    def __post_init__(self) -> None:
        if self.x.dtype != np.float32 or not self.x.flags.c_contiguous:
            raise ValueError("Dataset.x must be a C-contiguous float32 array.")
        if self.y is not None and (self.y.dtype != np.int64 or self.y.shape != self.x.shape[:1]):
            raise ValueError("Dataset.y must be None or int64 of shape (N,), one per example.")

    def __len__(self) -> int:
        return len(self.x)


def load_dataset(
    source: str,
    split: str = "train",
    data_dir: str | Path | None = None,
    download: bool = True,
) -> Dataset | None:
    """Load a named data set's ``split``, or the user data file or directory at ``source``.

    A named set (see ``DATASET_NAMES``) gives images ``(N, 1, 28, 28)`` float32 in [0, 1] and
    int64 labels, for split ``train`` or ``test``; missing files are downloaded when
    ``download`` is true. User data (see :func:`vaekit.data.files.load_file`) has no splits:
    ``train`` returns all of it and ``test`` returns ``None``.
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
        # Imported here because files.py builds Dataset objects defined above.
        from vaekit.data.files import load_file

        return load_file(source)
    folder = _find(source, _FILES[split], data_dir)
    if folder is None:
        folder = _fetch(source, data_dir, download)
    images_name, labels_name = _FILES[split]
    images = _read_verified(source, folder, images_name)
    labels = _read_verified(source, folder, labels_name)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"{folder}: {images_name} holds images of shape {images.shape} but "
            f"{labels_name} holds labels of shape {labels.shape}; expected (N, H, W) and (N,)."
        )
    x = to_unit_range(images[:, None], str(folder / images_name))
    return Dataset(x=x, y=labels.astype(np.int64), name=source)


def has_test_split(source: str) -> bool:
    """Whether ``source`` has a separate test split (only the named data sets do)."""
    return source in DATASET_NAMES


def dataset_status(data_dir: str | Path | None = None) -> list[dict]:
    """Describe each named data set: ``name``, ``present``, ``location``, ``description``.

    ``location`` is where the files were found, or else where they would be downloaded.
    Only checks that the four files exist; never downloads nor reads them.
    """
    status = []
    for name in DATASET_NAMES:
        found = _find(name, _ALL_FILES, data_dir)
        status.append(
            {
                "name": name,
                "present": found is not None,
                "location": str(found or _search_dirs(name, data_dir)[0]),
                "description": _DESCRIPTIONS[name],
            }
        )
    return status


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: ``data_dir``, else ``$VAEKIT_DATA_DIR``, else the user cache."""
    if data_dir is not None:
        return Path(data_dir)
    return Path(os.environ.get(DATA_DIR_ENV) or pooch.os_cache("vaekit"))


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


def _fetch(name: str, data_dir: str | Path | None, download: bool) -> Path:
    """Download the four files of ``name`` into its data directory, or say where to put them."""
    target = _search_dirs(name, data_dir)[0]
    files = ", ".join(f"{stem}.gz" for stem in _ALL_FILES)
    where = (
        f"put {files} in {target}, or pass --data-dir DIR (or set {DATA_DIR_ENV}=DIR) "
        f"for a DIR whose {name}/ subdirectory holds them"
    )
    if name not in _MIRRORS:
        raise DataError(f"{target} is missing files shipped with vaekit; reinstall vaekit.")
    if not download:
        raise DataError(f"The {name} data set was not found and downloading is off; {where}.")
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
            raise DataError(
                f"The {name} data set was not found and could not be downloaded "
                f"(last error: {error}); {where}."
            )
    return target


def _download(url: str, sha256: str, folder: Path) -> None:
    """Download ``url`` into ``folder`` under its own name, checking its SHA-256 (pooch)."""
    downloader = pooch.HTTPDownloader(progressbar=False, timeout=DOWNLOAD_TIMEOUT)
    pooch.retrieve(
        url,
        known_hash=f"sha256:{sha256}",
        fname=url.rsplit("/", 1)[1],
        path=folder,
        downloader=downloader,
    )
