"""Train the feature networks of ``vaekit quality`` and write their safetensors weights.

    python scripts/train_quality_classifier.py            # writes src/vaekit/quality_weights/
    python scripts/train_quality_classifier.py --check    # retrains, compares sha256 with those

Recipe: the training split (pixels / 255), seed 0, 1 thread, deterministic torch algorithms,
Adam (lr 1e-3), batches of 128 in a seeded permutation, EPOCHS epochs; float32 weights.
MNIST from ../shared/data/mnist (or $MNIST_DIR), Fashion-MNIST from
/usr/share/datasets/fashion-mnist (or $FASHION_DIR). Test-split accuracy of the shipped
weights (3 epochs): MNIST 0.9828, Fashion-MNIST 0.8742. Each file is 103,018 float32
parameters (about 413 kB).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from vaekit.data.idx import read_idx
from vaekit.measure.quality import build_network

EPOCHS = 3
SEED = 0
OUT = Path(__file__).resolve().parents[1] / "src" / "vaekit" / "quality_weights"
#: sha256 of the shipped files, as this recipe writes them (torch 2.x, CPU).
SHA256 = {
    "fashion-mnist": "cc2e5a6096711fcdd8a840d796e3862cf217e1cdc7c6215f097d48969b86a0b6",
    "mnist": "a6f2784256db4a511e0d616927a96567ffd49c693dd695cfb72bfed0d2ef4828",
}
DIRS = {
    "mnist": os.environ.get("MNIST_DIR", "../shared/data/mnist"),
    "fashion-mnist": os.environ.get("FASHION_DIR", "/usr/share/datasets/fashion-mnist"),
}


def load(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 1, 28, 28) float32 in [0, 1], labels int64) of an IDX split."""
    stem = "train" if split == "train" else "t10k"
    x = read_idx(Path(folder) / f"{stem}-images-idx3-ubyte.gz")
    y = read_idx(Path(folder) / f"{stem}-labels-idx1-ubyte.gz")
    return (x[:, None] / np.float32(255)).astype(np.float32), y.astype(np.int64)


def train(x: np.ndarray, y: np.ndarray, epochs: int = EPOCHS, seed: int = SEED) -> dict:
    """The trained network's state dict (cross-entropy, Adam), deterministic given the seed."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    net = build_network()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        for idx in np.array_split(rng.permutation(len(x)), max(1, len(x) // 128)):
            loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {k: v.detach().contiguous() for k, v in net.eval().state_dict().items()}


def accuracy(state: dict, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of the network with ``state`` on (x, y)."""
    net = build_network()
    net.load_state_dict(state)
    with torch.no_grad():
        return float((net.eval()(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def write(state: dict, path: Path) -> str:
    """Write ``state`` as safetensors at ``path``; its sha256."""
    from safetensors.torch import save_file

    save_file(state, str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="retrain and compare with shipped")
    parser.add_argument("--only", choices=sorted(DIRS), help="one data set")
    args = parser.parse_args(argv)
    same = True
    for name in [args.only] if args.only else sorted(DIRS):
        state = train(*load(DIRS[name], "train"))
        shipped = OUT / f"{name}.safetensors"
        if args.check:
            with tempfile.TemporaryDirectory() as tmp:
                digest = write(state, Path(tmp) / "w.safetensors")
            ok = digest == hashlib.sha256(shipped.read_bytes()).hexdigest() == SHA256[name]
            same &= ok
            print(f"{name}: {'identical' if ok else 'DIFFERENT'} sha256 {digest}")
        else:
            digest = write(state, shipped)
            acc = accuracy(state, *load(DIRS[name], "test"))
            print(f"{name}: test accuracy {acc:.4f}, sha256 {digest}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
