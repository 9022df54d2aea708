"""The pictures of a run: the set that ``train`` writes at its end and ``demo`` shows, each also
drawn alone by its command (``sample``, ``reconstruct``, ``manifold``, ``scatter``,
``interpolate``, ``curves``). Inputs come already binarized as the run's protocol says."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from vaekit import checkpoint, figures
from vaekit.engines import Engine
from vaekit.sampling import reconstruct, sample_prior

SCATTER_POINTS = 10_000  # posterior means drawn in scatter.png (and used for the PCA plane)

#: The files :func:`draw_all` writes into a run directory, in order (see there for which ones a
#: given model gets).
SAMPLES, RECONSTRUCTIONS = "samples.png", "reconstructions.png"
MANIFOLD, INTERPOLATIONS = "manifold.png", "interpolations.png"
SCATTER, CURVES = "scatter.png", "curves.png"
RUN_FIGURES = (SAMPLES, RECONSTRUCTIONS, MANIFOLD, INTERPOLATIONS, SCATTER, CURVES)


def _when(epoch: int | None, step: int | None = None) -> str:
    """When a training figure was drawn, for its title: ' at epoch 3', ' at epoch 3, step
    1,500', or '' for a final figure."""
    if epoch is None:
        return ""
    return f" at epoch {epoch}" + ("" if step is None else f", step {step:,}")


def draw_samples(
    engine: Engine,
    path: Path,
    n: int = 64,
    seed: int = 0,
    *,
    epoch: int | None = None,
    step: int | None = None,
) -> None:
    """n prior samples in a square grid; a conditional model gets one row per class instead,
    with about n/C samples each (see :func:`draw_label_grid`). During training, the title says
    at which ``epoch`` (and ``step``) they were drawn."""
    classes = engine.config.n_classes
    if classes:
        per_class = max(1, round(n / classes))
        draw_label_grid(engine, path, per_class=per_class, seed=seed, epoch=epoch, step=step)
        return
    images = sample_prior(engine, n, seed=seed)
    title = f"{n} samples from the prior{_when(epoch, step)} (seed {seed})"
    figures.save_sample_grid(images, path, title)


def draw_label_grid(
    engine: Engine,
    path: Path,
    per_class: int = 10,
    seed: int = 0,
    *,
    epoch: int | None = None,
    step: int | None = None,
) -> None:
    """A conditional model's samples, one row per class, the same noise down each column: the
    same z, or with the class prior z = m_c + s_c·eps of row c's Gaussian at the same eps."""
    classes = engine.config.n_classes
    labels = np.repeat(np.arange(classes), per_class)
    z = np.concatenate(
        [
            engine.prior.sample(per_class, np.random.default_rng(seed), np.full(per_class, c))
            for c in range(classes)
        ]
    )
    images = engine.decode(z.astype(np.float32), labels)
    title = f"Samples by class{_when(epoch, step)}: row c is label c (seed {seed})"
    figures.save_sample_grid(images, path, title, ncol=per_class)


def draw_reconstructions(
    engine: Engine,
    x: np.ndarray,
    path: Path,
    seed: int = 0,
    labels: np.ndarray | None = None,
    *,
    epoch: int | None = None,
) -> None:
    """Inputs above their reconstructions (labels are used by a conditional model); during
    training, the title names the ``epoch``."""
    y = labels[: len(x)] if engine.config.conditional else None
    recon = reconstruct(engine, x, seed=seed, labels=y)
    title = f"Inputs (top) and their reconstructions (bottom){_when(epoch)}"
    figures.save_reconstructions(x, recon, path, title)


def posterior_means(
    engine: Engine,
    x: np.ndarray,
    labels: np.ndarray | None = None,
    limit: int = SCATTER_POINTS,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """E[z|x] (E[z|x, y] for a conditional model) of the first ``limit`` inputs, in batches of
    1,000; ``progress``, if given, is called after each with the number of inputs encoded."""
    x = x[:limit]
    y = labels[:limit] if engine.config.conditional else None
    parts = []
    for i in range(0, len(x), 1000):
        parts.append(engine.encode(x[i : i + 1000], None if y is None else y[i : i + 1000])[0])
        if progress is not None:
            progress(i + len(parts[-1]))
    return np.concatenate(parts)


def draw_manifold(
    engine: Engine,
    path: Path,
    x: np.ndarray | None = None,
    *,
    n: int = 20,
    dims: tuple[int, int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """2-D latents directly; otherwise ``dims``, or the PCA plane of the posterior means of x
    (encoded with ``progress`` as :func:`posterior_means` says)."""
    latents = None
    if engine.config.latent_dim > 2 and dims is None and x is not None:
        latents = posterior_means(engine, x, progress=progress)
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
    interpolations only for unconditional models; the manifold and the latent scatter only for
    at least 2 latent dimensions. Returns the files written (named in
    RUN_FIGURES)."""
    written = []
    if figures.can_draw(engine.config.input_shape):
        draw_samples(engine, run_dir / SAMPLES, seed=seed)
        draw_reconstructions(engine, x[:8], run_dir / RECONSTRUCTIONS, seed, labels)
        written += [SAMPLES, RECONSTRUCTIONS]
        if not engine.config.conditional and engine.config.latent_dim >= 2:
            draw_manifold(engine, run_dir / MANIFOLD, x)
            draw_interpolations(engine, x, run_dir / INTERPOLATIONS, seed=seed)
            written += [MANIFOLD, INTERPOLATIONS]
    if engine.config.latent_dim >= 2:
        latents = posterior_means(engine, x, labels)
        scatter_labels = None if labels is None else labels[: len(latents)]
        figures.save_latent_scatter(latents, scatter_labels, run_dir / SCATTER)
        written.append(SCATTER)
    curves = checkpoint.read_metrics(run_dir, checkpoint.CURVE_KEYS)
    figures.save_training_curves(curves, run_dir / CURVES)
    return [run_dir / name for name in [*written, CURVES]]
