"""Pictures of a VAE as PNG files: sample grids, reconstructions, the 2-D latent manifold, latent
scatter plots, interpolations and training curves.

Images are arrays (N, C, H, W) with C = 1 (grey) or 3 (RGB), or flat (N, D) with D a square
number (shown as a grey square); values are clipped to [0, 1] for display. Files are written
atomically (temporary name, then rename), only after every input has been checked; the pictures
a run draws as it trains go to a ``write`` function instead, which writes them later. Figures
are drawn with :class:`matplotlib.figure.Figure` (never pyplot), at 100 dpi.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vaekit.data.classes import names_or_numbers
from vaekit.disk import WriteFile, write_atomic
from vaekit.draw.geometry import (
    check_latents,
    check_projection,
    interpolate_latents,
    manifold_plane,
    project,
)
from vaekit.engines import Engine
from vaekit.errors import ConfigError, DataError
from vaekit.text import plural

# matplotlib is imported by the functions that draw: a command that draws nothing never loads it.
if TYPE_CHECKING:
    from matplotlib.figure import Figure


PAD = 2  # pixels between tiles


DPI = 100


MAX_IMAGE_PIXELS = 760  # the longest side of an image grid on screen, in pixels


GAP = 6  # extra white pixels between an interpolation strip and its two inputs


IMAGE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}  # file suffix → format written


def can_draw(shape: tuple[int, ...]) -> bool:
    """Whether inputs of this shape (without the batch axis) can be shown as images."""
    if len(shape) == 3:
        return shape[0] in (1, 3)
    if len(shape) == 1:
        return math.isqrt(shape[0]) ** 2 == shape[0]
    return False


def _as_images(x: np.ndarray) -> np.ndarray:
    """(N, H, W) grey or (N, H, W, 3) RGB, float in [0, 1]."""
    shape = x.shape[1:]
    if not can_draw(shape):
        raise DataError(f"inputs of shape {shape} cannot be drawn as images")
    if len(shape) == 1:
        side = math.isqrt(shape[0])
        return np.clip(x.reshape(len(x), side, side), 0, 1)
    x = np.clip(x, 0, 1)
    return x[:, 0] if shape[0] == 1 else x.transpose(0, 2, 3, 1)


def tile(images: np.ndarray, ncol: int) -> np.ndarray:
    """Lay images (N, H, W[, 3]) out in rows of ``ncol`` with PAD-pixel white gaps."""
    n, h, w = images.shape[:3]
    nrow = math.ceil(n / ncol)
    canvas = np.ones((nrow * (h + PAD) + PAD, ncol * (w + PAD) + PAD, *images.shape[3:]))
    for i, image in enumerate(images):
        r, c = divmod(i, ncol)
        top, left = PAD + r * (h + PAD), PAD + c * (w + PAD)
        canvas[top : top + h, left : left + w] = image
    return canvas


def image_path(path: str | Path) -> Path:
    """``path`` as a Path, if its suffix names a format figures are written in (PNG or JPEG,
    see IMAGE_FORMATS); raises :class:`ConfigError` otherwise, before any drawing."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_FORMATS:
        raise ConfigError(f"cannot write a picture to {path}: name a .png, .jpg or .jpeg file")
    return path


def _write_image(
    fig: Figure, path: str | Path, title: str, write: WriteFile = write_atomic
) -> None:
    """Render ``fig`` in memory in the format its suffix names, then ``write`` it to ``path``
    (by default atomically, now). A PNG carries ``title`` in its Title text field."""
    path = image_path(path)
    kind = IMAGE_FORMATS[path.suffix.lower()]
    options: dict[str, Any] = {"metadata": {"Title": title}} if kind == "png" else {}
    buffer = io.BytesIO()
    fig.savefig(buffer, format=kind, dpi=DPI, **options)
    write(path, buffer.getvalue())


def _save(canvas: np.ndarray, path: Path, title: str, write: WriteFile) -> None:
    height, width = canvas.shape[:2]
    from matplotlib.figure import Figure

    scale = 3 / 100  # 3 screen pixels per image pixel at 100 dpi
    fig = Figure(figsize=(max(width * scale, 3.0), height * scale + 0.5), dpi=100)
    ax = fig.add_axes((0, 0, 1, height * scale / (height * scale + 0.5)))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    fig.suptitle(plain(title), y=0.99, va="top", fontsize=10)
    _write_image(fig, path, title, write)


