"""Pictures of a VAE as PNG files: sample grids and reconstructions.

Images are arrays (N, C, H, W) with C = 1 (grey) or 3 (RGB), or flat (N, D) with D a square
number (shown as a grey square); values are clipped to [0, 1] for display. Files are written
atomically (temporary name, then rename).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from vaekit.checkpoint import write_atomic
from vaekit.errors import DataError

PAD = 2  # pixels between tiles


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


def _save(canvas: np.ndarray, path: Path, title: str) -> None:
    height, width = canvas.shape[:2]
    scale = 3 / 100  # 3 screen pixels per image pixel at 100 dpi
    fig = Figure(figsize=(max(width * scale, 3.0), height * scale + 0.5), dpi=100)
    ax = fig.add_axes((0, 0, 1, height * scale / (height * scale + 0.5)))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    fig.suptitle(title, y=0.99, va="top", fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_atomic(Path(path), buffer.getvalue())


def save_sample_grid(x: np.ndarray, path: str | Path, title: str, ncol: int | None = None) -> None:
    """Draw images ``x`` in a grid (square by default) with a title, as a PNG at ``path``."""
    images = _as_images(x)
    ncol = ncol or math.ceil(math.sqrt(len(images)))
    _save(tile(images, ncol), Path(path), title)


def save_reconstructions(
    originals: np.ndarray, reconstructions: np.ndarray, path: str | Path, title: str
) -> None:
    """Originals on the top row, their reconstructions below, as a PNG at ``path``."""
    pair = np.concatenate([_as_images(originals), _as_images(reconstructions)])
    _save(tile(pair, len(originals)), Path(path), title)
