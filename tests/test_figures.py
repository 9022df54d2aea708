"""Tests of vaekit.draw.figures: every picture is a readable PNG of a sensible size, inputs are
checked before anything is written, and the interpolation paths have the right ends and norms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from vaekit.config.settings import ModelConfig
from vaekit.draw import figures, geometry
from vaekit.engines import build_engine
from vaekit.errors import ConfigError, DataError
from vaekit.model.priors import StandardNormal
from vaekit.text import plural

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(path) -> tuple[int, int]:
    """(width, height) of a PNG that both the signature check and Pillow accept."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        return image.size


def assert_report_size(path, min_width=450, max_width=950) -> None:
    """5–9 inches wide at 100 dpi (with some slack), and not absurdly tall."""
    width, height = read_png(path)
    assert min_width <= width <= max_width
    assert 200 <= height <= 1000


@pytest.fixture(scope="module")
def engine2():
    return build_engine(ModelConfig(hidden=(32,), latent_dim=2), seed=0)


@pytest.fixture(scope="module")
def engine5():
    return build_engine(ModelConfig(hidden=(32,), latent_dim=5), seed=0)


@pytest.fixture
def images(mnist_small) -> np.ndarray:
    return mnist_small[1].x[:12]


# --- manifold ------------------------------------------------------------------------------------


def test_manifold_quantiles_are_gaussian_quantiles_of_5_to_95_percent():
    q = geometry.manifold_quantiles(5, StandardNormal(2))[:, 0]
    assert q[0] == pytest.approx(-1.6448536, abs=1e-6)
    assert q[-1] == pytest.approx(1.6448536, abs=1e-6)
    assert q[2] == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.diff(q) > 0)


def test_manifold_for_two_latents(engine2, tmp_path):
    path = tmp_path / "manifold.png"
    figures.save_manifold(engine2, path, n=10, title="Manifold")
    assert_report_size(path)


def test_manifold_decodes_the_quantile_grid(tmp_path):
    class Recorder:
        config = ModelConfig(hidden=(8,), latent_dim=2)
        prior = StandardNormal(2)

        def decode(self, z):
            self.z = z
            return np.zeros((len(z), 1, 28, 28), dtype=np.float32)

    engine = Recorder()
    figures.save_manifold(engine, tmp_path / "m.png", n=4)
    q = geometry.manifold_quantiles(4, StandardNormal(2))[:, 0]
    grid = engine.z.reshape(4, 4, 2)
    np.testing.assert_allclose(grid[0, :, 0], q, rtol=1e-6)  # first coordinate along a row
    np.testing.assert_allclose(grid[:, 0, 1], q[::-1], rtol=1e-6)  # second grows upwards


def test_manifold_with_dims_and_with_latents(engine5, images, tmp_path):
    figures.save_manifold(engine5, tmp_path / "dims.png", n=6, dims=(1, 3))
    assert_report_size(tmp_path / "dims.png")
    mu, _ = engine5.encode(images)
    figures.save_manifold(engine5, tmp_path / "pca.png", n=6, latents=mu)
    assert_report_size(tmp_path / "pca.png")


def test_manifold_needs_a_plane_for_more_than_two_latents(engine5, tmp_path):
    path = tmp_path / "m.png"
    with pytest.raises(ConfigError, match="dims"):
        figures.save_manifold(engine5, path)
    with pytest.raises(ConfigError):
        figures.save_manifold(engine5, path, dims=(2, 2))
    with pytest.raises(ConfigError):
        figures.save_manifold(engine5, path, dims=(0, 5))
    with pytest.raises(DataError):
        figures.save_manifold(engine5, path, latents=np.zeros((10, 3)))
    with pytest.raises(ConfigError):
        figures.save_manifold(engine5, path, dims=(0, 1), n=1)
    assert not path.exists()


def test_manifold_of_rgb_and_flat_models(tmp_path):
    rgb = build_engine(ModelConfig(input_shape=(3, 8, 8), hidden=(16,), latent_dim=2))
    figures.save_manifold(rgb, tmp_path / "rgb.png", n=5)
    read_png(tmp_path / "rgb.png")
    flat = build_engine(ModelConfig(input_shape=(64,), hidden=(16,), latent_dim=2))
    figures.save_manifold(flat, tmp_path / "flat.png", n=5)
    read_png(tmp_path / "flat.png")


def test_non_square_flat_inputs_are_refused(images, tmp_path):
    flat = np.random.default_rng(0).random((4, 10)).astype(np.float32)
    with pytest.raises(DataError, match="cannot be drawn"):
        figures.save_sample_grid(flat, tmp_path / "s.png", "title")
    with pytest.raises(DataError):
        figures.save_reconstructions(flat, flat, tmp_path / "r.png", "title")
    engine = build_engine(ModelConfig(input_shape=(10,), hidden=(8,), latent_dim=2))
    with pytest.raises(DataError, match="cannot be drawn"):
        figures.save_manifold(engine, tmp_path / "m.png")
    with pytest.raises(DataError):
        figures.save_interpolations(engine, flat[:2], flat[2:], tmp_path / "i.png")
    assert not list(tmp_path.iterdir())


