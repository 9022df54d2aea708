"""Your own images, good by default? A folder of colour clothing, trained with nothing but
``vaekit train --data FOLDER``, judged by an independent classifier.

1. Makes two folders from Fashion-MNIST (``/usr/share/datasets/fashion-mnist``, the Debian
   package ``dataset-fashion-mnist``): 2,000 training images and 2,000 test images, each 28×28
   grey item padded to 32×32 and tinted with a random colour (RGB, its brightest channel 1), as
   PNGs in one sub-folder per class (``ankle-boot/``, ``bag/``, … ``tshirt/``). The test folder is
   never trained on.
2. Trains an independent classifier on Fashion-MNIST's own 60,000 grey training images (the CNN
   of ``benchmarks/conditional.py``), never on vaekit's output. A colour image is judged by its
   brightest channel, centre 28×28, scaled to peak 1: for a tinted image that is exactly the
   original item.
3. Trains each candidate, ``vaekit train --data FOLDER --out RUN`` plus the candidate's flags (the
   first candidate, ``default``, has none), and measures on the test folder: the −ELBO (nats per
   image) and, for a Gaussian likelihood, bits per dimension of the 8-bit images
   ((−ELBO/D + ln 256)/ln 2, D = 3,072: the density of x/255 binned to 1/256); the active latent
   units (Burda et al., 2015: Cov_x E_q[z] > 0.01); the share of reconstructions (decoder means
   at z = μ) that the classifier calls right, divided by its share on the real test images
   (target ≥ 90%); for a conditional candidate, the same share for samples of each class. Also
   the lowest held-out KL of any epoch (a dip towards 0 is posterior collapse), the epochs
   trained and why it stopped, which weights were judged, the training time (the epochs') and
   the whole command's wall time.

    python benchmarks/own_images.py                       # the default command, and candidates
    python benchmarks/own_images.py --candidate conv="--arch conv" --only conv
    python benchmarks/own_images.py --quick               # a smoke run of its code (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from conditional import classifier, predict, train_classifier
from gpu import gemm_tflops
from PIL import Image
from run import processor_name

from vaekit.data import load_dataset
from vaekit.data.datasets import load_raw
from vaekit.engines.sampling import posterior_means, sample_prior
from vaekit.measure.evaluation import evaluate_elbo, latent_statistics
from vaekit.runs.config_file import read_config
from vaekit.runs.inputs import run_data
from vaekit.runs.loading import open_run

#: Fashion-MNIST's classes, by its label 0…9, as folder names.
CLASSES = (
    "tshirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)  # fmt: skip
#: Candidates compared with the default command: a name and the flags it adds. The first three
#: use today's defaults for colour images (the conv model, 50 latents, a calibrated Gaussian,
#: --epochs auto); the others are the choices measured before them, with the earlier defaults
#: spelled out (the MLP, 20 latents), run with --common "--epochs 30" (docs/benchmarks.md).
CANDIDATES = {
    "default": "",
    "conditional": "--conditional",
    "mlp": "--arch mlp",
    "bernoulli": "--arch mlp --latent-dim 20 --likelihood bernoulli",
    "learned-sigma": "--arch mlp --latent-dim 20 --likelihood gaussian --learn-sigma scalar",
    "calibrated": "--arch mlp --latent-dim 20 --likelihood gaussian --learn-sigma calibrated",
    "conv-bernoulli": "--arch conv --latent-dim 20 --likelihood bernoulli",
    "conv-learned-sigma": "--arch conv --latent-dim 20 --likelihood gaussian --learn-sigma scalar",
    "conv-calibrated": "--arch conv --latent-dim 20 --likelihood gaussian --learn-sigma calibrated",
    "conv-bernoulli-warmup": "--arch conv --latent-dim 20 --likelihood bernoulli --kl-warmup 10",
    "conv-bernoulli-b32": "--arch conv --latent-dim 20 --likelihood bernoulli --batch-size 32",
}


def make_folder(folder: Path, split: str, n: int, seed: int) -> None:
    """``n`` tinted 32×32 PNGs of Fashion-MNIST's ``split`` in one sub-folder per class."""
    raw = load_raw("fashion-mnist", split, download=False)
    items, labels = raw.x[:][:, 0], raw.y
    rng = np.random.default_rng(seed)
    for i in rng.choice(len(items), n, replace=False):
        colour = rng.uniform(0.15, 1.0, 3)
        colour /= colour.max()
        tinted = np.pad(items[i], 2).astype(np.float32)[..., None] * colour
        where = folder / CLASSES[labels[i]]
        where.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(tinted).astype(np.uint8)).save(where / f"{i:05d}.png")


