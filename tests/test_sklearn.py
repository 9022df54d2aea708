"""The VAE as a scikit-learn estimator: clone, Pipeline, GridSearchCV, pickle, scikit-learn's own
check suite, its errors, and scores that do not depend on the batch."""

import json
import os
import pickle
import subprocess
import sys
import textwrap
from dataclasses import fields

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from vaekit.api import estimator
from vaekit.api.estimator import EXPECTED_FAILED_CHECKS, VAE
from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.data.readers import read_file
from vaekit.errors import ConfigError, DataError
from vaekit.measure.evaluation import row_generators

#: Small and fast: the NumPy engine, 8 hidden units, 2 epochs.
FAST = dict(hidden=(8,), latent_dim=2, engine="numpy", epochs=2, batch_size=16)


def table(n: int, seed: int = 0) -> np.ndarray:
    """Rows of 4 correlated columns in raw units (tens to tens of thousands)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    mixing = np.array([[1.0, 0.5, 0.0, 0.3], [0.0, 0.8, 1.0, -0.5]])
    return np.array([40.0, 5e4, -3.0, 0.5]) + np.array([10.0, 1e4, 2.0, 0.1]) * (
        z @ mixing + 0.2 * rng.standard_normal((n, 4))
    )


@pytest.fixture(scope="module")
def fitted() -> tuple[VAE, np.ndarray]:
    x = table(300)
    return VAE(likelihood="gaussian", scale="standardize", **FAST).fit(x), x


def test_the_parameters_are_the_config_fields_but_the_exclusions_and_the_estimators_own():
    configs = {f.name for config in (ModelConfig, TrainConfig) for f in fields(config)}
    own = {"conditional", "verbose", "contamination"}
    expected = configs - set(estimator.EXCLUDED_FIELDS) | own
    assert set(VAE().get_params()) == expected  # scikit-learn reads them from the signature
    vae = VAE(latent_dim=3)
    assert vae.set_params(beta=0.5, epochs=3) is vae and (vae.beta, vae.epochs) == (0.5, 3)
    assert "latent_dim=3" in repr(vae)
    with pytest.raises(ValueError, match="Invalid parameter 'latentdim'"):
        vae.set_params(latentdim=2)


def test_clone_gives_an_unfitted_estimator_with_the_same_parameters(fitted):
    vae, _ = fitted
    copy = clone(vae)
    assert copy.get_params() == vae.get_params() and not hasattr(copy, "engine_")
    assert clone(VAE(latent_dim=0)).latent_dim == 0  # no validation before fit


def test_a_pipeline_with_standard_scaler_and_a_gaussian_vae(fitted):
    _, x = fitted
    vae = VAE(likelihood="gaussian", scale="none", **FAST)
    pipe = make_pipeline(StandardScaler(), vae).fit(x)
    scaled = pipe[0].transform(x[:20])
    assert pipe.transform(x[:20]).shape == (20, 2)
    np.testing.assert_array_equal(pipe.transform(x[:20]), vae.transform(scaled))
    np.testing.assert_array_equal(pipe.score_samples(x[:20]), vae.score_samples(scaled))
    assert pipe.score(x[:20]) == pytest.approx(vae.score_samples(scaled).mean())
    assert set(pipe.predict(x[:20])) <= {-1, 1}


def test_a_pipeline_with_minmax_scaler_and_a_bernoulli_vae(fitted):
    _, x = fitted
    vae = VAE(likelihood="bernoulli", **FAST)  # scale auto: float data as they are
    pipe = make_pipeline(MinMaxScaler(clip=True), vae).fit(x)
    assert vae.scaling_.method == "none" and vae.n_features_in_ == 4
    scores = pipe.score_samples(table(50, seed=1))  # new rows, clipped into [0, 1]
    assert scores.shape == (50,) and np.all(scores < 0)
    with pytest.raises(DataError, match=r"outside \[0, 1\]"):
        vae.score_samples(x[:5])  # raw rows, not scaled into [0, 1]


def test_grid_search_chooses_the_best_held_out_likelihood(fitted):
    _, x = fitted
    grid = {"latent_dim": [1, 2], "beta": [0.5, 1.0]}
    base = VAE(likelihood="gaussian", scale="standardize", **{**FAST, "epochs": 3})
    search = GridSearchCV(base, grid, cv=2).fit(x)
    means = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(means))
    assert search.best_params_ == search.cv_results_["params"][int(np.argmax(means))]
    assert search.best_score_ == means.max()
    best = search.best_estimator_
    assert best.latent_dim == search.best_params_["latent_dim"]
    assert best.transform(x[:3]).shape == (3, best.latent_dim)  # refit on all of x
    assert search.score(x[:50]) == pytest.approx(best.score(x[:50]))


def test_scikit_learns_check_suite_passes_but_the_documented_checks():
    vae = VAE(likelihood="gaussian", scale="standardize", **FAST)
    results = check_estimator(vae, expected_failed_checks=EXPECTED_FAILED_CHECKS, on_skip=None)
    failed = {r["check_name"] for r in results if r["status"] == "xfail"}
    assert failed == set(EXPECTED_FAILED_CHECKS)  # each documented failure is real
    assert all(r["status"] in ("passed", "xfail", "skipped") for r in results)
    assert sum(r["status"] == "passed" for r in results) >= 40


def test_every_method_raises_not_fitted_before_fit(tmp_path):
    vae = VAE()
    x = np.zeros((2, 4))
    calls = [
        lambda: vae.transform(x),
        lambda: vae.encode(x),
        lambda: vae.inverse_transform(np.zeros((2, 2))),
        lambda: vae.reconstruct(x),
        lambda: vae.sample(2),
        lambda: vae.score_samples(x),
        lambda: vae.score(x),
        lambda: vae.decision_function(x),
        lambda: vae.predict(x),
        lambda: vae.get_feature_names_out(),
        lambda: vae.save(tmp_path / "m"),
    ]
    for call in calls:
        with pytest.raises(NotFittedError, match="not fitted"):
            call()


def test_errors_are_value_errors(fitted):
    vae, x = fitted
    assert issubclass(DataError, ValueError) and issubclass(ConfigError, ValueError)
    assert issubclass(estimator.UnknownParameter, TypeError)
    with pytest.raises(TypeError, match="did you mean 'latent_dim'"):
        VAE(latentdim=3)
    with pytest.raises(ConfigError, match="latent_dim"):
        VAE(latent_dim=0, **{k: v for k, v in FAST.items() if k != "latent_dim"}).fit(x)
    bad = x[:10].copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        VAE(**FAST).fit(bad)
    with pytest.raises(DataError, match="NaN"):
        vae.transform(bad)
    with pytest.raises(DataError, match="X has 3 features, but VAE is expecting 4"):
        vae.predict(x[:5, :3])
    with pytest.raises(DataError, match="Reshape your data"):
        vae.score_samples(x[0])
    with pytest.raises(DataError, match="1 sample"):
        VAE(**FAST).fit(x[:1])


def test_a_data_error_raised_inside_a_reader_is_not_wrapped_again(tmp_path):
    """The readers turn numpy's and Pillow's ValueErrors into DataError; a DataError (now a
    ValueError too) that they raise themselves keeps its own message."""
    np.save(tmp_path / "a.npy", np.zeros((3, 4)))
    (tmp_path / "a.npy").rename(tmp_path / "a.npz")
    with pytest.raises(DataError) as raised:
        read_file(tmp_path / "a.npz")
    assert str(raised.value) == f"{tmp_path / 'a.npz'} is a single .npy array, not a .npz archive."


def test_outlier_surface_follows_scikit_learns_conventions(fitted):
    vae, x = fitted
    assert vae.offset_ == vae.threshold_
    np.testing.assert_array_equal(vae.decision_function(x), vae.score_samples(x) - vae.offset_)
    labels = vae.predict(x)
    assert labels.dtype.kind == "i" and set(np.unique(labels)) <= {-1, 1}
    np.testing.assert_array_equal(labels == -1, vae.decision_function(x) < 0)
    again = clone(vae)
    np.testing.assert_array_equal(again.fit_predict(x), labels)  # same seed, same model
    np.testing.assert_array_equal(again.fit_transform(x), vae.transform(x))
    assert list(vae.get_feature_names_out()) == ["vae0", "vae1"]


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_a_rows_score_does_not_depend_on_the_rest_of_the_batch(engine):
    x = table(620)  # more than one internal batch of 500 rows
    vae = VAE(likelihood="gaussian", scale="standardize", **{**FAST, "engine": engine}).fit(x)
    full = vae.score_samples(x, k=20)
    alone = np.array([vae.score_samples(x[i : i + 1], k=20)[0] for i in range(0, 620, 31)])
    np.testing.assert_array_equal(alone, full[::31])  # exactly: same noise, same kernel
    order = np.random.default_rng(0).permutation(620)
    np.testing.assert_array_equal(vae.score_samples(x[order], k=20), full[order])
    mixed = np.concatenate([table(7, seed=9), x[100:103]])
    np.testing.assert_array_equal(vae.score_samples(mixed, k=20)[7:], full[100:103])
    np.testing.assert_array_equal(vae.transform(x[5:6]), vae.transform(x)[5:6])
    assert not np.array_equal(vae.score_samples(x[:5], k=20, seed=1), full[:5])


def test_row_noise_is_the_same_in_another_process():
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    here = [g.standard_normal(3) for g in row_generators(rows, seed=5)]
    script = textwrap.dedent(
        """
        import json
        import numpy as np
        from vaekit.measure.evaluation import row_generators
        rows = np.arange(12, dtype=np.float32).reshape(3, 4)
        print(json.dumps([g.standard_normal(3).tolist() for g in row_generators(rows, seed=5)]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "123"},  # Python's own hash() would change
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [draw.tolist() for draw in here]
    assert not np.array_equal(here[0], here[1])


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_a_pickled_estimator_gives_the_same_answers(engine):
    x = table(100)
    vae = VAE(likelihood="gaussian", scale="standardize", **{**FAST, "engine": engine}).fit(x)
    copy = pickle.loads(pickle.dumps(vae))
    assert copy.engine_.name == engine and copy.get_params() == vae.get_params()
    np.testing.assert_array_equal(copy.transform(x), vae.transform(x))
    np.testing.assert_array_equal(copy.score_samples(x, k=5), vae.score_samples(x, k=5))
    np.testing.assert_array_equal(copy.predict(x), vae.predict(x))


def test_without_scikit_learn_vaekit_and_its_command_line_work_and_the_estimator_says_why():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["sklearn"] = None  # any import of scikit-learn fails, as where it is absent
        import vaekit
        from vaekit.cli import main
        from vaekit.errors import MissingExtra
        assert main(["presets"]) == 0
        try:
            import vaekit.api.estimator
        except MissingExtra as exc:
            print("refused:", exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == (
        "refused: vaekit.api.estimator (the scikit-learn interface) needs the sklearn extra: "
        "pip install 'vaekit[sklearn]'"
    )
