"""The pictures of a run: the set that ``train`` writes at its end and ``demo`` shows, each also
drawn alone by its command (``sample``, ``reconstruct``, ``manifold``, ``scatter``,
``interpolate``, ``curves``). Inputs come already binarized as the run's protocol says."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vaekit.data import classes as class_names
from vaekit.disk import WriteFile, write_atomic
from vaekit.draw import figures, geometry
from vaekit.engines import Engine
from vaekit.engines.sampling import posterior_means, reconstruct, sample_prior
from vaekit.errors import ConfigError
from vaekit.measure.evaluation import latent_statistics
from vaekit.runs.metrics import CURVE_KEYS, read_metrics
from vaekit.text import plural

SCATTER_POINTS = 10_000  # posterior means drawn in scatter.png (and used for the PCA plane)

#: The files :func:`draw_all` writes into a run directory, in order (see there for which ones a
#: given model gets).
SAMPLES, RECONSTRUCTIONS = "samples.png", "reconstructions.png"
MANIFOLD, INTERPOLATIONS = "manifold.png", "interpolations.png"
SCATTER, CURVES = "scatter.png", "curves.png"
TRAVERSALS = "traversals.png"
TRAVERSAL_MAX_LATENT = 10  # train writes traversals.png for latent_dim up to this
TRAVERSAL_ORDER_POINTS = 1000  # inputs that order the dimensions
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
    names: Sequence[str] | None = None,
    write: WriteFile = write_atomic,
) -> None:
    """n prior samples in a square grid; a conditional model gets one row per class instead,
    with about n/C samples each (see :func:`draw_label_grid`, which ``names`` the rows).
    During training, the title says at which ``epoch`` (and ``step``) they were drawn, and
    ``write`` keeps the picture to be written later."""
    classes = engine.config.n_classes
    if classes:
        per_class = max(1, round(n / classes))
        draw_label_grid(
            engine,
            path,
            per_class=per_class,
            seed=seed,
            epoch=epoch,
            step=step,
            names=names,
            write=write,
        )
        return
    images = sample_prior(engine, n, seed=seed)
    title = f"{plural(n, 'sample')} from the prior{_when(epoch, step)} (seed {seed})"
    figures.save_sample_grid(images, path, title, write=write)


def draw_label_grid(
    engine: Engine,
    path: Path,
    per_class: int = 10,
    seed: int = 0,
    *,
    epoch: int | None = None,
    step: int | None = None,
    names: Sequence[str] | None = None,
    write: WriteFile = write_atomic,
) -> None:
    """A conditional model's samples, one row per class, labelled by the class's name in
    ``names`` (None: its number), the same noise down each column: the same z, or with the
    class prior z = m_c + s_c·eps of row c's Gaussian at the same eps."""
    classes = engine.config.n_classes
    labels = np.repeat(np.arange(classes), per_class)
    z = np.concatenate(
        [
            engine.prior.sample(per_class, np.random.default_rng(seed), np.full(per_class, c))
            for c in range(classes)
        ]
    )
    images = engine.decode(z.astype(np.float32), labels)
    rows = class_names.names_or_numbers(names, classes)
    detail = f"one row per class, the same noise down each column (seed {seed})"
    title = f"Samples by class{_when(epoch, step)}"
    figures.save_labelled_rows(images, path, rows, title, detail, write=write)


def spread_rows(n: int, labels: np.ndarray | None, count: int, seed: int) -> np.ndarray:
    """Up to ``n`` of ``count`` rows to show, chosen by ``seed``, so that a picture of a few
    rows of data sorted by class is no picture of one class. With ``labels`` (one per row): one
    row of each class in turn, in code order (class 0's first pick, class 1's, …, then again),
    each class's rows in a seeded random order, a class that runs out skipped. Without: a
    seeded random sample, in row order."""
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(count, size=min(n, count), replace=False))
    queues = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    picked: list[int] = []
    for turn in range(n):  # at most n turns are needed
        picked += [int(rows[turn]) for rows in queues if turn < len(rows)]
        if len(picked) >= n:
            break
    return np.array(picked[:n], dtype=np.int64)


def draw_reconstructions(
    engine: Engine,
    x: np.ndarray,
    path: Path,
    seed: int = 0,
    labels: np.ndarray | None = None,
    *,
    epoch: int | None = None,
    write: WriteFile = write_atomic,
) -> None:
    """Inputs above their reconstructions (labels are used by a conditional model); during
    training, the title names the ``epoch`` and ``write`` keeps the picture to be written
    later."""
    y = labels[: len(x)] if engine.config.conditional else None
    recon = reconstruct(engine, x, seed=seed, labels=y)
    title = f"Inputs (top) and their reconstructions (bottom){_when(epoch)}"
    figures.save_reconstructions(x, recon, path, title, write=write)


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
        latents = posterior_means(engine, x, limit=SCATTER_POINTS, progress=progress)
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


