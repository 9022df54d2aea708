"""``shapes``: dSprites-like binary sprites with known generative factors, drawn by vaekit.

Every image is 64×64 pixels, one channel, uint8 with values {0, 255} (background 0, sprite
255: 8-bit levels, so ``--scale auto`` maps them to {0, 1} for a Bernoulli likelihood). Five
factors, each an index into its list of values, vary over a full grid (dSprites' order, the last
varying fastest):

=============  =========================  ================================================
factor         size (full grid)           value of index i
=============  =========================  ================================================
shape          3                          square, ellipse, heart
scale          ``scales`` (6)             0.5 + 0.5·i/(scales − 1): 0.5, 0.6, …, 1.0
orientation    ``orientations`` (40)      2π·i/orientations radians, counter-clockwise
x              ``positions`` (32)         column of the centre, 16 + round(31·i/(p − 1)) px
y              ``positions`` (32)         row of the centre, 16 + round(31·i/(p − 1)) px
=============  =========================  ================================================

A centre c (x or y) lies on the pixel corner between columns (rows) c − 1 and c; rows count
downwards, so the sprite moves down as the y index grows.

The full grid is 3·6·40·32·32 = 737,280 images: 3.0 GB as uint8 pixels, 377 MB as packed bits
(512 bytes an image, :func:`numpy.packbits`), which is how they are generated, cached and held;
:class:`ShapesImages` unpacks only the rows asked for. Orientations span [0, 2π) without the
end point (dSprites repeats 0 as 2π); as in dSprites, orientations that a shape's symmetry
makes equal are kept (a square at i and i + orientations/4, an ellipse at i and
i + orientations/2 give the same image, exactly).

Rendering is an implicit-function rasteriser in plain NumPy: a pixel is on when its centre,
taken into the sprite's frame (translated to the centre, rotated by −θ, divided by
r = 12.8 px · scale), satisfies the shape's inequality:

- square: max(|u|, |v|) ≤ 0.7;
- ellipse: u² + (2v)² ≤ 1 (semi-axes 1 and ½ along the sprite's own axes);
- heart: (a² + b² − 1)³ − a²b³ ≤ 0 with a = 1.2u, b = 1.2v + 0.12 (the classic curve, centred).

v points up, so the heart's tip is at the bottom at θ = 0. A sprite never reaches beyond 15 px
of its centre, so it is rendered once per (shape, scale, orientation) in a 32×32 window and
copied to every position (positions are whole pixels, so this equals rendering in place).
Everything is deterministic: the seed only chooses a subset of the grid.
"""

from __future__ import annotations

import math
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaekit.data.sources import Examples, index_of
from vaekit.errors import ConfigError, DataError

IMAGE_SIZE = 64
FACTOR_NAMES = ("shape", "scale", "orientation", "x", "y")
SHAPE_NAMES = ("square", "ellipse", "heart")
#: The sprite's unit length at scale 1, pixels.
UNIT_PX = 12.8
#: Side of the window a sprite is rendered in, pixels; its centre is the window's centre.
WINDOW = 32
#: Bumped whenever rendering changes, so that older cache files are rebuilt.
RENDER_VERSION = 1
#: Rows re-rendered to check a cache file against the renderer.
CHECKED_ROWS = 8
_PACKED = IMAGE_SIZE * IMAGE_SIZE // 8


def _check_count(name: str, value: int, low: int, high: int | None) -> None:
    ok = isinstance(value, (int, np.integer)) and value >= low and (high is None or value <= high)
    if not ok:
        limit = f"{low} … {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"shapes {name} must be a whole number {limit}; got {value!r}")


