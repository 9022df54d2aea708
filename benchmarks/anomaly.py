"""Anomaly detection with the VAE estimator on two data sets that ship with scikit-learn.

Each setup trains on normal rows only, then scores a test split of held-out normal rows and
anomalies. Three anomaly scores are compared by ROC AUC (sklearn.metrics.roc_auc_score, 0.5 is
chance) on the same split:

- VAE −log p(x): minus ``VAE.score_samples`` (importance-weighted bound, k = 100), nats;
- VAE reconstruction error: the squared error of ``VAE.reconstruct`` (one z ~ q(z|x)) summed
  over the features, in the model's scaled units;
- IsolationForest (``random_state`` fixed, 100 trees): minus its ``decision_function``, fitted
  on the same training rows.

And the VAE's own calibrated flags (``predict``: log p(x) below ``threshold_``, the
``--contamination`` quantile of its held-out normal rows): the share of normal test rows
flagged (false-positive rate, FPR) and of anomalies flagged (true-positive rate, TPR).

(a) breast cancer (569 tumours, 30 measurements): benign is normal. Per split seed, 70% of the
    benign rows train (the estimator holds 20% of those out to calibrate ``threshold_``), the
    other 30% and all 212 malignant rows are the test split. Gaussian likelihood with a learned
    σ per feature, ``scale="standardize"``: the measurements have different units and ranges.
(b) digits (1,797 8×8 images, grey levels 0…16): each digit in turn is normal, 70% of its
    images train, the test split is the other 30% and every image of the other nine digits;
    the table gives the mean over the ten digits. The levels are one quantity on one scale, so
    they are divided by 16 as a whole (a per-pixel standardization fitted on one digit would
    blow up on the pixels that digit never inks), and modelled, as MNIST is, by a Bernoulli
    likelihood on grey levels in [0, 1].

    python benchmarks/anomaly.py             # both setups, 10 breast-cancer splits
    python benchmarks/anomaly.py --quick     # one split, digits 0 and 1, few epochs (a smoke run)
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from vaekit.api.estimator import VAE

TRAIN_SHARE = 0.7  # of the normal rows; the rest join the anomalies in the test split


@dataclass
class Result:
    """ROC AUCs of the three scores and the calibrated flags' FPR and TPR, on one test split."""

    nll: float
    recon: float
    forest: float
    fpr: float
    tpr: float


def split_normal(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, test rows) of n normal rows: a seeded 70/30 permutation split."""
    order = np.random.default_rng(seed).permutation(n)
    cut = round(TRAIN_SHARE * n)
    return np.sort(order[:cut]), np.sort(order[cut:])


def evaluate(vae: VAE, train: np.ndarray, normal: np.ndarray, anomalies: np.ndarray, seed: int):
    """Fit ``vae`` and an IsolationForest on ``train``; score ``normal`` + ``anomalies``."""
    vae.fit(train)
    test = np.concatenate([normal, anomalies])
    is_anomaly = np.r_[np.zeros(len(normal)), np.ones(len(anomalies))]
    scaled = vae.scaling_.apply(test)
    recon_error = ((vae.scaling_.apply(vae.reconstruct(test)) - scaled) ** 2).sum(axis=1)
    forest = IsolationForest(random_state=seed).fit(train)
    flagged = vae.predict(test) == -1
    return Result(
        nll=roc_auc_score(is_anomaly, -vae.score_samples(test)),
        recon=roc_auc_score(is_anomaly, recon_error),
        forest=roc_auc_score(is_anomaly, -forest.decision_function(test)),
        fpr=float(flagged[: len(normal)].mean()),
        tpr=float(flagged[len(normal) :].mean()),
    )


def breast_cancer(seeds: range, epochs: int, contamination: float) -> list[Result]:
    data = load_breast_cancer()
    benign, malignant = data.data[data.target == 1], data.data[data.target == 0]
    results = []
    for seed in seeds:
        train, normal = split_normal(len(benign), seed)
        vae = VAE(
            hidden=(64,),
            latent_dim=4,
            likelihood="gaussian",
            learn_sigma="per-dim",
            scale="standardize",
            val_fraction=0.2,
            contamination=contamination,
            epochs=epochs,
            batch_size=32,
            lr=1e-3,
            engine="numpy",
            seed=seed,
        )
        results.append(evaluate(vae, benign[train], benign[normal], malignant, seed))
    return results


def digits(classes: range, epochs: int, contamination: float) -> list[Result]:
    data = load_digits()
    levels = data.data / 16.0  # grey levels 0…16 → [0, 1], one scale for every pixel
    results = []
    for digit in classes:
        mine = levels[data.target == digit]
        train, normal = split_normal(len(mine), digit)
        vae = VAE(
            hidden=(64,),
            latent_dim=4,
            val_fraction=0.2,
            contamination=contamination,
            epochs=epochs,
            batch_size=32,
            lr=1e-3,
            engine="numpy",
            seed=digit,
        )
        others = levels[data.target != digit]
        results.append(evaluate(vae, mine[train], mine[normal], others, digit))
    return results


def row(name: str, results: list[Result]) -> str:
    def cell(values: list[float], percent: bool = False) -> str:
        mean, sd = float(np.mean(values)), float(np.std(values))
        if percent:
            return f"{100 * mean:.1f}%"
        return f"{mean:.3f} ± {sd:.3f}" if len(values) > 1 else f"{mean:.3f}"

    columns = [[getattr(r, field) for r in results] for field in ("nll", "recon", "forest")]
    flags = [cell([r.fpr for r in results], True), cell([r.tpr for r in results], True)]
    return f"| {name} | " + " | ".join([*(cell(c) for c in columns), *flags]) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny settings")
    parser.add_argument("--contamination", type=float, default=0.05)
    args = parser.parse_args()
    seeds, classes, epochs = (range(1), range(2), 5) if args.quick else (range(10), range(10), 300)
    started = time.perf_counter()
    cancer = breast_cancer(seeds, epochs, args.contamination)
    digit = digits(classes, epochs, args.contamination)
    minutes = (time.perf_counter() - started) / 60
    print(f"python benchmarks/anomaly.py{' --quick' if args.quick else ''}  ({minutes:.1f} min)")
    print(f"ROC AUC (mean ± sd over setups); flags at contamination = {args.contamination:g}")
    print()
    print("| data (normal class) | VAE −log p(x) | VAE reconstruction error | IsolationForest "
          "| FPR on normal test rows | TPR on anomalies |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print(row(f"breast cancer (benign), {len(seeds)} split{'s' * (len(seeds) > 1)}", cancer))
    print(row(f"digits (each of {len(classes)} as normal)", digit))


if __name__ == "__main__":
    main()
