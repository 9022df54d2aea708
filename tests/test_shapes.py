"""The shapes data set: a deterministic factor grid, geometry that follows the factors, a cache."""

from __future__ import annotations

import numpy as np
import pytest

from vaekit.data import shapes
from vaekit.data.shapes import (
    FULL,
    SMALL,
    ShapesGrid,
    factor_table,
    generate,
    render,
    shapes_dataset,
)
from vaekit.errors import ConfigError, DataError

SQUARE, ELLIPSE, HEART = range(3)


def image(grid: ShapesGrid, *factors: int) -> np.ndarray:
    """One image (64, 64) of {0, 1} for the factor indices (shape, scale, orientation, x, y)."""
    return render(grid, np.array([factors]))[0, 0] // 255


def centre_of_mass(picture: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(picture)
    return rows.mean(), cols.mean()


def test_images_and_factors_contract():
    data = generate(SMALL, n=50, seed=0)
    x = data.x[:]
    assert x.shape == (50, 1, 64, 64) and x.dtype == np.uint8
    assert set(np.unique(x)) == {0, 255}
    assert data.x.shape == x.shape and len(data) == 50 and data.x.ndim == 4
    np.testing.assert_array_equal(data.x[np.array([3, 1])], x[[3, 1]])
    np.testing.assert_array_equal(data.x[7], x[7])
    np.testing.assert_array_equal(data.factors, factor_table(SMALL, data.index))
    assert data.factor_names == ("shape", "scale", "orientation", "x", "y")
    assert data.factor_sizes == (3, 3, 8, 8, 8)


def test_same_seed_same_bytes():
    first, second = generate(SMALL, n=300, seed=4), generate(SMALL, n=300, seed=4)
    assert first.x.packed.tobytes() == second.x.packed.tobytes()
    np.testing.assert_array_equal(first.factors, second.factors)
    assert not np.array_equal(first.index, generate(SMALL, n=300, seed=5).index)


def test_subset_is_the_grid_rows():
    whole, part = generate(SMALL), generate(SMALL, n=100, seed=2)
    assert np.all(np.diff(part.index) > 0)
    np.testing.assert_array_equal(part.x.packed, whole.x.packed[part.index])


@pytest.mark.parametrize("grid", [SMALL, FULL], ids=["small", "full"])
def test_factor_table_covers_grid_once(grid):
    table = factor_table(grid)
    assert table.shape == (grid.n_images, 5)
    assert FULL.n_images == 737_280
    np.testing.assert_array_equal(table.max(axis=0) + 1, grid.sizes)
    flat = np.ravel_multi_index(table.T, grid.sizes)
    np.testing.assert_array_equal(np.sort(flat), np.arange(grid.n_images))


def test_factor_values():
    values = FULL.values()
    np.testing.assert_allclose(values["scale"], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    np.testing.assert_allclose(values["orientation"][[0, 20]], [0, np.pi])
    np.testing.assert_array_equal(values["x"], np.arange(16, 48))
    assert list(values["shape"]) == ["square", "ellipse", "heart"]


@pytest.mark.parametrize("shape", [SQUARE, ELLIPSE, HEART])
def test_area_grows_with_scale(shape):
    for k in (0, 3):
        areas = [image(FULL, shape, s, k, 10, 10).sum() for s in range(FULL.scales)]
        assert np.all(np.diff(areas) > 0)


def test_positions_move_the_centre_of_mass():
    base = image(SMALL, HEART, 1, 2, 0, 0)
    rows, cols = [], []
    for i in range(SMALL.positions):
        moved_x, moved_y = image(SMALL, HEART, 1, 2, i, 0), image(SMALL, HEART, 1, 2, 0, i)
        shift = SMALL.offsets()[i]
        np.testing.assert_array_equal(moved_x, np.roll(base, shift, axis=1))  # whole pixels
        cols.append(centre_of_mass(moved_x)[1])
        rows.append(centre_of_mass(moved_y)[0])
        assert centre_of_mass(moved_x)[0] == pytest.approx(centre_of_mass(base)[0])
    assert np.all(np.diff(cols) > 0) and np.all(np.diff(rows) > 0)


def test_rotation_and_symmetry():
    n = FULL.orientations
    for k in range(n):
        square = image(FULL, SQUARE, 5, k, 5, 5)
        ellipse = image(FULL, ELLIPSE, 5, k, 5, 5)
        np.testing.assert_array_equal(image(FULL, SQUARE, 5, (k + n // 4) % n, 5, 5), square)
        np.testing.assert_array_equal(image(FULL, ELLIPSE, 5, (k + n // 2) % n, 5, 5), ellipse)
        assert not np.array_equal(image(FULL, ELLIPSE, 5, (k + n // 4) % n, 5, 5), ellipse)
    assert not np.array_equal(image(FULL, SQUARE, 5, 0, 5, 5), image(FULL, SQUARE, 5, 5, 5, 5))
    heart = image(FULL, HEART, 5, 0, 5, 5)
    assert not np.array_equal(image(FULL, HEART, 5, n // 2, 5, 5), heart)


def test_three_shapes_differ():
    pictures = [image(FULL, shape, 5, 0, 16, 16) for shape in (SQUARE, ELLIPSE, HEART)]
    for a in range(3):
        for b in range(a + 1, 3):
            assert np.sum(pictures[a] != pictures[b]) > 20


def test_sprites_fit_their_window():
    """At the largest scale, no sprite reaches its window's border: nothing is ever clipped."""
    for shape in (SQUARE, ELLIPSE, HEART):
        for k in range(FULL.orientations):
            window = shapes.render_sprite(FULL, shape, FULL.scales - 1, k)
            border = np.concatenate([window[0], window[-1], window[:, 0], window[:, -1]])
            assert window.any() and not border.any()


def test_cache_round_trip(tmp_path):
    data = shapes_dataset(SMALL, n=200, seed=1, cache_dir=tmp_path)
    path = shapes.cache_path(SMALL, 200, 1, tmp_path)
    assert path.is_file() and list(tmp_path.iterdir()) == [path]
    inode = path.stat().st_ino
    again = shapes_dataset(SMALL, n=200, seed=1, cache_dir=tmp_path)
    assert path.stat().st_ino == inode  # read, not written again
    np.testing.assert_array_equal(again.x.packed, data.x.packed)
    np.testing.assert_array_equal(again.x.packed, generate(SMALL, n=200, seed=1).x.packed)
    np.testing.assert_array_equal(again.factors, data.factors)


@pytest.mark.parametrize("damage", ["truncate", "flip", "other grid", "garbage"])
def test_damaged_cache_is_rebuilt(tmp_path, damage):
    path = shapes.cache_path(SMALL, 200, 1, tmp_path)
    expected = shapes_dataset(SMALL, n=200, seed=1, cache_dir=tmp_path).x.packed
    content = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(content[: len(content) // 2])
    elif damage == "flip":
        middle = len(content) // 2
        path.write_bytes(content[:middle] + bytes([content[middle] ^ 1]) + content[middle + 1 :])
    elif damage == "other grid":
        other = generate(SMALL, n=200, seed=2)
        np.savez(path, version=shapes.RENDER_VERSION, packed=other.x.packed, factors=other.factors)
    else:
        path.write_bytes(b"not a zip file")
    rebuilt = shapes_dataset(SMALL, n=200, seed=1, cache_dir=tmp_path)
    np.testing.assert_array_equal(rebuilt.x.packed, expected)
    inode = path.stat().st_ino
    shapes_dataset(SMALL, n=200, seed=1, cache_dir=tmp_path)
    assert path.stat().st_ino == inode  # the rebuilt file is valid: read, not written again


def test_unwritable_cache_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DataError, match="cannot write the shapes cache") as error:
        shapes_dataset(SMALL, n=10, cache_dir=blocker / "cache")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ShapesGrid(positions=1), "positions"),
        (lambda: ShapesGrid(positions=33), "positions"),
        (lambda: ShapesGrid(scales=0), "scales"),
        (lambda: ShapesGrid(orientations=2.5), "orientations"),
        (lambda: generate(SMALL, n=SMALL.n_images + 1), "n must be"),
        (lambda: generate(SMALL, n=0), "n must be"),
    ],
)
def test_bad_settings_raise_config_error(make, match):
    with pytest.raises(ConfigError, match=match) as error:
        make()
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "factors", [[[3, 0, 0, 0, 0]], [[0, 0, 0, 0, 8]], [[0, 0, 0, 0, -1]], [[0.0] * 5], [0] * 5]
)
def test_bad_factors_raise_config_error(factors):
    with pytest.raises(ConfigError, match="shapes factors"):
        render(SMALL, np.array(factors))


def test_no_factors_no_images():
    assert render(SMALL, np.zeros((0, 5), np.int64)).shape == (0, 1, 64, 64)
