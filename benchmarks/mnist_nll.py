"""Test NLL on dynamically binarized MNIST, the literature protocol, within a training time budget.

Model (Burda, Grosse & Salakhutdinov 2015, one stochastic layer): 784-200-200-50, tanh,
Bernoulli decoder; their VAE reached 86.76 nats (test NLL, IWAE bound with k = 5000).
Protocol: training images dynamically binarized (a fresh Bernoulli sample per batch), the test set
binarized once with a fixed seed; NLL = −mean L_5000 over the 10,000 test images.

Recipe (vaekit's default for this benchmark): batch 100, Adam 1e-3 decayed ×0.999 per epoch,
β = 1, no warm-up. Training runs until the largest budget; at the first epoch end past each
budget the weights are saved as a run directory, and afterwards each is evaluated. Prints one
table: budget, epochs, training minutes, test −ELBO, test NLL, evaluation minutes.

    python benchmarks/mnist_nll.py                          # budgets 60 and 120 minutes
    python benchmarks/mnist_nll.py --budgets 5 --iw-samples 500   # a quick look
    python benchmarks/mnist_nll.py --evaluate-only          # evaluate saved runs again
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

from vaekit import checkpoint
from vaekit.config import ModelConfig, TrainConfig
from vaekit.evaluation import evaluate_elbo, iwae_log_likelihood
from vaekit.training import LoopState, TrainingData, engine_for, fit

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MODEL = ModelConfig(hidden=(200, 200), latent_dim=50, activation="tanh")


class BudgetSpent(Exception):
    """Raised by the epoch hook once the last budget is reached."""


def train(args: argparse.Namespace, config: TrainConfig) -> None:
    data = TrainingData.load(config)
    engine = engine_for(MODEL, config)
    budgets = sorted(args.budgets)
    records: list[dict] = []
    started = time.perf_counter()

    def on_epoch(engine, record, state: LoopState) -> None:
        minutes = (time.perf_counter() - started) / 60
        records.append(dict(record, minutes=minutes))
        if record["epoch"] % 50 == 0:
            print(f"epoch {record['epoch']}: train loss {record['loss']:.2f} ({minutes:.1f} min)")
        while budgets and minutes >= budgets[0]:
            run_dir = args.out / f"budget-{budgets.pop(0):g}min"
            run_dir.mkdir(parents=True, exist_ok=True)
            checkpoint.write_config(run_dir, MODEL, config, "benchmark")
            checkpoint.save_weights(run_dir, engine)
            checkpoint.write_metrics(run_dir, records)
            print(f"saved {run_dir} after {record['epoch']} epochs, {minutes:.1f} min")
        if not budgets:
            raise BudgetSpent

    with contextlib.suppress(BudgetSpent):
        fit(engine, config, TrainingData(train=data.train, test=None), on_epoch=on_epoch)


def evaluate(args: argparse.Namespace, config: TrainConfig) -> None:
    test = TrainingData.load(config).test
    rows = []
    for run_dir in sorted(args.out.glob("budget-*min"), key=lambda p: float(p.name[7:-3])):
        engine = checkpoint.open_run(run_dir, args.eval_engine)
        last = checkpoint.read_metrics(run_dir)[-1]
        started = time.perf_counter()
        elbo = evaluate_elbo(engine, test, seed=0)
        nll = -iwae_log_likelihood(engine, test, args.iw_samples, seed=0).mean()
        minutes = (time.perf_counter() - started) / 60
        rows.append((run_dir.name[7:], last["epoch"], last["minutes"], elbo.loss, nll, minutes))
        print(f"evaluated {run_dir}: NLL {nll:.2f} in {minutes:.1f} min")
    print()
    print(
        f"| budget | epochs | training (min) | test −ELBO | test NLL (k={args.iw_samples}) "
        "| evaluation (min) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for budget, epochs, train_min, elbo, nll, eval_min in rows:
        print(
            f"| {budget} | {epochs} | {train_min:.1f} | {elbo:.2f} | {nll:.2f} | {eval_min:.1f} |"
        )
    print("| Burda et al. 2015, VAE k=1 | 3280 | | | 86.76 | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/mnist-nll"))
    parser.add_argument("--budgets", type=float, nargs="+", default=[60, 120], metavar="MIN")
    parser.add_argument("--iw-samples", type=int, default=5000)
    parser.add_argument("--engine", choices=("torch", "numpy"), default="numpy")
    parser.add_argument("--eval-engine", choices=("torch", "numpy"), default="torch")
    parser.add_argument("--evaluate-only", action="store_true")
    args = parser.parse_args()
    config = TrainConfig(
        data="mnist",
        data_dir=str(args.data_dir),
        engine=args.engine,
        binarize="dynamic",
        batch_size=100,
        lr=1e-3,
        lr_decay=0.999,
        epochs=1_000_000,
        seed=0,
    )
    if not args.evaluate_only:
        train(args, config)
    evaluate(args, config)


if __name__ == "__main__":
    main()
