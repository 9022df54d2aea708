"""Latent traversals: the grid's latents, the order by KL, the base point, the CLI and train."""

import io

import numpy as np
import pytest

from cli_runner import run_cli, user_error
from vaekit.cli import main
from vaekit.draw import gallery, geometry
from vaekit.measure.evaluation import latent_statistics
from vaekit.runs import loading
from vaekit.runs.inputs import run_data

#: The base URL of the test client: a Host the explorer answers (see create_app).
LOCAL = "http://localhost"

SMALL = ["--hidden", "32", "--latent-dim", "3", "--batch-size", "250", "--epochs", "1", "--quiet"]


def _train(capsys, out, *extra):
    code, _, err = run_cli(capsys, "train", "--data", "mnist-small", "--out", out, *SMALL, *extra)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An unconditional run (standard prior), a mixture-prior run and a conditional run, one
    epoch each."""
    root = tmp_path_factory.mktemp("trav")
    made = {}
    for name, extra in {"normal": [], "mog": ["--prior", "mog"], "cond": ["--conditional"]}.items():
        code = main(["train", "--data", "mnist-small", "--out", str(root / name), *SMALL, *extra])
        assert code == 0
        made[name] = root / name
    return made


def test_traversal_latents_vary_only_their_dimension():
    base = np.array([0.5, -1.0, 2.0])
    q = np.linspace(-1, 1, 5)[:, None] * np.array([1.0, 2.0, 3.0])
    z = geometry.traversal_latents(base, q, [2, 0])
    assert z.shape == (2, 5, 3)
    np.testing.assert_array_equal(z[0, :, 2], q[:, 2])
    np.testing.assert_array_equal(z[0, :, :2], np.broadcast_to(base[:2], (5, 2)))
    np.testing.assert_array_equal(z[1, :, 0], q[:, 0])
    np.testing.assert_array_equal(z[1, :, 1:], np.broadcast_to(base[1:], (5, 2)))


@pytest.mark.parametrize("name", ["normal", "mog"])
def test_rows_sweep_the_prior_quantiles_from_the_median(runs, name, tmp_path, monkeypatch):
    engine = loading.open_run(runs[name])
    x = run_data(runs[name])[0].x[:200]
    seen = []
    decode = engine.decode
    monkeypatch.setattr(engine, "decode", lambda z, y=None: seen.append(z) or decode(z, y))
    images = gallery.draw_traversals(engine, tmp_path / "t.png", x, dims=[1, 0], steps=5)
    assert images.shape[:2] == (2, 5)
    z = seen[-1].reshape(2, 5, 3).astype(np.float64)
    q = engine.prior.quantile(np.linspace(0.05, 0.95, 5))
    median = engine.prior.quantile(np.array(0.5))
    np.testing.assert_allclose(z[0, :, 1], q[:, 1], rtol=1e-6)
    np.testing.assert_allclose(z[1, :, 0], q[:, 0], rtol=1e-6)
    np.testing.assert_allclose(
        z[0, :, [0, 2]].T, np.broadcast_to(median[[0, 2]], (5, 2)), rtol=1e-6
    )
    from PIL import Image

    with Image.open(tmp_path / "t.png") as png:
        assert png.format == "PNG"


def test_order_is_descending_kl_as_evaluate_reports(runs):
    engine = loading.open_run(runs["normal"])
    x = run_data(runs["normal"])[0].x
    order, score, name = gallery.dimension_order(engine, x)
    stats = latent_statistics(engine, x[: gallery.TRAVERSAL_ORDER_POINTS])
    assert name == "KL"
    np.testing.assert_allclose(score, stats.kl_per_dim)
    assert list(np.diff(score[order]) <= 0) == [True] * 2


def test_cli_grid_npy_and_data_base(runs, tmp_path, capsys, monkeypatch):
    run = runs["normal"]
    npy = tmp_path / "t.npy"
    out = tmp_path / "t.png"
    code, _, err = run_cli(capsys, "traverse", run, "--steps", "4", "--out", out, "--npy", npy)
    assert code == 0, err
    assert np.load(npy).shape == (3, 4, 1, 28, 28) and out.is_file()
    seen = []
    real = gallery.draw_traversals
    monkeypatch.setattr(
        gallery, "draw_traversals", lambda *a, **k: seen.append(k["base"]) or real(*a, **k)
    )
    code, _, err = run_cli(
        capsys, "traverse", run, "--data", "mnist-small", "--index", "2", "--out", out
    )
    assert code == 0, err
    engine = loading.open_run(run)
    x = run_data(run, "mnist-small")[0].x
    np.testing.assert_allclose(seen[0], engine.encode(x[2:3])[0][0], rtol=1e-6)


def test_index_without_data_encodes_the_runs_held_out_input(runs, tmp_path, capsys, monkeypatch):
    """--index alone starts from that input of the run's own held-out data (it used to be
    ignored, silently leaving the prior's median); neither flag: the median (base None)."""
    run = runs["normal"]
    seen = []
    real = gallery.draw_traversals
    monkeypatch.setattr(
        gallery, "draw_traversals", lambda *a, **k: seen.append(k["base"]) or real(*a, **k)
    )
    out = tmp_path / "t.png"
    for extra in (["--index", "4"], []):
        code, _, err = run_cli(capsys, "traverse", run, *extra, "--out", out)
        assert code == 0, err
    x = run_data(run, None, "heldout")[0].x
    np.testing.assert_allclose(seen[0], loading.open_run(run).encode(x[4:5])[0][0], rtol=1e-6)
    assert seen[1] is None