def fashion_classifier(path: Path, epochs: int, images: int | None = None):
    """The classifier trained on Fashion-MNIST's 60,000 grey training images (the first
    ``images`` of them, if given), kept at ``path`` and read from there by the next run of this
    script with the same ``--out``."""
    if path.exists():
        net = classifier()
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval()
    grey = load_raw("fashion-mnist", "train", download=False)
    x, y = (grey.x[:images] / 255).astype(np.float32), grey.y[:images]
    net = train_classifier(x, y, epochs, seed=1)
    torch.save(net.state_dict(), path)
    return net


def as_grey_items(x: np.ndarray) -> np.ndarray:
    """(N, 3, 32, 32) images in [0, 1] as the classifier's (N, 1, 28, 28) input: the brightest
    channel, centre crop, scaled to peak 1."""
    grey = x.max(axis=1)[:, 2:30, 2:30]
    peak = grey.reshape(len(grey), -1).max(axis=1).clip(min=1e-6)
    return (grey / peak[:, None, None])[:, None].astype(np.float32)


def fashion_labels(names: tuple[str, ...], codes: np.ndarray) -> np.ndarray:
    """Class codes of data whose classes are ``names`` as Fashion-MNIST's labels, by name."""
    return np.array([CLASSES.index(names[c]) for c in codes])


def train_candidate(name: str, flags: str, train_dir: Path, out: Path, reuse: bool) -> dict:
    """Train the candidate (or, with ``reuse``, take its run from an earlier call); its wall
    time (None when reused), epochs, training seconds and the lowest held-out KL."""
    run = out / name
    command = ["vaekit", "train", "--data", str(train_dir), "--out", str(run), "--force"]
    command += shlex.split(flags)
    seconds, last_line = None, "(reused)"
    if not (reuse and (run / "metrics.jsonl").exists()):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode:
            sys.exit(f"{name}: {' '.join(command)} failed:\n{done.stderr}")
        last_line = done.stdout.strip().splitlines()[-1]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    lowest = min(r.get("val_kl", r["kl"]) for r in records)
    return {
        "run": run,
        "seconds": seconds,
        "train_seconds": sum(r["seconds"] for r in records),
        "epochs": len(records),
        "stopped": records[-1].get("stopped", "epochs"),
        "lowest_kl": lowest,
        "last_line": last_line,
    }