@dataclass(frozen=True)
class ShapesGrid:
    """The factor grid: how many values scale, orientation and each position take (shape always
    has 3). ``ShapesGrid()`` is dSprites' full grid (737,280 images); :data:`SMALL` is a fast
    one for tests."""

    scales: int = 6
    orientations: int = 40
    positions: int = 32

    def __post_init__(self) -> None:
        for name, low, high in (("scales", 1, None), ("orientations", 1, None)):
            _check_count(name, getattr(self, name), low, high)
        _check_count("positions", self.positions, 2, WINDOW)

    @property
    def sizes(self) -> tuple[int, int, int, int, int]:
        """Number of values of each factor, in :data:`FACTOR_NAMES` order."""
        return (len(SHAPE_NAMES), self.scales, self.orientations, self.positions, self.positions)

    @property
    def n_images(self) -> int:
        return math.prod(self.sizes)

    def values(self) -> dict[str, np.ndarray]:
        """Each factor's values: shape names, scale (unitless), orientation (radians), x and y
        (the centre's column and row, pixels)."""
        centres = WINDOW // 2 + self.offsets()
        return {
            "shape": np.array(SHAPE_NAMES),
            "scale": self.scale_values(),
            "orientation": 2 * np.pi * np.arange(self.orientations) / self.orientations,
            "x": centres,
            "y": centres.copy(),
        }

    def scale_values(self) -> np.ndarray:
        """0.5 … 1.0 evenly (0.5 alone for one scale)."""
        return np.linspace(0.5, 1.0, self.scales)

    def offsets(self) -> np.ndarray:
        """Top-left corner of the sprite's window for each position index, pixels (0 … 31)."""
        return np.round(np.linspace(0, IMAGE_SIZE - WINDOW - 1, self.positions)).astype(np.int64)


#: dSprites' grid: 3 × 6 × 40 × 32 × 32 = 737,280 images.
FULL = ShapesGrid()
#: A fast grid for tests and CI: 3 × 3 × 8 × 8 × 8 = 4,608 images (2.4 MB packed).
SMALL = ShapesGrid(scales=3, orientations=8, positions=8)
#: The named data sets (``--data shapes``) and their grids.
DATASETS = {"shapes": FULL, "shapes-small": SMALL}


def factor_table(grid: ShapesGrid, index: np.ndarray | None = None) -> np.ndarray:
    """The factors (N, 5) int64 of grid images ``index`` (flat grid numbers, default all):
    row i of the full table is ``np.unravel_index(i, grid.sizes)``."""
    flat = np.arange(grid.n_images) if index is None else np.asarray(index, dtype=np.int64)
    return np.stack(np.unravel_index(flat, grid.sizes), axis=1).astype(np.int64)