def save_sample_grid(
    x: np.ndarray,
    path: str | Path,
    title: str,
    ncol: int | None = None,
    *,
    write: WriteFile = write_atomic,
) -> None:
    """Draw images ``x`` in a grid (square by default) with a title, as a PNG at ``path``
    (``write`` writes it; see :func:`_write_image`)."""
    images = _as_images(x)
    ncol = ncol or math.ceil(math.sqrt(len(images)))
    _save(tile(images, ncol), Path(path), title, write)


def save_reconstructions(
    originals: np.ndarray,
    reconstructions: np.ndarray,
    path: str | Path,
    title: str,
    *,
    write: WriteFile = write_atomic,
) -> None:
    """Originals on the top row, their reconstructions below, as a PNG at ``path`` (``write``
    writes it)."""
    pair = np.concatenate([_as_images(originals), _as_images(reconstructions)])
    _save(tile(pair, len(originals)), Path(path), title, write)


def _image_figure(
    canvas: np.ndarray,
    *,
    margins: tuple[float, float, float, float],
    min_width: float = 5.0,
) -> tuple[Figure, Any]:
    """A figure holding ``canvas`` undistorted, at a whole number of screen pixels per image
    pixel when it fits (else shrunk smoothly), with ``margins`` = (left, right, bottom, top) in
    inches around it for labels and the title."""
    from matplotlib.figure import Figure

    height, width = canvas.shape[:2]
    scale = MAX_IMAGE_PIXELS / max(height, width)
    if scale >= 1:
        scale = min(math.floor(scale), 4)
    left, right, bottom, top = margins
    image_w, image_h = width * scale / DPI, height * scale / DPI
    fig_w = max(left + image_w + right, min_width)
    fig_h = bottom + image_h + top
    left += (fig_w - (left + image_w + right)) / 2  # centre a narrow grid
    fig = Figure(figsize=(fig_w, fig_h), dpi=DPI)
    ax = fig.add_axes((left / fig_w, bottom / fig_h, image_w / fig_w, image_h / fig_h))
    interpolation = "nearest" if scale >= 1 else "antialiased"
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation=interpolation, aspect="equal")
    return fig, ax


def _tile_centres(count: int, size: int) -> np.ndarray:
    """Canvas coordinates of the centres of ``count`` tiles of ``size`` pixels laid by ``tile``."""
    return PAD + np.arange(count) * (size + PAD) + (size - 1) / 2


def plain(text: str) -> str:
    """``text`` as matplotlib draws it literally: a ``$`` would start math (class names are the
    user's words, "$5 items" included), so each is escaped."""
    return text.replace("$", r"\$")


def _title(fig: Figure, title: str, detail: str) -> str:
    """A bold title line and a smaller line saying exactly what is drawn; returns both as one
    line (for the file's Title field)."""
    fig.suptitle(f"{plain(title)}\n", y=0.995, va="top", fontsize=11, fontweight="bold")
    fig.text(0.5, 0.995, f"\n{plain(detail)}", ha="center", va="top", fontsize=9, linespacing=1.55)
    return f"{title}: {detail}"


def _check_drawable(engine: Engine) -> None:
    shape = tuple(engine.config.input_shape)
    if not can_draw(shape):
        raise DataError(
            f"this model's inputs have shape {shape}, which cannot be drawn as images "
            "(they must be (C, H, W) with C = 1 or 3, or flat with a square number of values)"
        )


def _number(value: float) -> str:
    """A tick label with two decimals, never "-0.00"."""
    return f"{round(float(value), 2) + 0.0:.2f}"


