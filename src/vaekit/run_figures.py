"""The pictures of a run: the set that ``train`` writes at its end and ``demo`` shows, each also
drawn alone by its command (``sample``, ``reconstruct``, ``manifold``, ``scatter``,
``interpolate``, ``curves``). Inputs come already binarized as the run's protocol says."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaekit import checkpoint, figures
from vaekit.engines import Engine
from vaekit.sampling import reconstruct, sample_prior

SCATTER_POINTS = 10_000  # posterior means drawn in scatter.png (and used for the PCA plane)


def draw_samples(engine: Engine, path: Path, n: int = 64, seed: int = 0) -> None:
    """n prior samples in a square grid; a conditional model gets one row per class instead,
    with about n/C samples each (see :func:`draw_label_grid`)."""
    classes = engine.config.n_classes
    if classes:
        draw_label_grid(engine, path, per_class=max(1, round(n / classes)), seed=seed)
        return
    images = sample_prior(engine, n, seed=seed)
    figures.save_sample_grid(images, path, f"{n} samples from the prior (seed {seed})")


def draw_label_grid(engine: Engine, path: Path, per_class: int = 10, seed: int = 0) -> None:
    """A conditional model's samples, one row per class, the same z down each column."""
    classes = engine.config.n_classes
    z = np.random.default_rng(seed).standard_normal((per_class, engine.config.latent_dim))
    z = np.tile(z.astype(np.float32), (classes, 1))
    images = engine.decode(z, np.repeat(np.arange(classes), per_class))
    title = f"Samples by class: row c is label c (seed {seed})"
    figures.save_sample_grid(images, path, title, ncol=per_class)


def draw_reconstructions(
    engine: Engine, x: np.ndarray, path: Path, seed: int = 0, labels: np.ndarray | None = None
) -> None:
    """Inputs above their reconstructions (labels are used by a conditional model)."""
    y = labels[: len(x)] if engine.config.conditional else None
    recon = reconstruct(engine, x, seed=seed, labels=y)
    figures.save_reconstructions(x, recon, path, "Inputs (top) and their reconstructions (bottom)")


def posterior_means(
    engine: Engine, x: np.ndarray, labels: np.ndarray | None = None, limit: int = SCATTER_POINTS
) -> np.ndarray:
    """E[z|x] (E[z|x, y] for a conditional model) of the first ``limit`` inputs, in batches."""
    x = x[:limit]
    y = labels[:limit] if engine.config.conditional else None
    parts = [
        engine.encode(x[i : i + 1000], None if y is None else y[i : i + 1000])[0]
        for i in range(0, len(x), 1000)
    ]
    return np.concatenate(parts)


def draw_manifold(
    engine: Engine,
    path: Path,
    x: np.ndarray | None = None,
    *,
    n: int = 20,
    dims: tuple[int, int] | None = None,
) -> None:
    """2-D latents directly; otherwise ``dims``, or the PCA plane of the posterior means of x."""
    latents = None
    if engine.config.latent_dim > 2 and dims is None and x is not None:
        latents = posterior_means(engine, x)
    figures.save_manifold(engine, path, n=n, dims=dims, latents=latents)


def draw_interpolations(
    engine: Engine,
    x: np.ndarray,
    path: Path,
    *,
    pairs: int = 4,
    steps: int = 10,
    method: str = "linear",
    seed: int = 0,
) -> None:
    """Interpolate between ``pairs`` pairs of inputs drawn from x with ``seed``."""
    pick = np.random.default_rng(seed).choice(len(x), size=2 * pairs, replace=len(x) < 2 * pairs)
    figures.save_interpolations(
        engine, x[pick[:pairs]], x[pick[pairs:]], path, steps=steps, method=method
    )


def draw_all(
    run_dir: Path, engine: Engine, x: np.ndarray, labels: np.ndarray | None, seed: int
) -> list[Path]:
    """Every figure of a run into ``run_dir``; x (and labels) are test inputs, else training
    inputs. Image figures only for inputs that can be drawn; the latent manifold and the
    interpolations only for unconditional models. Returns the files written."""
    written = []
    if figures.can_draw(engine.config.input_shape):
        draw_samples(engine, run_dir / "samples.png", seed=seed)
        draw_reconstructions(engine, x[:8], run_dir / "reconstructions.png", seed, labels)
        written += ["samples.png", "reconstructions.png"]
        if not engine.config.conditional:
            draw_manifold(engine, run_dir / "manifold.png", x)
            draw_interpolations(engine, x, run_dir / "interpolations.png", seed=seed)
            written += ["manifold.png", "interpolations.png"]
    latents = posterior_means(engine, x, labels)
    scatter_labels = None if labels is None else labels[: len(latents)]
    figures.save_latent_scatter(latents, scatter_labels, run_dir / "scatter.png")
    figures.save_training_curves(checkpoint.read_metrics(run_dir), run_dir / "curves.png")
    return [run_dir / name for name in [*written, "scatter.png", "curves.png"]]
