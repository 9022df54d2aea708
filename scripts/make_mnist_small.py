"""Build the ``mnist-small`` subset shipped in ``src/vaekit/data/mnist_small/``.

Reads the four original MNIST IDX files, keeps 500 images per digit from the training set
and 100 per digit from the test set, and writes them as deterministic gzip IDX files with the
original names. Indices are drawn per class without replacement by
``np.random.default_rng(0)`` (a fresh generator for each split, classes 0 to 9 in order) and
kept in ascending original order, so the output is the same on every run. Prints the SHA-256
of each written file and of its uncompressed IDX contents; ``vaekit.data.datasets`` records
the latter and checks them on every load.

Usage, from the repository root (with vaekit importable, e.g. ``pip install -e .``)::

    python scripts/make_mnist_small.py [MNIST_DIR] [--out OUT_DIR]

``MNIST_DIR`` defaults to ``../shared/data/mnist`` beside the repository.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from vaekit.data.idx import read_idx, read_idx_bytes, write_idx

REPO = Path(__file__).resolve().parents[1]
PER_CLASS = {"train": 500, "t10k": 100}


def pick(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of ``per_class`` examples of each digit, drawn with seed 0, in ascending order."""
    rng = np.random.default_rng(0)
    chosen = [
        rng.choice(np.flatnonzero(labels == digit), size=per_class, replace=False)
        for digit in range(10)
    ]
    return np.sort(np.concatenate(chosen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "mnist_dir", nargs="?", type=Path, default=REPO.parent / "shared" / "data" / "mnist"
    )
    parser.add_argument("--out", type=Path, default=REPO / "src/vaekit/data/mnist_small")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for split, per_class in PER_CLASS.items():
        images = read_idx(args.mnist_dir / f"{split}-images-idx3-ubyte.gz")
        labels = read_idx(args.mnist_dir / f"{split}-labels-idx1-ubyte.gz")
        keep = pick(labels, per_class)
        for kind, array in (("images-idx3", images[keep]), ("labels-idx1", labels[keep])):
            path = args.out / f"{split}-{kind}-ubyte.gz"
            write_idx(path, array)
            file_sha = hashlib.sha256(path.read_bytes()).hexdigest()
            idx_sha = hashlib.sha256(read_idx_bytes(path)).hexdigest()
            print(
                f"{path.name}  {path.stat().st_size} bytes  file sha256 {file_sha}  "
                f"idx sha256 {idx_sha}"
            )


if __name__ == "__main__":
    main()