def test_train_writes_traversals_only_for_small_latents(runs, tmp_path, capsys):
    assert (runs["normal"] / "traversals.png").is_file()
    big = _train(capsys, tmp_path / "big", "--latent-dim", "11")
    assert not (big / "traversals.png").exists()


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--dims", "3"], "--dims"),
        (["--steps", "1"], "--steps"),
        (["--label", "1"], "--label"),
    ],
)
def test_errors_are_one_line_and_write_nothing(runs, tmp_path, capsys, argv, words):
    out = tmp_path / "t.png"
    line = user_error(capsys, "traverse", runs["normal"], "--out", out, *argv)
    assert words in line
    assert not out.exists()


def test_missing_run_is_one_line(tmp_path, capsys):
    user_error(capsys, "traverse", tmp_path / "nope")


def test_label_reaches_decode(runs, tmp_path, monkeypatch):
    engine = loading.open_run(runs["cond"])
    data = run_data(runs["cond"])[0]
    seen = []
    decode = engine.decode
    monkeypatch.setattr(engine, "decode", lambda z, y=None: seen.append(y) or decode(z, y))
    gallery.draw_traversals(
        engine, tmp_path / "t.png", data.x[:100], data.y[:100], dims=[0], steps=3, label=7
    )
    np.testing.assert_array_equal(seen[-1], [7, 7, 7])


def test_cli_conditional_label(runs, tmp_path, capsys):
    out = tmp_path / "t.png"
    code, _, err = run_cli(capsys, "traverse", runs["cond"], "--label", "3", "--out", out)
    assert code == 0, err
    assert out.is_file()


def test_explorer_endpoint_returns_the_row(runs):
    from fastapi.testclient import TestClient
    from PIL import Image

    from vaekit.serve.app import create_app
    from vaekit.serve.explorer import Explorer, png_bytes

    explorer = Explorer.open(runs["cond"])
    client = TestClient(create_app(explorer), base_url=LOCAL)
    params = {"dim": 1, "base": "0.1,-0.2,0.3", "steps": 5, "label": 4}
    response = client.get("/api/traverse", params=params)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    base = np.array([0.1, -0.2, 0.3])
    z = geometry.traversal_latents(
        base, explorer.engine.prior.quantile(np.linspace(0.05, 0.95, 5)), [1]
    )
    images = explorer.engine.decode(z[0].astype(np.float32), np.full(5, 4))
    assert response.content == png_bytes(np.concatenate(list(images), axis=-1))
    with Image.open(io.BytesIO(response.content)) as png:
        assert png.size == (5 * 28, 28)
    bad = client.get("/api/traverse", params={**params, "dim": 3})
    assert bad.status_code == 400 and "dim must be from 0 to 2" in bad.text