# --- latent scatter ------------------------------------------------------------------------------


def test_scatter_of_two_dimensional_latents(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "scatter.png"
    figures.save_latent_scatter(rng.standard_normal((500, 2)), rng.integers(0, 10, 500), path)
    assert_report_size(path)


def test_scatter_pca_of_ten_thousand_points_and_without_labels(tmp_path):
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((10_000, 8))
    figures.save_latent_scatter(latents, rng.integers(0, 10, 10_000), tmp_path / "pca.png")
    assert_report_size(tmp_path / "pca.png")
    figures.save_latent_scatter(latents[:100], None, tmp_path / "plain.png", method="pca")
    assert_report_size(tmp_path / "plain.png")
    figures.save_latent_scatter(latents[:300], rng.integers(0, 40, 300), tmp_path / "many.png")
    assert_report_size(tmp_path / "many.png")


def test_scatter_checks_its_inputs(tmp_path):
    latents = np.zeros((5, 3))
    with pytest.raises(DataError):
        figures.save_latent_scatter(latents, np.zeros(4, dtype=int), tmp_path / "s.png")
    with pytest.raises(DataError):
        figures.save_latent_scatter(np.zeros(5), None, tmp_path / "s.png")
    with pytest.raises(ConfigError):
        figures.save_latent_scatter(latents, None, tmp_path / "s.png", method="umap")
    with pytest.raises(DataError, match="integers"):
        figures.save_latent_scatter(latents, np.array(list("abcde")), tmp_path / "s.png")
    assert not list(tmp_path.iterdir())


def test_tsne_without_scikit_learn_says_how_to_install_it(tmp_path, without_sklearn):
    with pytest.raises(ConfigError, match="pip install scikit-learn"):
        figures.save_latent_scatter(np.zeros((20, 4)), None, tmp_path / "t.png", method="tsne")
    assert not (tmp_path / "t.png").exists()


# --- interpolation -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_includes_both_ends_exactly(method):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(6), rng.standard_normal(6)
    path = geometry.interpolate_latents(a, b, 7, method)
    assert path.shape == (7, 6)
    assert np.array_equal(path[0], a)
    assert np.array_equal(path[-1], b)


def test_linear_interpolation_is_evenly_spaced():
    path = geometry.interpolate_latents(np.zeros(2), np.array([2.0, 4.0]), 3)
    np.testing.assert_allclose(path, [[0, 0], [1, 2], [2, 4]])


def test_slerp_keeps_unit_vectors_on_the_sphere():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(5), rng.standard_normal(5)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    path = geometry.interpolate_latents(a, b, 11, "slerp")
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 1.0, atol=1e-12)
    linear = geometry.interpolate_latents(a, b, 11, "linear")
    assert np.linalg.norm(linear[5]) < 1.0 - 1e-3  # the chord dips inside the sphere
    # equal angles between consecutive points
    cosines = np.sum(path[1:] * path[:-1], axis=1)
    np.testing.assert_allclose(cosines, cosines[0], atol=1e-12)


def test_slerp_of_parallel_vectors_falls_back_to_linear():
    a = np.array([1.0, 2.0, 3.0])
    for b in (2 * a, a * (1 + 1e-14), np.zeros(3)):
        np.testing.assert_allclose(
            geometry.interpolate_latents(a, b, 5, "slerp"),
            geometry.interpolate_latents(a, b, 5, "linear"),
        )
        assert np.all(np.isfinite(geometry.interpolate_latents(a, b, 5, "slerp")))


def test_interpolation_checks_its_arguments():
    with pytest.raises(ConfigError):
        geometry.interpolate_latents(np.zeros(2), np.ones(2), 1)
    with pytest.raises(ConfigError):
        geometry.interpolate_latents(np.zeros(2), np.ones(2), 4, "cubic")
    with pytest.raises(DataError):
        geometry.interpolate_latents(np.zeros(2), np.ones(3), 4)


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_save_interpolations(engine5, images, method, tmp_path):
    path = tmp_path / f"{method}.png"
    figures.save_interpolations(engine5, images[:4], images[4:8], path, steps=6, method=method)
    assert_report_size(path)


def test_save_interpolations_checks_pairs(engine2, images, tmp_path):
    with pytest.raises(DataError):
        figures.save_interpolations(engine2, images[:3], images[:2], tmp_path / "i.png")
    with pytest.raises(ConfigError):
        figures.save_interpolations(engine2, images[:2], images[2:4], tmp_path / "i.png", steps=1)
    assert not (tmp_path / "i.png").exists()


