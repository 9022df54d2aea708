"""Throughput from 1 to N processes: ``torchrun --nproc_per_node P -m vaekit train``.

Trains the reference model (784-400-20, global batch 128, Adam 1e-3) with P = 1, 2, …
processes on this machine and prints one table: processes, threads per process, seconds per
epoch (training + the test ELBO, median over epochs, from the run's metrics.jsonl), samples/s,
speed-up over one process, and the final test −ELBO (which should agree across rows: the runs
follow the same path). torchrun gives each of several processes one thread unless
OMP_NUM_THREADS is set; a single process uses every core.

    python benchmarks/distributed.py                       # MNIST from ../shared/data
    python benchmarks/distributed.py --processes 1 2 4 --epochs 3
    python benchmarks/distributed.py --quick               # mnist-small, 1 epoch
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def train(processes: int, data: str, data_dir: str, epochs: int, batch: int, out: Path) -> dict:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "vaekit",
        "train",
        "--data",
        data,
        "--data-dir",
        data_dir,
        "--epochs",
        str(epochs),
        "--batch-size",
        str(batch),
        "--sample-every",
        str(epochs + 1),
        "--quiet",
        "--out",
        str(out),
    ]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"torchrun with {processes} processes failed:\n{proc.stderr[-3000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {
        "seconds": statistics.median(r["seconds"] for r in records),
        "test_loss": records[-1]["test_loss"],
        "wall": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128, help="global batch")
    parser.add_argument("--quick", action="store_true", help="mnist-small, 1 epoch")
    args = parser.parse_args()
    full = not args.quick and (args.data_dir / "mnist").is_dir()
    data, epochs = ("mnist", args.epochs) if full else ("mnist-small", 1)
    train_size = 60_000 if full else 5_000
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for processes in args.processes:
            out = Path(tmp) / f"p{processes}"
            result = train(processes, data, str(args.data_dir), epochs, args.batch_size, out)
            rows.append((processes, result))
    base = rows[0][1]["seconds"]
    print(
        f"data {data}, {epochs} epochs per run, batch {args.batch_size} (global), gloo on the CPU\n"
    )
    print("| processes | threads each | s/epoch | samples/s | speed-up | test −ELBO (nats) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for processes, result in rows:
        threads = "all" if processes == 1 else "1"
        print(
            f"| {processes} | {threads} | {result['seconds']:.2f} | "
            f"{train_size / result['seconds']:,.0f} | {base / result['seconds']:.2f}× | "
            f"{result['test_loss']:.2f} |"
        )


if __name__ == "__main__":
    main()
