"""Does the sample-quality score rank longer-trained models higher? ``vaekit quality`` on the
default MLP VAE (784-400-20, Bernoulli, Adam 1e-3, batch 128) after 1, 5 and 20 epochs.

One run is trained and resumed (1 → 5 → 20 epochs); after each stage 10,000 prior samples are
scored against the 10,000 MNIST test images in the features of the shipped classifier. Prints
one table: epochs, Fréchet distance, precision, recall, confidence, entropy.

    python benchmarks/quality.py                # MNIST from ../shared/data
    python benchmarks/quality.py --quick        # mnist-small, 1 and 2 epochs (a smoke run)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
from pathlib import Path

from vaekit.cli import main as vaekit
from vaekit.measure.quality import score_run

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def stages(quick: bool) -> tuple[list[str], list[int], int]:
    """(the data flags, the epoch counts scored, samples per score)."""
    if quick:
        return ["--data", "mnist-small"], [1, 2], 1000
    return ["--data", "mnist", "--data-dir", str(SHARED_DATA)], [1, 5, 20], 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="mnist-small, 1 and 2 epochs")
    args = parser.parse_args()
    data, epochs, n = stages(args.quick)
    print("| epochs | Fréchet distance | precision | recall | confidence | entropy (nats) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        for i, count in enumerate(epochs):
            resume = ["--resume"] if i else []
            argv = ["train", *data, *resume, "--epochs", str(count), "--quiet", "--out", str(run)]
            with contextlib.redirect_stdout(io.StringIO()):  # the table alone on stdout
                code = vaekit(argv)
            if code != 0:
                raise SystemExit(f"training failed: {' '.join(argv)}")
            r = score_run(run, n, seed=0)
            print(
                f"| {count} | {r['fd']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                f"{r['confidence']:.3f} | {r['entropy']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