# --- training curves -----------------------------------------------------------------------------


def records(epochs: int, test: bool) -> list[dict]:
    out = []
    for epoch in range(1, epochs + 1):
        record = {"epoch": epoch, "step": 10 * epoch, "loss": 200 / epoch, "recon": 180 / epoch}
        record.update(kl=20 - epoch, beta=min(1.0, epoch / 3), seconds=1.0)
        if test:
            record.update(test_loss=210 / epoch, test_recon=190 / epoch, test_kl=20.0)
        out.append(record)
    return out


@pytest.mark.parametrize(("epochs", "test"), [(5, True), (1, False), (60, True)])
def test_training_curves(epochs, test, tmp_path):
    path = tmp_path / "curves.png"
    figures.save_training_curves(records(epochs, test), path, title="Run")
    assert_report_size(path, min_width=800)


def test_training_curves_need_records(tmp_path):
    with pytest.raises(DataError):
        figures.save_training_curves([], tmp_path / "c.png")
    with pytest.raises(DataError, match="recon"):
        figures.save_training_curves([{"epoch": 1, "loss": 1.0, "kl": 1.0}], tmp_path / "c.png")
    assert not list(tmp_path.iterdir())


# --- the existing figures ------------------------------------------------------------------------


def test_sample_grid_and_reconstructions_still_work(images, tmp_path):
    figures.save_sample_grid(images[:9], tmp_path / "grid.png", "Samples")
    width, height = read_png(tmp_path / "grid.png")
    side = 3 * (28 + figures.PAD) + figures.PAD
    assert (width, height) == (max(3 * side, 300), 3 * side + 50)
    figures.save_reconstructions(images[:4], images[4:8], tmp_path / "rec.png", "Pairs")
    read_png(tmp_path / "rec.png")
    flat = images[:4].reshape(4, -1)
    figures.save_sample_grid(flat, tmp_path / "flat.png", "Flat", ncol=2)
    read_png(tmp_path / "flat.png")
    rgb = np.random.default_rng(0).random((4, 3, 8, 8))
    figures.save_sample_grid(rgb, tmp_path / "rgb.png", "RGB")
    read_png(tmp_path / "rgb.png")


def test_tile_lays_out_rows():
    canvas = figures.tile(np.zeros((5, 4, 4)), 3)
    assert canvas.shape == (2 * 6 + 2, 3 * 6 + 2)
    assert canvas[2:6, 2:6].max() == 0 and canvas[0].min() == 1
    assert math.isclose(canvas[8:12, 14:18].mean(), 1.0)  # the sixth slot is empty


# --- formats and titles --------------------------------------------------------------------------


def test_the_suffix_names_the_format(images, tmp_path):
    figures.save_sample_grid(images[:4], tmp_path / "a.jpg", "Samples")
    figures.save_sample_grid(images[:4], tmp_path / "b.JPEG", "Samples")
    for name in ("a.jpg", "b.JPEG"):
        assert (tmp_path / name).read_bytes()[:3] == b"\xff\xd8\xff"
        with Image.open(tmp_path / name) as image:
            assert image.format == "JPEG"
    with pytest.raises(ConfigError, match=r"\.png, \.jpg or \.jpeg"):
        figures.save_training_curves(records(2, True), tmp_path / "c.svg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "b.JPEG"]


def test_a_png_carries_its_title(images, engine5, tmp_path):
    figures.save_sample_grid(images[:4], tmp_path / "grid.png", "4 samples at epoch 3")
    figures.save_training_curves(records(1, False), tmp_path / "curves.png")
    figures.save_manifold(engine5, tmp_path / "m.png", n=4, dims=(0, 1))
    with Image.open(tmp_path / "grid.png") as image:
        assert image.info["Title"] == "4 samples at epoch 3"
    with Image.open(tmp_path / "curves.png") as image:
        assert image.info["Title"].startswith("Training curves: 1 epoch, final train loss")
    with Image.open(tmp_path / "m.png") as image:
        assert image.info["Title"].startswith("Decoded latent manifold: z[0] × z[1]")


def test_plural():
    assert plural(1, "epoch") == "1 epoch"
    assert plural(0, "epoch") == "0 epochs"
    assert plural(12000, "example") == "12,000 examples"
    assert plural(2, "class", "classes") == "2 classes" and plural(1, "class") == "1 class"


def test_a_failed_write_names_the_file_asked_for_not_its_temporary_file(images, tmp_path):
    target = tmp_path / "missing" / "x.png"
    with pytest.raises(FileNotFoundError) as caught:
        figures.save_sample_grid(images[:4], target, "Samples")
    assert caught.value.filename == str(target)
    assert not (tmp_path / "missing").exists()
