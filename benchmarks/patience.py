"""The patience of ``--epochs auto``: where the stop rule would stop on your own kind of data.

Each data set trains once for a long fixed budget (``--epochs N --keep best``, its default
validation split of 0.1); the stop rule depends only on the held-out −ELBO of each epoch
(vaekit.train.loop.stop_reason), so the epoch a patience p stops at, and its best score, are
read off that one curve exactly. For each p the table gives the epoch it stops after, the
epoch whose weights it keeps, how far that score is above the best of the whole budget (nats
per example) and the training time up to the stop.

    python benchmarks/patience.py            # the data sets of docs/data.md
    python benchmarks/patience.py --conv     # and a folder of colour clothes, conv (slow on a CPU)
    python benchmarks/patience.py --quick    # a few epochs of small sets: the script runs
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np

from vaekit.cli import main
from vaekit.data import load_dataset
from vaekit.runs.metrics import read_metrics

PATIENCES = (3, 5, 10, 20, 30)


def clothes_folder(root: Path, n: int) -> Path:
    """``n`` Fashion-MNIST training items, 28×28 grey padded to 32×32 and tinted with a random
    colour per image, as PNGs in one sub-folder per class (the issue's folder of clothes);
    mnist-small's digits where Fashion-MNIST is not at hand."""
    from PIL import Image

    try:
        train = load_dataset("fashion-mnist", "train", download=False)
    except Exception:  # not in the cache: the bundled digits stand in
        train = None
    train = train or load_dataset("mnist-small", "train")
    rng = np.random.default_rng(0)
    folder = root / "clothes"
    for i in range(n):
        grey = np.pad(train.x[i, 0], 2)
        colour = rng.uniform(0.3, 1.0, size=3)
        pixels = (grey[..., None] * colour * 255).round().astype(np.uint8)
        label = folder / f"class{int(train.y[i])}"
        label.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, "RGB").save(label / f"{i:05d}.png")
    return folder


def digits_folder(root: Path, n: int) -> Path:
    """``n`` grey 28×28 digits of mnist-small as PNGs, one sub-folder per class."""
    from PIL import Image

    train = load_dataset("mnist-small", "train")
    folder = root / "digits"
    for i in range(n):
        label = folder / str(int(train.y[i]))
        label.mkdir(parents=True, exist_ok=True)
        Image.fromarray((train.x[i, 0] * 255).round().astype(np.uint8), "L").save(
            label / f"{i:05d}.png"
        )
    return folder


def cancer_csv(root: Path) -> Path:
    """scikit-learn's breast cancer table (569 rows, 30 measurements) as a CSV."""
    from sklearn.datasets import load_breast_cancer

    table = load_breast_cancer()
    path = root / "cancer.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([name.replace(" ", "_") for name in table.feature_names])
        writer.writerows(table.data.tolist())
    return path


def stop(losses: list[float], patience: int) -> tuple[int, int]:
    """(the epoch the rule stops after, the best epoch then) on held-out ``losses``; the end of
    the budget where patience never runs out."""
    best_epoch, best = 0, float("inf")
    for epoch, loss in enumerate(losses, start=1):
        if loss < best:
            best, best_epoch = loss, epoch
        if epoch - best_epoch >= patience:
            return epoch, best_epoch
    return len(losses), best_epoch


def rows(name: str, run: Path) -> list[str]:
    records = read_metrics(run)
    losses = [r["val_loss"] for r in records]
    seconds = np.cumsum([r["seconds"] for r in records])
    overall = min(losses)
    lines = []
    for p in PATIENCES:
        end, best = stop(losses, p)
        ran_out = "" if end - best >= p else " (budget)"
        lines.append(
            f"| {name} | {p} | {end}{ran_out} | {best} | {losses[best - 1] - overall:.2f} | "
            f"{seconds[end - 1]:.0f} |"
        )
    return lines


def train(data: Path, epochs: int, out: Path, flags: list[str]) -> Path:
    argv = ["train", "--data", str(data), "--epochs", str(epochs), "--keep", "best"]
    argv += ["--sample-every", str(epochs)]  # the curve is what counts, not the figures
    assert main([*argv, *flags, "--quiet", "--out", str(out)]) == 0
    return out


def main_(quick: bool, conv: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        numpy = ["--engine", "numpy"]  # the from-scratch engine: fastest for these small models
        cases = [
            (
                "breast cancer CSV, 569 rows",
                cancer_csv(root),
                300,
                ["--likelihood", "gaussian", "--scale", "standardize", *numpy],
            ),
            (
                "digits folder, 2,000 grey 28×28",
                digits_folder(root, 300 if quick else 2000),
                100,
                numpy,
            ),
        ]
        if conv:
            cases.append(
                (
                    "clothes folder, 2,000 tinted 32×32",
                    clothes_folder(root, 300 if quick else 2000),
                    60,
                    ["--arch", "conv"],
                )
            )
        # fmt: skip
        print("| data | patience | stops after epoch | keeps epoch | above the budget's best "
              "(nats) | seconds to the stop |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        for number, (name, data, epochs, flags) in enumerate(cases):
            budget = 4 if quick else epochs
            run = train(data, budget, root / f"run-{number}", flags)
            for line in rows(f"{name} ({budget} epochs)", run):
                print(line, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs of small sets")
    parser.add_argument("--conv", action="store_true", help="also the clothes folder (torch)")
    args = parser.parse_args()
    main_(args.quick, args.conv)