def _rotation(k: int, n: int) -> tuple[float, float]:
    """(cos θ, sin θ) for θ = 2πk/n, with quarter (n divisible by 4) or half (n even) turns
    applied exactly as (c, s) → (−s, c), so that symmetric orientations render identically."""
    turns = 4 if n % 4 == 0 else 2 if n % 2 == 0 else 1
    quarters, rest = divmod(k, n // turns)
    c, s = math.cos(2 * math.pi * rest / n), math.sin(2 * math.pi * rest / n)
    for _ in range(quarters * (4 // turns)):
        c, s = -s, c
    return c, s


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether the points (u, v) of the sprite's frame (unit length r) are in the shape."""
    if shape == 0:
        return np.maximum(np.abs(u), np.abs(v)) <= 0.7
    if shape == 1:
        return u * u + 4 * v * v <= 1
    a, b = 1.2 * u, 1.2 * v + 0.12
    return (a * a + b * b - 1) ** 3 - a * a * b**3 <= 0


def render_sprite(grid: ShapesGrid, shape: int, scale: int, orientation: int) -> np.ndarray:
    """The sprite of factor indices (shape, scale, orientation) in its 32×32 window, bool: pixel
    (row, col) has its centre at (col + ½ − 16, 16 − row − ½) px from the sprite's centre."""
    c, s = _rotation(orientation, grid.orientations)
    r = UNIT_PX * grid.scale_values()[scale]
    px = np.arange(WINDOW) + 0.5 - WINDOW / 2
    x, y = px[None, :], -px[:, None]
    return _inside(shape, (c * x + s * y) / r, (c * y - s * x) / r)


def _checked_factors(grid: ShapesGrid, factors) -> np.ndarray:
    """``factors`` as int64 (N, 5) indices within ``grid.sizes``, or ConfigError."""
    factors = np.asarray(factors)
    valid = factors.ndim == 2 and factors.shape[1] == len(FACTOR_NAMES)
    valid = valid and factors.dtype.kind in "iu" and bool(np.all(factors >= 0))
    if not (valid and np.all(factors < np.array(grid.sizes))):
        raise ConfigError(f"shapes factors must be (N, 5) whole indices below {grid.sizes}")
    return factors.astype(np.int64)


def render_packed(grid: ShapesGrid, factors: np.ndarray) -> np.ndarray:
    """The images of ``factors`` (N, 5) as packed bits (N, 512) uint8: row-major 64×64 pixels,
    1 = sprite, :func:`numpy.packbits` order. Each sprite is rendered once, then copied to every
    position asked for through a sliding window over a padded canvas (no Python loop over
    images): image (oy, ox) is the canvas' 64×64 window starting at (31 − oy, 31 − ox)."""
    factors = _checked_factors(grid, factors)
    out = np.empty((len(factors), _PACKED), np.uint8)
    if not len(factors):
        return out
    sprite_id = np.ravel_multi_index(factors[:, :3].T, grid.sizes[:3])
    order = np.argsort(sprite_id, kind="stable")
    starts = np.flatnonzero(np.diff(sprite_id[order], prepend=-1))
    offsets = grid.offsets()
    last = IMAGE_SIZE - WINDOW - 1
    canvas = np.zeros((IMAGE_SIZE + last,) * 2, np.uint8)
    views = np.lib.stride_tricks.sliding_window_view(canvas, (IMAGE_SIZE, IMAGE_SIZE))
    for rows in np.split(order, starts[1:]):
        canvas[last : last + WINDOW, last : last + WINDOW] = render_sprite(
            grid, *factors[rows[0], :3]
        )
        images = views[last - offsets[factors[rows, 4]], last - offsets[factors[rows, 3]]]
        out[rows] = np.packbits(images.reshape(len(rows), -1), axis=1)
    return out


def unpack(packed: np.ndarray) -> np.ndarray:
    """Packed rows (N, 512) as images (N, 1, 64, 64) uint8 with values {0, 255}."""
    bits = np.unpackbits(np.asarray(packed, np.uint8), axis=1)
    return (bits * np.uint8(255)).reshape(len(bits), 1, IMAGE_SIZE, IMAGE_SIZE)


def render(grid: ShapesGrid, factors: np.ndarray) -> np.ndarray:
    """The images of ``factors`` (N, 5): (N, 1, 64, 64) uint8 {0, 255} (4,096 bytes each)."""
    return unpack(render_packed(grid, factors))


class ShapesImages(Examples):
    """The images as an array-like of examples (see :mod:`vaekit.data.sources`): held packed,
    ``x[key]`` unpacks the rows asked for to (n, 1, 64, 64) uint8 {0, 255}."""

    def __init__(self, packed: np.ndarray) -> None:
        self.packed = packed
        self.shape = (len(packed), 1, IMAGE_SIZE, IMAGE_SIZE)
        self.dtype = np.dtype(np.uint8)

    def __getitem__(self, key: int | slice | np.ndarray) -> np.ndarray:
        images = unpack(self.packed[index_of(key, len(self))])
        return images[0] if isinstance(key, (int, np.integer)) else images


@dataclass(frozen=True)
class Shapes:
    """A generated set: ``x`` the images (array-like (N, 1, 64, 64) uint8 {0, 255}),
    ``factors`` (N, 5) int64 indices into ``grid.values()``, and ``index`` the flat grid
    numbers of the rows (sorted)."""

    x: ShapesImages
    factors: np.ndarray
    index: np.ndarray
    grid: ShapesGrid

    factor_names = FACTOR_NAMES

    @property
    def factor_sizes(self) -> tuple[int, int, int, int, int]:
        return self.grid.sizes

    def __len__(self) -> int:
        return len(self.factors)


def grid_index(grid: ShapesGrid, n: int | None = None, seed: int = 0) -> np.ndarray:
    """Flat grid numbers: all of them, or ``n`` drawn without replacement by
    ``numpy.random.default_rng(seed)``, sorted."""
    if n is None:
        return np.arange(grid.n_images, dtype=np.int64)
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= grid.n_images:
        raise ConfigError(f"shapes n must be a whole number 1 … {grid.n_images}; got {n!r}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(grid.n_images, size=int(n), replace=False)).astype(np.int64)


def generate(grid: ShapesGrid = FULL, n: int | None = None, seed: int = 0) -> Shapes:
    """Render the grid (or ``n`` seeded images of it) in memory, writing nothing."""
    index = grid_index(grid, n, seed)
    factors = factor_table(grid, index)
    return Shapes(ShapesImages(render_packed(grid, factors)), factors, index, grid)


def shapes_dataset(
    grid: ShapesGrid = FULL,
    n: int | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> Shapes:
    """The set, read from its cache file when that is present and valid, else generated and
    cached. ``cache_dir`` is used as given (created if missing); by default the user cache
    (``pooch.os_cache("vaekit") / "shapes"``). A cache file that cannot be read or does not
    match (its zip checksums, its shapes, its factor table, or :data:`CHECKED_ROWS` rows
    re-rendered now) is rebuilt. The full grid's file is 377 MB (packed bits, uncompressed)."""
    found = cached(grid, n, seed, cache_dir)
    if found is not None:
        return found
    index = grid_index(grid, n, seed)
    factors = factor_table(grid, index)
    packed = render_packed(grid, factors)
    _write_cache(cache_path(grid, n, seed, cache_dir), packed, factors)
    return Shapes(ShapesImages(packed), factors, index, grid)


def cached(
    grid: ShapesGrid = FULL,
    n: int | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> Shapes | None:
    """The set from its cache file in ``cache_dir`` (default as :func:`shapes_dataset`), or None
    when the file is missing or does not match; writes nothing."""
    index = grid_index(grid, n, seed)
    factors = factor_table(grid, index)
    packed = _read_cache(cache_path(grid, n, seed, cache_dir), grid, factors)
    return None if packed is None else Shapes(ShapesImages(packed), factors, index, grid)


def cache_path(
    grid: ShapesGrid, n: int | None, seed: int, cache_dir: str | Path | None = None
) -> Path:
    """Where :func:`shapes_dataset` keeps this set: ``shapes-<scales>x<orientations>x
    <positions>-all.npz`` (or ``-n<n>-seed<seed>.npz``) in ``cache_dir``."""
    if cache_dir is None:
        import pooch  # imported when first needed: it costs start-up time

        cache_dir = Path(pooch.os_cache("vaekit")) / "shapes"
    part = "all" if n is None else f"n{n}-seed{seed}"
    name = f"shapes-{grid.scales}x{grid.orientations}x{grid.positions}-{part}.npz"
    return Path(cache_dir) / name


def _read_cache(path: Path, grid: ShapesGrid, factors: np.ndarray) -> np.ndarray | None:
    """The packed images of a valid cache file, or None when it is missing or does not match."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            version, packed = int(stored["version"]), stored["packed"]
            stored_factors = stored["factors"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    valid = (
        version == RENDER_VERSION
        and packed.shape == (len(factors), _PACKED)
        and np.array_equal(stored_factors, factors)
    )
    if not valid:
        return None
    check = np.linspace(0, len(factors) - 1, CHECKED_ROWS).astype(np.int64)
    return packed if np.array_equal(packed[check], render_packed(grid, factors[check])) else None


def _write_cache(path: Path, packed: np.ndarray, factors: np.ndarray) -> None:
    """Write the cache file atomically (a temporary file, then a rename), or raise DataError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                np.savez(
                    file, version=RENDER_VERSION, packed=packed, factors=factors.astype(np.uint8)
                )
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise DataError(
            f"cannot write the shapes cache {path} ({exc.strerror or exc}); make it writable, "
            "or read the set from a directory named by --data-dir (drawn in memory when absent)"
        ) from None
