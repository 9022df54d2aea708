"""Sample quality in the feature space of a small MNIST-like classifier.

Not comparable to published FID: those use an Inception network on natural images; these
scores use a small CNN (``FeatureNet``) trained by ``scripts/train_quality_classifier.py``
on the training split of MNIST or Fashion-MNIST (weights shipped as float32 safetensors).

- Fréchet distance between Gaussians fitted to two feature sets:
  FD = ‖μ1−μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2})  (squared feature units).
- Precision/recall (Kynkäänniemi et al. 2019): the real manifold is the union of balls around
  each real feature with radius its distance to its k-th nearest real neighbour; precision is
  the fraction of fake features inside it, recall the fraction of real features inside the
  fake manifold.
- Confidence: mean over samples of max_c p(c|x); entropy: mean of −Σ_c p(c|x) log p(c|x) (nats).
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from vaekit.errors import ConfigError

#: The data set whose classifier scores a run's data (mnist-small is a subset of MNIST).
WEIGHTS_FOR = {"mnist": "mnist", "mnist-small": "mnist", "fashion-mnist": "fashion-mnist"}
FEATURES = 128


def weights_path(name: str):
    """The shipped safetensors file of the classifier for data set ``name``."""
    if name not in WEIGHTS_FOR:
        raise ConfigError(
            f"quality scores need MNIST-like data ({', '.join(WEIGHTS_FOR)}), not {name!r}"
        )
    folder = resources.files("vaekit.measure") / "quality_weights"
    return folder / f"{WEIGHTS_FOR[name]}.safetensors"


def build_network():
    """The feature network for (N, 1, 28, 28) images in [0, 1]: conv 3×3 (8) → ReLU → max-pool
    2 → conv 3×3 (16) → ReLU → max-pool 2 → dense 784→128 → ReLU (the features) → dense 128→10
    (class logits); about 103k parameters."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 7 * 7, FEATURES),
        nn.ReLU(),
        nn.Linear(FEATURES, 10),
    )


def load_network(name: str):
    """The trained feature network for data set ``name``, in eval mode."""
    from safetensors.torch import load_file

    net = build_network()
    net.load_state_dict(load_file(str(weights_path(name))))
    return net.eval()


def features(net, images: np.ndarray, batch: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, 128), class probabilities (N, 10)) of images (N, 1, 28, 28), clipped to
    [0, 1] first, float64."""
    import torch

    x = np.clip(np.asarray(images, dtype=np.float32).reshape(-1, 1, 28, 28), 0.0, 1.0)
    feats, probs = [], []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            h = net[:-1](torch.from_numpy(x[start : start + batch]))
            feats.append(h.double().numpy())
            probs.append(torch.softmax(net[-1](h), dim=1).double().numpy())
    return np.concatenate(feats), np.concatenate(probs)


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """FD between Gaussians fitted to rows of f1 and f2 (see the module docstring); the trace of
    the square root is the sum of square roots of the eigenvalues of Σ1^{1/2} Σ2 Σ1^{1/2}
    (symmetric positive semi-definite)."""
    f1, f2 = np.atleast_2d(f1.T).T, np.atleast_2d(f2.T).T
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1 = np.atleast_2d(np.cov(f1, rowvar=False))
    s2 = np.atleast_2d(np.cov(f2, rowvar=False))
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = np.linalg.eigvalsh(root1 @ s2 @ root1)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_root)


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """‖a_i − b_j‖² for rows of a and b, (len(a), len(b)), clipped at 0."""
    return np.maximum((a**2).sum(1)[:, None] + (b**2).sum(1)[None] - 2 * a @ b.T, 0.0)


def _radii(points: np.ndarray, k: int, chunk: int = 1000) -> np.ndarray:
    """Distance of each point to its k-th nearest other point of the same set (the point
    itself, at distance 0, is the 0-th)."""
    out = np.empty(len(points))
    for start in range(0, len(points), chunk):
        d2 = _squared_distances(points[start : start + chunk], points)
        out[start : start + chunk] = np.sqrt(np.partition(d2, k, axis=1)[:, k])
    return out


def _coverage(support: np.ndarray, radii: np.ndarray, queries: np.ndarray, chunk: int = 1000):
    """Fraction of queries within radii[i] of some support[i]."""
    inside = np.zeros(len(queries), dtype=bool)
    for start in range(0, len(queries), chunk):
        d2 = _squared_distances(queries[start : start + chunk], support)
        inside[start : start + chunk] = (d2 <= radii[None] ** 2 * (1 + 1e-9)).any(1)
    return float(inside.mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of Kynkäänniemi et al. (2019) with k-th-neighbour radii."""
    precision = _coverage(real, _radii(real, k), fake)
    recall = _coverage(fake, _radii(fake, k), real)
    return precision, recall


def confidence_entropy(probs: np.ndarray) -> tuple[float, float]:
    """(mean max_c p(c|x), mean −Σ_c p log p in nats) over rows of class probabilities."""
    entropy = -(probs * np.log(np.clip(probs, 1e-30, None))).sum(1)
    return float(probs.max(1).mean()), float(entropy.mean())


def score(net, real: np.ndarray, fake: np.ndarray, k: int = 3) -> dict[str, float]:
    """FD, precision, recall (real vs fake features) and the classifier's confidence and
    entropy on the fake images."""
    f_real, _ = features(net, real)
    f_fake, p_fake = features(net, fake)
    precision, recall = precision_recall(f_real, f_fake, k)
    confidence, entropy = confidence_entropy(p_fake)
    return {
        "fd": frechet_distance(f_real, f_fake),
        "precision": precision,
        "recall": recall,
        "confidence": confidence,
        "entropy": entropy,
    }


def to_unit(images: np.ndarray, scaling) -> np.ndarray:
    """Model inputs of a run on a named (8-bit) data set back to pixels/255 in [0, 1]: through
    the run's stored ``scaling`` (None: a run from before scalings, already pixels/255)."""
    return images if scaling is None else scaling.invert(images) / np.float32(255)


def score_run(
    run_dir,
    n: int = 10_000,
    seed: int = 0,
    *,
    engine_name: str | None = None,
    device: str = "auto",
    which: str | None = None,
    data_dir=None,
) -> dict:
    """:func:`score` of n prior samples of the run (classes in turn for a conditional run)
    against the test split of the run's own data set, which must be MNIST-like (else
    :class:`ConfigError`); adds n, the real count, the data set and the classifier used."""
    from vaekit.data.scaling import Scaling
    from vaekit.engines.sampling import sample_prior
    from vaekit.runs import config_file, loading
    from vaekit.runs.inputs import run_data

    model, train, _ = config_file.read_config(run_dir)
    if train.data not in WEIGHTS_FOR or tuple(model.input_shape) != (1, 28, 28):
        raise ConfigError(
            f"{run_dir} was trained on {train.data!r}; quality scores need a run on "
            f"{', '.join(WEIGHTS_FOR)} (1×28×28 grey images)"
        )
    net = load_network(train.data)
    engine = loading.open_run(run_dir, engine_name, device, which)
    real, _ = run_data(run_dir, None, "test", data_dir=data_dir, binarize_mode="none")
    scaling = Scaling.load(run_dir)
    fake = to_unit(sample_prior(engine, n, seed=seed), scaling)
    result = score(net, to_unit(real.x, scaling), fake)
    return {
        **result,
        "n": n,
        "n_real": len(real.x),
        "data": train.data,
        "classifier": WEIGHTS_FOR[train.data],
        "seed": seed,
    }