def _symmetric_ticks(n: int) -> np.ndarray:
    """About five tile indices of an n-tile axis, symmetric about its middle."""
    side = np.unique(np.round(np.array([0, (n - 1) / 4])).astype(int))
    middle = np.array([(n - 1) // 2] if n % 2 else [], dtype=int)
    return np.unique(np.concatenate([side, middle, n - 1 - side]))


def save_manifold(
    engine: Engine,
    path: str | Path,
    *,
    n: int = 20,
    dims: tuple[int, int] | None = None,
    latents: np.ndarray | None = None,
    title: str | None = None,
) -> None:
    """Draw the decoded latent manifold: an n×n grid of decoder means over a plane of latent space.

    Along each axis the coordinates are quantiles at p evenly spaced in (0.05, 0.95): of the
    prior's marginal of that coordinate (Φ⁻¹(p) for N(0, I)) along a latent axis, Φ⁻¹(p) along a
    principal one; the first coordinate grows left to right, the second bottom to top. The plane:

    - latent_dim == 2: z = (F₀⁻¹(p_i), F₁⁻¹(p_j)), F_k the prior's marginal CDF of z_k;
    - ``dims=(i, j)`` (0-based): those two dimensions vary, the others are at the prior's median
      (0 for N(0, I));
    - otherwise ``latents`` (posterior means, (N, K)): the plane through their mean spanned by
      their top two principal directions, each scaled by the standard deviation along it.

    Tick labels give the latent coordinate along each axis (for the principal plane: the distance
    from the mean of ``latents`` along that component); the title says which plane was used.
    Raises :class:`ConfigError` for latent_dim > 2 without ``dims`` or ``latents``.
    """
    _check_drawable(engine)
    if not isinstance(n, (int, np.integer)) or not 2 <= n <= 100:
        raise ConfigError(f"n (images per side of the manifold) must be 2..100; got {n!r}")
    n = int(n)
    k = engine.config.latent_dim
    if k < 2:
        raise ConfigError("a 2-D manifold needs a model with at least 2 latent dimensions")
    origin, axes, grid, names, detail = manifold_plane(k, dims, latents, engine.prior, n)
    grid_x, grid_y = grid[:, 0], grid[::-1, 1]  # the top row has the largest second coordinate
    z = origin + grid_x[None, :, None] * axes[0] + grid_y[:, None, None] * axes[1]
    images = _as_images(np.asarray(engine.decode(z.reshape(n * n, k).astype(np.float32))))
    h, w = images.shape[1:3]
    fig, ax = _image_figure(tile(images, n), margins=(0.75, 0.25, 0.65, 0.7))
    scale = np.linalg.norm(axes, axis=1)  # 1 for latent axes, the sd for principal ones
    ticks = _symmetric_ticks(n)
    ax.set_xticks(_tile_centres(n, w)[ticks], [_number(grid_x[t] * scale[0]) for t in ticks])
    ax.set_yticks(_tile_centres(n, h)[ticks], [_number(grid_y[t] * scale[1]) for t in ticks])
    ax.tick_params(labelsize=8, length=3)
    ax.set_xlabel(names[0], fontsize=9)
    ax.set_ylabel(names[1], fontsize=9)
    _write_image(fig, path, _title(fig, title or "Decoded latent manifold", detail))


def save_labelled_rows(
    images: np.ndarray,
    path: str | Path,
    row_labels: Sequence[str],
    title: str,
    detail: str,
    *,
    write: WriteFile = write_atomic,
) -> None:
    """Draw images (rows × columns, row-major) as a grid with a label left of each row (a
    traversal's latent dimension, a class), as a PNG at ``path`` (``write`` writes it)."""
    images = _as_images(images)
    rows = len(row_labels)
    steps = len(images) // rows
    h = images.shape[1]
    fig, ax = _image_figure(tile(images, steps), margins=(1.3, 0.25, 0.3, 0.7))
    ax.set_xticks([])
    ax.set_yticks(_tile_centres(rows, h), [plain(label) for label in row_labels])
    ax.tick_params(labelsize=8, length=0)
    _write_image(fig, path, _title(fig, title, detail), write)


def save_latent_scatter(
    latents: np.ndarray,
    labels: np.ndarray | None,
    path: str | Path,
    *,
    title: str | None = None,
    method: str = "auto",
    names: Sequence[str] | None = None,
) -> None:
    """Write :func:`latent_scatter` as a picture at ``path``."""
    fig, caption = latent_scatter(latents, labels, title=title, method=method, names=names)
    _write_image(fig, path, caption)


def latent_scatter(
    latents: np.ndarray,
    labels: np.ndarray | None,
    *,
    title: str | None = None,
    method: str = "auto",
    names: Sequence[str] | None = None,
) -> tuple[Figure, str]:
    """(the figure, its one-line title) scattering posterior means (N, K), one dot per
    example, coloured by its integer label.

    The plane: the latents themselves when K == 2 (``method="auto"``); otherwise (or with
    ``method="pca"``) their top two principal components (numpy SVD); ``method="tsne"`` uses
    scikit-learn's t-SNE (:class:`ConfigError` if scikit-learn is not installed). Colours come
    from tab10 (tab20 for up to 20 classes, a colorbar beyond) with a legend of the classes,
    each by its name in ``names`` (code c is ``names[c]``; None: by its number);
    ``labels=None`` draws every dot in one colour. Dots are drawn in a random order so no class
    hides another; size and transparency suit 10,000 points.
    """
    from matplotlib.figure import Figure

    check_projection(method)
    latents = check_latents(latents, "latents")
    n = len(latents)
    labels = None if labels is None else _class_numbers(labels, n)
    if labels is not None and names is not None and len(labels) and labels.max() >= len(names):
        raise DataError(f"label {int(labels.max())} has no name: {len(names)} names are given")
    xy, axis_names, projection = project(latents, method)

    size = float(np.clip(600 / math.sqrt(n), 2, 30))
    alpha = float(np.clip(40 / math.sqrt(n), 0.35, 0.9))
    order = np.random.default_rng(0).permutation(n)
    legend = labels is not None and len(np.unique(labels)) <= 20
    fig = Figure(figsize=(7.6 if legend else 6.6, 6.4), dpi=DPI)
    ax = fig.add_axes((0.1, 0.09, 0.68, 0.78) if legend else (0.12, 0.09, 0.8, 0.78))
    style = {"s": size, "alpha": alpha, "linewidths": 0}
    if labels is None:
        ax.scatter(xy[order, 0], xy[order, 1], color="tab:blue", **style)
    elif legend:
        _scatter_with_legend(ax, xy[order], labels[order], style, names)
    else:
        points = ax.scatter(xy[order, 0], xy[order, 1], c=labels[order], cmap="viridis", **style)
        fig.colorbar(points, ax=ax, label="label", fraction=0.05)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(axis_names[0], fontsize=9)
    ax.set_ylabel(axis_names[1], fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.25)
    return fig, _title(fig, title or "Posterior means", f"{n:,} points, {projection}")


def _class_numbers(labels: np.ndarray, n: int) -> np.ndarray:
    """``labels`` as int64 class numbers, one per latent, or DataError."""
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise DataError(f"labels must have shape ({n},), one per latent; got {labels.shape}")
    integral = labels.dtype.kind in "iu" or (
        labels.dtype.kind == "f" and bool(np.all(labels == np.round(labels)))
    )
    if not integral:
        raise DataError("labels must be integers (class numbers)")
    return labels.astype(np.int64)


def _scatter_with_legend(
    ax: Any, xy: np.ndarray, labels: np.ndarray, style: dict, names: Sequence[str] | None
) -> None:
    """Dots in one tab10 colour per class (tab20 beyond ten), with a legend of the classes by
    name (:func:`vaekit.data.classes.names_or_numbers`)."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    classes = np.unique(labels)
    shown = names_or_numbers(names, int(classes[-1]) + 1)
    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    colours = np.array([cmap(i) for i in range(len(classes))])
    ax.scatter(xy[:, 0], xy[:, 1], c=colours[np.searchsorted(classes, labels)], **style)
    handles = [
        Line2D([], [], ls="", marker="o", ms=7, color=colours[i], label=plain(shown[c]))
        for i, c in enumerate(classes)
    ]
    legend = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "frameon": False}
    ax.legend(handles=handles, title="class" if names else "label", fontsize=9, **legend)


def _with_gaps(canvas: np.ndarray, width: int, ncol: int) -> np.ndarray:
    """Insert GAP white columns after the first tile column and before the last."""
    first = PAD + width + PAD
    last = PAD + (ncol - 1) * (width + PAD)
    white = np.ones((canvas.shape[0], GAP, *canvas.shape[2:]))
    parts = [canvas[:, :first], white, canvas[:, first:last], white, canvas[:, last:]]
    return np.concatenate(parts, axis=1)


def save_interpolations(
    engine: Engine,
    x_pairs_a: np.ndarray,
    x_pairs_b: np.ndarray,
    path: str | Path,
    *,
    steps: int = 10,
    method: str = "linear",
    title: str | None = None,
) -> None:
    """Draw one row per pair of inputs: input A, the decoded path from A to B, input B.

    Both inputs are encoded to their posterior means; :func:`interpolate_latents` (``method``,
    ``steps`` points with both ends) joins them, and each point is decoded to the decoder mean.
    The strip's first and last images are thus the reconstructions of A and B. Pairs are stacked
    top to bottom; the title names the method.
    """
    a, b = np.asarray(x_pairs_a), np.asarray(x_pairs_b)
    if a.shape != b.shape or len(a) == 0:
        raise DataError(
            f"x_pairs_a and x_pairs_b must hold the same number (≥ 1) of inputs of one shape; "
            f"got {a.shape} and {b.shape}"
        )
    originals_a, originals_b = _as_images(a), _as_images(b)
    _check_drawable(engine)
    interpolate_latents(np.zeros(1), np.ones(1), steps, method)  # checks steps and method early
    mu_a, _ = engine.encode(a.astype(np.float32))
    mu_b, _ = engine.encode(b.astype(np.float32))
    z = np.concatenate(
        [interpolate_latents(za, zb, steps, method) for za, zb in zip(mu_a, mu_b, strict=True)]
    )
    strips = _as_images(np.asarray(engine.decode(z.astype(np.float32))))
    pairs, k = len(a), int(steps)
    if strips.shape[1:] != originals_a.shape[1:]:
        raise DataError(
            f"the inputs are images of shape {originals_a.shape[1:]}, the model decodes "
            f"{strips.shape[1:]}"
        )
    rows = strips.reshape(pairs, k, *strips.shape[1:])
    images = np.concatenate([originals_a[:, None], rows, originals_b[:, None]], axis=1)
    h, w = images.shape[2:4]
    ncol = k + 2
    canvas = _with_gaps(tile(images.reshape(pairs * ncol, *images.shape[2:]), ncol), w, ncol)
    fig, ax = _image_figure(canvas, margins=(0.55, 0.25, 0.45, 0.75))
    centres = _tile_centres(ncol, w) + GAP * (np.arange(ncol) > 0) + GAP * (np.arange(ncol) > k)
    ax.set_xticks(centres[[0, 1, k, k + 1]], ["A", "t = 0", "t = 1", "B"])
    ax.set_yticks(_tile_centres(pairs, h), [str(i + 1) for i in range(pairs)])
    ax.tick_params(labelsize=8, length=0)
    ax.set_ylabel("pair", fontsize=9)
    for side in ax.spines.values():
        side.set_visible(False)
    name = "spherical (slerp)" if method == "slerp" else "linear"
    detail = f"{name} interpolation of posterior means, {k} decoded steps between inputs A and B"
    _write_image(fig, path, _title(fig, title or f"Latent interpolation ({method})", detail))


def _series(records: Sequence[Mapping[str, Any]], key: str) -> np.ndarray | None:
    """The values of ``key`` per record (NaN where missing), or None if no record has it."""
    if not any(key in r for r in records):
        return None
    return np.array([float(r.get(key, math.nan)) for r in records])


#: The training curves' panels: (title, [(metric, label) for train, test, validation]).
CURVE_PANELS = [
    (
        "Loss",
        [
            ("loss", "train loss (recon + β·KL)"),
            ("test_loss", "test −ELBO (β = 1)"),
            ("val_loss", "validation −ELBO (β = 1)"),
        ],
    ),
    ("Reconstruction", [("recon", "train"), ("test_recon", "test"), ("val_recon", "validation")]),
    ("KL(q(z|x) ‖ p(z))", [("kl", "train"), ("test_kl", "test"), ("val_kl", "validation")]),
]


def _curves_detail(records: Sequence[Mapping[str, Any]]) -> str:
    """The curves' subtitle: epochs, and the last epoch's losses (nats per example)."""
    last = records[-1]
    detail = f"{plural(len(records), 'epoch')}, final train loss {float(last['loss']):.2f}"
    for key, name in (("val_loss", "validation"), ("test_loss", "test")):
        if key in last:
            detail += f", {name} −ELBO {float(last[key]):.2f}"
    if "val_loss" in last or "test_loss" in last:
        detail += " nats per example"
    return detail


def save_training_curves(
    records: Sequence[Mapping[str, Any]], path: str | Path, *, title: str | None = None
) -> None:
    """Draw training curves from metric records (the lines of ``metrics.jsonl``), vs epoch.

    Three panels, all in nats per example: the training loss (recon + β·KL, β of the warm-up
    schedule) with the held-out −ELBO (β = 1) when present; the reconstruction term; the KL term.
    Training values are solid lines, test values dashed, validation values dotted. Records need
    ``epoch``, ``loss``, ``recon`` and ``kl``; ``test_*`` and ``val_*`` are optional.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    records = list(records)
    if not records:
        raise DataError("there are no metric records to draw (has any epoch finished?)")
    for key in ("epoch", "loss", "recon", "kl"):
        if not all(key in r for r in records):
            raise DataError(f"every metric record needs {key!r}; some lack it")
    epochs = np.array([float(r["epoch"]) for r in records])
    line = {"marker": "o" if len(records) <= 40 else None, "ms": 3, "lw": 1.6}
    fig = Figure(figsize=(9.0, 3.6), dpi=DPI)
    for ax, (name, keys) in zip(fig.subplots(1, 3), CURVE_PANELS, strict=True):
        for (key, label), ls, colour in zip(
            keys, ("-", "--", ":"), ("tab:blue", "tab:orange", "tab:green"), strict=True
        ):
            values = _series(records, key)
            if values is not None:
                ax.plot(epochs, values, ls=ls, color=colour, label=label, **line)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch", fontsize=9)
        ax.set_ylabel("nats per example", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    heading = _title(fig, title or "Training curves", _curves_detail(records))
    fig.subplots_adjust(left=0.075, right=0.985, bottom=0.14, top=0.78, wspace=0.38)
    _write_image(fig, path, heading)
