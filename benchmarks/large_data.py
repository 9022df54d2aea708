"""Training on a .npy file larger than one wants to hold in memory: streamed from the file
against held in memory.

Generates a float32 .npy of random values in [0, 1] (1,000 values per example; 4 GB by
default: 1,000,000 examples), written in chunks so that generating it stays small, then trains
the reference MLP VAE (hidden 400, latent 20, Bernoulli likelihood, Adam, batch 128, torch
engine) for a fixed number of steps of one epoch's seeded permutation, in each mode, each run
in its own process:

- ``streamed``: ``TrainingData.load(config, stream=True)``: each batch is read from the file
  (``os.preadv``, rows of the permutation) by the background reader while the model trains;
- ``in memory``: ``TrainingData.load(config, stream=False)``: the whole file read into a float32
  array first (as ``np.load`` would), batches sliced from it.

The modes take turns for ``--rounds`` rounds, so that a machine that other work slows down
or frees up affects both alike. Prints per mode the seconds to load, the training throughput
(examples per second over the steps after a warm-up tenth, loading excluded; the best round,
and every round), the process's peak RSS (``ru_maxrss``), and the streamed throughput as a
share of the in-memory one. The file is read through the page cache in both modes (it was
just written); the comparison is of the reading work, not of the disk.

    python benchmarks/large_data.py                    # 4 GB, 2 rounds of 3,000 steps of 128
    python benchmarks/large_data.py --gb 0.05 --steps 50    # seconds: a smoke run
    python benchmarks/large_data.py --dir DIR --keep   # keep (and reuse) DIR/large.npy
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODES = ("streamed", "in memory")
FEATURES = 1000
#: Examples generated (and written) at a time: 40 MB of float32.
GENERATE_CHUNK = 10_000


def generate(path: Path, examples: int, features: int) -> None:
    """Write a C-ordered float32 .npy of ``examples`` × ``features`` uniform values in [0, 1),
    seeded, chunk by chunk (never more than one chunk in memory)."""
    header = {"descr": "<f4", "fortran_order": False, "shape": (examples, features)}
    rng = np.random.default_rng(0)
    with path.open("wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for start in range(0, examples, GENERATE_CHUNK):
            rows = min(GENERATE_CHUNK, examples - start)
            rng.random((rows, features), dtype=np.float32).tofile(f)


def worker(path: str, mode: str, steps: int, batch_size: int) -> dict:
    """Train ``steps`` steps on ``path`` in ``mode``: seconds to load, examples per second
    after the first tenth of the steps (warm-up: kernels, the reader thread), peak RSS."""
    from vaekit.config.settings import ModelConfig, TrainConfig
    from vaekit.data.pipeline import TrainingData
    from vaekit.train.loop import fit
    from vaekit.train.start import engine_for

    class Done(Exception):
        pass

    config = TrainConfig(data=path, epochs=1, batch_size=batch_size, val_fraction=0.0, seed=0)
    started = time.perf_counter()
    data = TrainingData.load(config, stream=mode == "streamed")
    loaded = time.perf_counter()
    steps = min(steps, -(-len(data.train) // batch_size))
    warmup = max(1, steps // 10) if steps > 1 else 0
    marks = {0: time.perf_counter()}

    def on_step(engine, state, metrics, beta) -> None:
        marks[state.step] = time.perf_counter()
        if state.step == steps:
            raise Done

    model = ModelConfig(input_shape=tuple(data.train.shape[1:]), hidden=(400,), latent_dim=20)
    engine = engine_for(model, config)
    with contextlib.suppress(Done):
        fit(engine, config, data, on_step=on_step)
    seconds = marks[steps] - marks[warmup]
    return {
        "mode": mode,
        "streamed": data.streamed,
        "load_s": loaded - started,
        "examples_per_s": (steps - warmup) * batch_size / seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,  # KiB
    }


def run_worker(path: Path, mode: str, steps: int, batch_size: int) -> dict:
    command = [sys.executable, __file__, "--worker", mode, "--file", str(path)]
    command += ["--steps", str(steps), "--batch-size", str(batch_size)]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"the {mode} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def best(results: list[dict], mode: str) -> dict:
    """A mode's rounds summed up: its best throughput and load time, its largest peak RSS."""
    runs = [r for r in results if r["mode"] == mode]
    return {
        "mode": mode,
        "load_s": min(r["load_s"] for r in runs),
        "examples_per_s": max(r["examples_per_s"] for r in runs),
        "all_per_s": [r["examples_per_s"] for r in runs],
        "peak_rss_gb": max(r["peak_rss_gb"] for r in runs),
    }


def table(results: list[dict], gb: float, examples: int) -> str:
    rows = [best(results, mode) for mode in MODES]
    memory = rows[MODES.index("in memory")]
    lines = [
        f"{examples:,} examples × {FEATURES} float32 ({gb:.2f} GB file)",
        "",
        "| mode | load s | examples/s (best; each round) | share of in-memory | peak RSS GB |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        share = r["examples_per_s"] / memory["examples_per_s"]
        each = ", ".join(f"{v:,.0f}" for v in r["all_per_s"])
        lines.append(
            f"| {r['mode']} | {r['load_s']:.1f} | {r['examples_per_s']:,.0f} ({each}) | "
            f"{share:.0%} | {r['peak_rss_gb']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=4.0, help="size of the file (default 4)")
    parser.add_argument("--steps", type=int, default=3000, help="training steps per mode")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--rounds", type=int, default=2, help="runs of each mode, taking turns (default 2)"
    )
    parser.add_argument("--dir", type=Path, help="where to write large.npy (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the file (and reuse it)")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.file, args.worker, args.steps, args.batch_size)))
        return 0
    examples = max(1, round(args.gb * 1e9 / (4 * FEATURES)))
    folder = Path(args.dir or tempfile.mkdtemp(prefix="vaekit-large-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "large.npy"
    try:
        if not (args.keep and path.is_file() and np.load(path, mmap_mode="r").shape[0] == examples):
            started = time.perf_counter()
            generate(path, examples, FEATURES)
            took = time.perf_counter() - started
            print(f"generated {path} in {took:.0f} s", file=sys.stderr)
        results = [
            run_worker(path, mode, args.steps, args.batch_size)
            for _ in range(args.rounds)
            for mode in MODES
        ]
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
            if args.dir is None:
                shutil.rmtree(folder, ignore_errors=True)
    print(table(results, examples * FEATURES * 4 / 1e9, examples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