def judge(run: Path, test_dir: Path, net, real_share: float, per_class: int) -> dict:
    """The candidate's scores on the test folder (see the module docstring)."""
    model, _, _ = read_config(run)
    which = "best" if (run / "best.safetensors").exists() else "last"
    engine = open_run(run, which=which)
    data, _ = run_data(run, str(test_dir))
    labels = data.y
    y = labels if model.n_classes else None
    elbo = evaluate_elbo(engine, data.x, y=y)
    stats = latent_statistics(engine, data.x, y=y)
    recon = engine.decode(posterior_means(engine, data.x, y), y)
    truth = fashion_labels(data.classes, labels)
    recon_share = float((predict(net, as_grey_items(recon)) == truth).mean())
    dims = int(np.prod(model.input_shape))
    result = {
        "test_elbo": elbo.loss,
        "kl": elbo.kl,
        "bits_per_dim": (elbo.loss / dims + np.log(256)) / np.log(2)
        if model.likelihood == "gaussian"
        else None,
        "active_units": stats.active_units,
        "latent_dim": model.latent_dim,
        "recon_share": recon_share,
        "recon_ratio": recon_share / real_share,
        "which": which,
    }
    if model.n_classes:
        codes = np.repeat(np.arange(model.n_classes), per_class)
        samples = sample_prior(engine, len(codes), seed=1, labels=codes)
        asked = fashion_labels(data.classes, codes)
        share = float((predict(net, as_grey_items(samples)) == asked).mean())
        result["sample_share"], result["sample_ratio"] = share, share / real_share
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--candidate",
        action="append",
        default=[],
        metavar="NAME=FLAGS",
        help="add (or replace) a candidate: its name and the flags it adds to vaekit train",
    )
    parser.add_argument("--only", nargs="+", metavar="NAME", help="train only these candidates")
    parser.add_argument(
        "--common", default="", metavar="FLAGS", help="flags added to every candidate's command"
    )
    parser.add_argument("--images", type=int, default=2000, help="images per folder")
    parser.add_argument("--classifier-epochs", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=200, help="samples per class judged")
    parser.add_argument("--out", type=Path, help="where the folders and runs go (default: temp)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 300 images a folder, the classifier on 5,000 images for an epoch, "
        "the default and conditional candidates for an epoch",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="judge the runs an earlier call left in --out again"
    )
    args = parser.parse_args()
    classifier_images = None
    if args.quick:
        args.images, args.classifier_epochs, args.per_class = 300, 1, 20
        classifier_images, args.common = 5000, f"--epochs 1 {args.common}"
        args.only = args.only or ["default", "conditional"]
    candidates = dict(CANDIDATES)
    for item in args.candidate:
        name, _, flags = item.partition("=")
        candidates[name] = flags
    names = args.only or list(candidates)
    out = args.out or Path(tempfile.mkdtemp(prefix="vaekit-own-images-"))
    train_dir, test_dir = out / "clothes", out / "clothes-test"
    if not train_dir.exists():
        make_folder(train_dir, "train", args.images, seed=0)
        make_folder(test_dir, "test", args.images, seed=1)

    started = time.perf_counter()
    epochs = args.classifier_epochs
    name = f"classifier-{epochs}-{classifier_images or 'all'}.pt"
    net = fashion_classifier(out / name, epochs, classifier_images)
    grey_test = load_raw("fashion-mnist", "test", download=False)
    real_x, real_y = tinted_test_images(test_dir)
    real_share = float((predict(net, as_grey_items(real_x)) == real_y).mean())
    grey_x = (grey_test.x[:] / 255).astype(np.float32)
    grey_share = float((predict(net, grey_x) == grey_test.y).mean())
    print(
        f"classifier: {args.classifier_epochs} epochs on Fashion-MNIST in "
        f"{time.perf_counter() - started:.0f} s; right on {grey_share:.1%} of its grey test "
        f"images and {real_share:.1%} of the {args.images:,} tinted test images",
        flush=True,
    )
    rows = []
    for name in names:
        flags = f"{candidates[name]} {args.common}"
        trained = train_candidate(name, flags, train_dir, out, args.reuse)
        scores = judge(trained["run"], test_dir, net, real_share, args.per_class)
        rows.append({"candidate": name, "flags": candidates[name], **trained, **scores})
        print(f"{name}: {trained['last_line']}", flush=True)
    print_table(rows, real_share)
    if args.json:
        for row in rows:
            row["run"] = str(row["run"])
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


def tinted_test_images(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The test folder's images in [0, 1] and their Fashion-MNIST labels (by folder name)."""
    data = load_dataset(str(folder))
    return data.x, fashion_labels(data.classes, data.y)


def print_table(rows: list[dict], real_share: float) -> None:
    print(
        f"\n{processor_name()}, {os.cpu_count()} cores, float32 GEMM "
        f"{gemm_tflops([(2048, 2048, 2048)], torch.device('cpu')) * 1000:.0f} GFLOP/s, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}\n"
    )
    print(
        "| candidate | flags | test −ELBO (nats) | bits/dim | KL (nats) | lowest KL | active units "
        "| reconstructions right ÷ real | samples right ÷ real | epochs | stopped | weights "
        "| training (s) | command (s) |"
    )
    print("| --- | --- |" + " ---: |" * 8 + " --- | --- | ---: | ---: |")
    for r in rows:
        bits = "—" if r["bits_per_dim"] is None else f"{r['bits_per_dim']:.3f}"
        samples = f"{r['sample_ratio']:.0%}" if "sample_ratio" in r else "—"
        command = "—" if r["seconds"] is None else f"{r['seconds']:.0f}"
        print(
            f"| {r['candidate']} | `{r['flags'] or '(none)'}` | {r['test_elbo']:.1f} | {bits} "
            f"| {r['kl']:.1f} | {r['lowest_kl']:.2f} | {r['active_units']} of {r['latent_dim']} "
            f"| **{r['recon_ratio']:.0%}** | {samples} | {r['epochs']} | {r['stopped']} "
            f"| {r['which']} | {r['train_seconds']:.0f} | {command} |"
        )
    print(f"\nThe classifier is right on {real_share:.1%} of the real tinted test images.")


if __name__ == "__main__":
    main()
