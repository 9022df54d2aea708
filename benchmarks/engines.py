"""NumPy engine vs PyTorch engine on the reference model, in one run.

Trains the PyTorch-example VAE (784-400-20, ReLU, Bernoulli on grey levels, Adam 1e-3,
batch 128) with each engine through the same training loop (``vaekit.training.fit``: no
checkpoints or figures, so only training and the per-epoch test ELBO are timed) and prints one
table: samples/s, seconds per epoch, and the final test −ELBO in nats per example.

    python benchmarks/engines.py                      # MNIST from ../shared/data, 10 epochs
    python benchmarks/engines.py --data-dir DIR --epochs 3
    python benchmarks/engines.py --quick              # mnist-small, 2 epochs, seconds
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from vaekit.config import ModelConfig, TrainConfig
from vaekit.training import TrainingData, engine_for, fit

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="mnist-small, 2 epochs")
    args = parser.parse_args()

    if args.quick:
        data_name, epochs = "mnist-small", 2
    else:
        data_name, epochs = "mnist", args.epochs
    base = TrainConfig(data=data_name, data_dir=str(args.data_dir), epochs=epochs, seed=0)
    data = TrainingData.load(base)
    model = ModelConfig()
    print(
        f"data {data_name}: {len(data.train):,} train / {len(data.test):,} test; "
        f"model 784-400-20 relu bernoulli; batch 128; Adam 1e-3; {epochs} epochs"
    )
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}"
        f", torch threads {torch.get_num_threads()}"
    )
    rows = []
    for engine_name in ("torch", "numpy"):
        config = TrainConfig(data=data_name, engine=engine_name, epochs=epochs, seed=0)
        engine_for(model, config).train_step(data.train[:128], 1.0)  # warm up, then discard
        engine = engine_for(model, config)
        started = time.perf_counter()
        history = fit(engine, config, data)
        total = time.perf_counter() - started
        rows.append(
            (
                engine_name,
                len(data.train) * epochs / total,
                total / epochs,
                history[-1]["test_loss"],
            )
        )
    print()
    print("| engine | samples/s | s/epoch | test -ELBO (nats) | time vs torch |")
    print("| --- | ---: | ---: | ---: | ---: |")
    torch_time = rows[0][2]
    for name, rate, per_epoch, test in rows:
        print(
            f"| {name} | {rate:,.0f} | {per_epoch:.2f} | {test:.2f} | "
            f"{per_epoch / torch_time:.2f}x |"
        )


if __name__ == "__main__":
    main()
