"""The generated ``shapes`` data sets on the command line, and ``vaekit disentanglement RUN``:
where the sets are read and cached, a run trained on them end to end, the scores' meaning, and
the refusals (a run without known factors, a missing extra, an unwritable cache)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli_runner import run_cli, user_error
from vaekit.config.settings import ModelConfig
from vaekit.data import dataset_status, has_test_split, load_raw, shapes
from vaekit.data.shapes import SMALL
from vaekit.measure import run_disentanglement

pytest.importorskip("sklearn")

TINY = ["--epochs", "1", "--hidden", "16", "--latent-dim", "3", "--quiet"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """The user cache (pooch.os_cache follows $XDG_CACHE_HOME) in tmp_path, no data directory
    from the environment: nothing is written into the real cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("VAEKIT_DATA_DIR", raising=False)
    return tmp_path / "xdg" / "vaekit" / "shapes"


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """A tiny run of shapes-small, one epoch, trained through the command line."""
    from vaekit.cli import main

    root = tmp_path_factory.mktemp("shapes")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root / "xdg"))
        mp.delenv("VAEKIT_DATA_DIR", raising=False)
        assert main(["train", "--data", "shapes-small", *TINY, "--out", str(root / "run")]) == 0
    return root / "run"


def test_shapes_are_named_sets_without_a_test_split_cached_on_first_use(own_cache):
    raw = load_raw("shapes-small")
    assert isinstance(raw.x, shapes.ShapesImages) and raw.x.shape == (4608, 1, 64, 64)
    assert raw.y is None and raw.pixels and raw.name == "shapes-small"
    assert np.array_equal(
        raw.x[[0, 4607]], shapes.render(SMALL, shapes.factor_table(SMALL)[[0, -1]])
    )
    assert load_raw("shapes-small", "test") is None and not has_test_split("shapes-small")
    assert [p.name for p in own_cache.iterdir()] == ["shapes-3x8x8-all.npz"]
    rows = {r["name"]: r for r in dataset_status()}
    assert rows["shapes-small"]["present"] and not rows["shapes"]["present"]
    assert rows["shapes"]["location"] == str(own_cache / "shapes-6x40x32-all.npz")


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_named_directory_is_only_read(tmp_path, own_cache, monkeypatch, how):
    named = tmp_path / "named"
    named.mkdir()
    if how == "environment":
        monkeypatch.setenv("VAEKIT_DATA_DIR", str(named))
    data_dir = str(named) if how == "flag" else None
    drawn = load_raw("shapes-small", data_dir=data_dir)  # absent there: drawn in memory
    assert np.array_equal(drawn.x[:], shapes.generate(SMALL).x[:])
    assert list(named.iterdir()) == [] and not own_cache.exists()
    shapes.shapes_dataset(SMALL, cache_dir=named / "shapes")  # now it holds the file
    before = {p: p.stat().st_mtime_ns for p in named.rglob("*")}
    monkeypatch.setattr(shapes, "generate", lambda *a, **k: pytest.fail("generated, not read"))
    assert np.array_equal(load_raw("shapes-small", data_dir=data_dir).x[:], drawn.x[:])
    assert {p: p.stat().st_mtime_ns for p in named.rglob("*")} == before


def test_an_unwritable_cache_is_one_line_and_no_run_is_created(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    line = user_error(capsys, "train", "--data", "shapes-small", *TINY, "--out", tmp_path / "run")
    assert "cannot write the shapes cache" in line and "--data-dir" in line
    assert not (tmp_path / "run").exists()


def test_train_and_every_command_on_shapes_small(shapes_run, tmp_path, capsys):
    config = json.loads((shapes_run / "config.json").read_text())
    assert config["model"]["input_shape"] == [1, 64, 64]
    assert config["train"]["data"] == "shapes-small"
    assert json.loads((shapes_run / "scaling.json").read_text())["method"] == "unit"
    assert (shapes_run / "samples.png").is_file() and (shapes_run / "manifold.png").is_file()
    code, out, _ = run_cli(capsys, "evaluate", shapes_run, "--quiet")
    assert code == 0 and "shapes-small val (461 examples)" in out
    assert run_cli(capsys, "traverse", shapes_run, "--out", tmp_path / "t.png")[0] == 0
    assert run_cli(capsys, "sample", shapes_run, "--out", tmp_path / "s.png")[0] == 0
    assert "quality scores need" in user_error(capsys, "quality", shapes_run)


def test_disentanglement_prints_scores_in_unit_interval_and_writes_json(shapes_run, capsys):
    code, out, err = run_cli(capsys, "disentanglement", shapes_run, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert json.loads((shapes_run / "disentanglement.json").read_text()) == result
    assert (result["data"], result["n"], result["seed"], result["code_dim"]) == (
        "shapes-small",
        SMALL.n_images,  # the default 10,000 is more than the small grid holds
        0,
        3,
    )
    scores = [
        result["mig"]["mig"],
        *(result["dci"][k] for k in ("disentanglement", "completeness", "informativeness")),
    ]
    gaps = result["mig"]["gaps"] + result["dci"]["factor_accuracy"]
    assert all(0 <= s <= 1 for s in scores + gaps)
    assert len(result["mig"]["gaps"]) == 5 and result["factors"] == list(shapes.FACTOR_NAMES)
    code, out, _ = run_cli(capsys, "disentanglement", shapes_run, "-n", "600", "--seed", "1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("600 images of shapes-small (seed 1)") and lines[1].startswith(
        "MIG "
    )
    assert [line.split()[0] for line in lines[3:8]] == list(shapes.FACTOR_NAMES)
    assert lines[-1] == f"wrote {shapes_run / 'disentanglement.json'}"


def test_disentanglement_of_the_true_factors_is_one(shapes_run, monkeypatch, capsys):
    """The meaning, end to end: an encoder that returns each image's factor indices (one code
    dimension per factor) scores MIG, D, C and I of 1 (up to the forests' sampling)."""
    expected = shapes.factor_table(SMALL)
    served = []

    class FactorEncoder:  # an engine whose code is the factors themselves
        config = ModelConfig(input_shape=(1, 64, 64), latent_dim=len(shapes.FACTOR_NAMES))

        def encode(self, x, y=None):
            rows = expected[len(served) : len(served) + len(x)]
            assert np.array_equal(x * 255, shapes.render(SMALL, rows).astype(np.float32))
            served.extend(rows)
            return rows.astype(np.float32), np.zeros(rows.shape, np.float32)

    monkeypatch.setattr(run_disentanglement.loading, "open_run", lambda *a: FactorEncoder())
    code, out, _ = run_cli(capsys, "disentanglement", shapes_run, "--json")
    assert code == 0 and len(served) == SMALL.n_images
    result = json.loads(out)
    assert result["mig"]["mig"] == pytest.approx(1.0, abs=1e-9)  # independent factors: no gap lost
    for key in ("disentanglement", "completeness", "informativeness"):
        assert result["dci"][key] > 0.95, (key, result["dci"][key])


def test_disentanglement_refuses_a_run_without_known_factors(tmp_path, capsys):
    run = tmp_path / "mnist"
    assert run_cli(capsys, "train", "--data", "mnist-small", *TINY, "--out", run)[0] == 0
    line = user_error(capsys, "disentanglement", run)
    assert "no known generative factors" in line and "--data shapes" in line
    assert not (run / "disentanglement.json").exists()


def test_disentanglement_without_sklearn_is_the_extra_line(shapes_run, without_sklearn, capsys):
    line = user_error(capsys, "disentanglement", shapes_run)
    assert "needs the sklearn extra: pip install 'vaekit[sklearn]'" in line
