"""Which objective disentangles the shapes' factors? VAE, β-VAE (β = 4) and β-TCVAE (β = 6)
trained on ``shapes`` under one budget, scored by MIG and DCI.

Each model is the same MLP VAE (4096-400-10, ReLU, Bernoulli on the binary pixels, Adam 1e-3,
batch 128, seed 0) trained for the same number of epochs (the budget: the same steps over the
same images in the same order); only the objective differs:

- ``VAE``: the ELBO, recon + KL;
- ``β-VAE (β = 4)``: recon + 4·KL (Higgins et al. 2017);
- ``β-TCVAE (β = 6)``: recon + KL + 5·TC, the total correlation by minibatch-weighted sampling
  (Chen et al. 2018).

``vaekit disentanglement`` then scores 10,000 images of the grid (seed 0) encoded to their
posterior means, and ``vaekit traverse`` draws each run's traversals from the posterior mean of
its first held-out image (the prior's median decodes to an empty picture for all three).
Prints one table: model, epochs, CPU and wall minutes, validation −ELBO (nats per image), MIG,
DCI disentanglement, completeness and informativeness, and the published dSprites MIG of the
same objective.

    python benchmarks/disentanglement.py                      # shapes, 3 epochs each
    python benchmarks/disentanglement.py --figures docs/images  # also keep the traversals
    python benchmarks/disentanglement.py --runs runs/dis      # keep the three run directories
    python benchmarks/disentanglement.py --quick              # shapes-small, 1 epoch (smoke run)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import tempfile
import time
from pathlib import Path

from PIL import Image

from vaekit.cli import main as vaekit
from vaekit.measure.run_disentanglement import score_run

#: (name, file stem for its traversal figure, train flags, published dSprites MIG). The published
#: values are the best reported results for each objective collected in Table 1 of Lin et al.
#: (ICML 2020, arXiv 1906.06034), on dSprites (the grid ``shapes`` copies), β not stated there.
MODELS = [
    ("VAE", "vae", [], "0.10"),
    ("β-VAE (β = 4)", "beta-vae", ["--beta", "4"], "0.21"),
    ("β-TCVAE (β = 6)", "beta-tcvae", ["--objective", "tcvae", "--beta", "6"], "0.45"),
]


def cpu_minutes() -> float:
    """CPU time of this process and its threads, user + system, in minutes."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) / 60


def run_vaekit(argv: list[str]) -> None:
    """``vaekit ARGV`` in this process, its report kept off stdout (the table alone there)."""
    with contextlib.redirect_stdout(io.StringIO()):
        code = vaekit(argv)
    if code != 0:
        raise SystemExit(f"vaekit {' '.join(argv)} failed with exit code {code}")


def save_small(figure: Path, out: Path) -> None:
    """The grey figure in 16 grey levels: about a fifth of the bytes, for the docs."""
    Image.open(figure).convert("L").quantize(16).save(out, optimize=True)


def last_record(run: Path) -> dict:
    """The last line of the run's metrics.jsonl (the final epoch's losses)."""
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="epochs per model (default 3; 1 with --quick)")
    parser.add_argument("--latent-dim", type=int, default=10)
    parser.add_argument("-n", type=int, help="images scored (default 10,000, or the whole grid)")
    parser.add_argument("--figures", type=Path, help="also copy the traversals here as PNGs")
    parser.add_argument(
        "--runs", type=Path, help="keep the runs here (default: a temporary folder)"
    )
    parser.add_argument("--quick", action="store_true", help="shapes-small, 1 epoch")
    args = parser.parse_args()
    data = "shapes-small" if args.quick else "shapes"
    epochs = args.epochs or (1 if args.quick else 3)
    print(
        f"MLP 4096-400-{args.latent_dim} VAEs on {data}, {epochs} epochs each (batch 128, seed 0)\n"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, stem, flags, published in MODELS:
            run = (args.runs or Path(tmp)) / stem
            cpu, wall = cpu_minutes(), time.perf_counter()
            train = ["train", "--data", data, "--epochs", str(epochs), "--seed", "0"]
            train += ["--latent-dim", str(args.latent_dim), *flags, "--quiet", "--out", str(run)]
            run_vaekit(train)
            cpu, wall = cpu_minutes() - cpu, (time.perf_counter() - wall) / 60
            scores = score_run(run, args.n, seed=0)
            figure = run / "traversal.png"
            run_vaekit(["traverse", str(run), "--index", "0", "--steps", "9", "--out", str(figure)])
            if args.figures:
                args.figures.mkdir(parents=True, exist_ok=True)
                save_small(figure, args.figures / f"{data}-traversal-{stem}.png")
            dci = scores["dci"]
            rows.append(
                f"| {name} | {epochs} | {cpu:.1f} | {wall:.1f} | "
                f"{last_record(run)['val_loss']:.2f} | {scores['mig']['mig']:.3f} | "
                f"{dci['disentanglement']:.3f} | {dci['completeness']:.3f} | "
                f"{dci['informativeness']:.3f} | {published} |"
            )
            print(f"{name}: trained and scored ({cpu:.1f} CPU-min)", flush=True)
    print(
        "\n| model | epochs | CPU-min | wall (min) | validation −ELBO | MIG | DCI D | DCI C | "
        "DCI I | published dSprites MIG |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    print(f"\nMIG and DCI of the posterior means of {scores['n']:,} images of {data} (seed 0)")


if __name__ == "__main__":
    main()