def dimension_order(
    engine: Engine, x: np.ndarray, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """Latent dimensions by decreasing use over the first TRAVERSAL_ORDER_POINTS inputs x:
    (order, score per dimension, the score's name). The score is the mean
    KL(q(z_k|x) ‖ p(z_k)) in nats where the model has it in closed form
    (:func:`vaekit.measure.evaluation.latent_statistics`), else Var_x(E[z_k|x]), the variance of the
    posterior means across the inputs (a mixture or VampPrior, a flow, two layers)."""
    y = None if labels is None or not engine.config.conditional else labels
    x = x[:TRAVERSAL_ORDER_POINTS]
    stats = latent_statistics(engine, x, y=None if y is None else y[: len(x)])
    if np.isnan(stats.kl_per_dim).any():
        score, name = stats.mean_variance, "Var E[z|x]"
    else:
        score, name = stats.kl_per_dim, "KL"
    return np.argsort(-score, kind="stable"), score, name


def draw_traversals(
    engine: Engine,
    path: Path,
    x: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    dims: list[int] | None = None,
    steps: int = 9,
    base: np.ndarray | None = None,
    label: int | None = None,
    n_dims: int = 10,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """Latent traversals: for each chosen dimension k, decode ``base`` with z_k swept over the
    prior's quantiles at ``steps`` values of p evenly spaced over [0.05, 0.95]; the other
    coordinates stay at ``base`` (default: the prior's per-coordinate median, quantile(0.5)).
    Rows are ``dims`` as given, else the ``n_dims`` dimensions with the most use (see
    :func:`dimension_order`, over x and labels); a conditional model decodes every image with
    ``label`` (default 0), named in the figure by ``names`` (None: its number). Writes the PNG
    when the inputs can be drawn; returns the decoder means, (rows, steps, *input_shape).
    """
    k = engine.config.latent_dim
    if not isinstance(steps, (int, np.integer)) or not 2 <= steps <= 100:
        raise ConfigError(f"steps must be 2..100; got {steps!r}")
    if label is not None and not engine.config.conditional:
        raise ConfigError("--label needs a conditional model; this one is unconditional")
    order, score, name = dimension_order(engine, x, labels)
    if dims is None:
        dims = [int(d) for d in order[:n_dims]]
    bad = [d for d in dims if not 0 <= d < k]
    if bad or not dims:
        raise ConfigError(f"dims must be latent indices in 0..{k - 1}; got {dims}")
    quantiles = geometry.manifold_quantiles(steps, engine.prior)
    if base is None:
        base = engine.prior.quantile(np.array(0.5))
    z = geometry.traversal_latents(base, quantiles, dims)
    flat = z.reshape(-1, k).astype(np.float32)
    y = None
    if engine.config.conditional:
        y = np.full(len(flat), 0 if label is None else label)
    images = np.asarray(engine.decode(flat, y))
    if figures.can_draw(engine.config.input_shape):
        unit = " nats" if name == "KL" else ""
        rows = [f"z[{d}] {name} {score[d]:.2f}{unit}" for d in dims]
        lo, hi = geometry.QUANTILE_RANGE
        detail = f"each row sweeps one z_k over its prior quantiles, p = {lo:g}..{hi:g}"
        if y is not None:
            shown = class_names.names_or_numbers(names, engine.config.n_classes)
            detail += f", label {shown[y[0]]}"
        figures.save_labelled_rows(images, path, rows, "Latent traversals", detail)
    return images.reshape(len(dims), steps, *images.shape[1:])


def draw_all(
    run_dir: Path, engine: Engine, x: np.ndarray, labels: np.ndarray | None, seed: int
) -> list[Path]:
    """Every figure of a run into ``run_dir``; x (and labels) are test inputs, else training
    inputs. Image figures only for inputs that can be drawn; the latent manifold and the
    interpolations only for unconditional models; the manifold and the latent scatter only for
    at least 2 latent dimensions. Returns the files written (named in RUN_FIGURES, and
    TRAVERSALS for drawable inputs and at most TRAVERSAL_MAX_LATENT latent dimensions). The
    classes are named as the run names them (``classes.json``)."""
    written = []
    names = class_names.load(run_dir)
    if figures.can_draw(engine.config.input_shape):
        draw_samples(engine, run_dir / SAMPLES, seed=seed, names=names)
        draw_reconstructions(engine, x[:8], run_dir / RECONSTRUCTIONS, seed, labels)
        written += [SAMPLES, RECONSTRUCTIONS]
        if not engine.config.conditional and engine.config.latent_dim >= 2:
            draw_manifold(engine, run_dir / MANIFOLD, x)
            draw_interpolations(engine, x, run_dir / INTERPOLATIONS, seed=seed)
            written += [MANIFOLD, INTERPOLATIONS]
    if figures.can_draw(engine.config.input_shape) and (
        engine.config.latent_dim <= TRAVERSAL_MAX_LATENT
    ):
        draw_traversals(engine, run_dir / TRAVERSALS, x, labels, names=names)
        written.append(TRAVERSALS)
    if engine.config.latent_dim >= 2:
        latents = posterior_means(engine, x, labels, limit=SCATTER_POINTS)
        scatter_labels = None if labels is None else labels[: len(latents)]
        figures.save_latent_scatter(latents, scatter_labels, run_dir / SCATTER, names=names)
        written.append(SCATTER)
    curves = read_metrics(run_dir, CURVE_KEYS)
    figures.save_training_curves(curves, run_dir / CURVES)
    return [run_dir / name for name in [*written, CURVES]]
