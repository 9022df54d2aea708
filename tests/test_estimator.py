"""The scikit-learn-style VAE and the from-scratch VAE of the NumPy tutorial."""

import inspect
from dataclasses import fields, make_dataclass
from inspect import Parameter

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from vaekit.api import estimator
from vaekit.api.estimator import VAE
from vaekit.api.scratch import ScratchVAE
from vaekit.cli import main
from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.data.scaling import Scaling
from vaekit.data.splits import validation_split
from vaekit.errors import ConfigError, DataError
from vaekit.measure.evaluation import evaluate_elbo
from vaekit.runs import config_file, loading


@pytest.fixture(scope="module")
def images(mnist_small):
    return (mnist_small[0].x[:1500] * 255).astype(np.uint8)  # 0..255 input is scaled


@pytest.fixture(scope="module")
def fitted(images):
    return VAE(hidden=(64,), latent_dim=3, epochs=2, batch_size=100, seed=1).fit(images)


def test_fit_returns_self_and_learns(fitted):
    assert isinstance(fitted, VAE)
    assert len(fitted.history_) == 2 and fitted.history_[1]["loss"] < fitted.history_[0]["loss"]
    assert fitted.model_config_.input_shape == (1, 28, 28) and fitted.engine_.name == "torch"


def test_surface_shapes(fitted, images):
    x = images[:7]
    assert fitted.transform(x).shape == (7, 3)
    mu, logvar = fitted.encode(x)
    np.testing.assert_array_equal(mu, fitted.transform(x))
    assert fitted.inverse_transform(mu).shape == (7, 1, 28, 28)
    assert fitted.reconstruct(x).shape == (7, 1, 28, 28)
    assert fitted.sample(5).shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(fitted.sample(4, seed=2), fitted.sample(4, seed=2))
    assert fitted.generate().shape == (1, 1, 28, 28)
    np.testing.assert_array_equal(fitted.generate(mu), fitted.inverse_transform(mu))
    scores = fitted.score_samples(x, k=20)
    assert scores.shape == (7,) and np.all(scores < 0)
    assert fitted.score(x, k=20) == pytest.approx(scores.mean())


def test_digits_score_higher_than_noise(fitted, images, rng):
    noise = rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    assert fitted.score(images[:50], k=20) > fitted.score(noise, k=20) + 100


def test_save_load_round_trip_and_cli_reads_it(fitted, images, tmp_path, capsys):
    fitted.save(tmp_path / "model")
    loaded = VAE.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.transform(images[:5]), fitted.transform(images[:5]))
    assert loaded.history_ == fitted.history_ and loaded.latent_dim == 3
    other = VAE.load(tmp_path / "model", engine="numpy")
    np.testing.assert_allclose(other.transform(images[:5]), fitted.transform(images[:5]), atol=1e-5)
    assert main(["sample", str(tmp_path / "model"), "-n", "4"]) == 0
    with pytest.raises(ConfigError, match="not an empty directory"):
        fitted.save(tmp_path / "model")
    assert config_file.read_config(tmp_path / "model")[2]["created_by"] == "estimator"


def test_errors(fitted):
    with pytest.raises(NotFittedError, match="not fitted"):
        VAE().transform(np.zeros((2, 4)))
    with pytest.raises(DataError, match="shape"):
        fitted.transform(np.zeros((2, 5)))
    with pytest.raises(DataError, match="Z must have shape"):
        fitted.inverse_transform(np.zeros((2, 7)))
    with pytest.raises(ConfigError, match="latent_dim"):
        VAE(latent_dim=0).fit(np.zeros((4, 4)))


def test_the_scratch_vae_speaks_the_tutorials_verbs(images):
    vae = ScratchVAE([784, 32, 2], activation="tanh", loss="bce", epochs=2, batch_size=100)
    assert vae.train(images) is vae and vae.estimator.engine_.name == "numpy"
    assert vae.estimator.model_config_.hidden == (32,)
    assert vae.estimator.model_config_.latent_dim == 2
    mu, logvar = vae.encode(images[:4])
    assert mu.shape == logvar.shape == (4, 2)
    flat = images[:4].reshape(4, 784)
    for x in (images[:4], flat):  # predict reconstructs, in X's shape and units
        again = vae.predict(x)
        assert again.shape == x.shape and again.min() >= 0 and again.max() <= 255
        expected = vae.estimator.reconstruct(images[:4]).reshape(4, -1)  # the decoder's means
        np.testing.assert_array_equal(again.reshape(4, -1), expected)
    assert vae.generate().shape == (1, 1, 28, 28)
    assert vae.generate(np.zeros((3, 2))).shape == (3, 1, 28, 28)
    assert not hasattr(vae, "fit") and not hasattr(vae, "score_samples")
    mse = ScratchVAE([784, 16, 2], loss="mse", sigma=0.5, epochs=1).train(images[:300])
    assert mse.estimator.model_config_.likelihood == "gaussian"
    assert mse.estimator.model_config_.sigma == 0.5


@pytest.mark.parametrize(
    "sizes, loss, message",
    [
        ([2], "bce", "at least the input size and the latent size"),
        ([784, 2], "hinge", "loss must be one of bce"),
    ],
)
def test_the_scratch_vae_refuses_bad_settings_when_made(sizes, loss, message):
    with pytest.raises(ConfigError, match=message):
        ScratchVAE(sizes, loss=loss)


def test_the_scratch_vae_refuses_data_of_another_size(images):
    with pytest.raises(DataError, match="784 values per example, but layer_sizes starts with 100"):
        ScratchVAE([100, 2]).train(images)


def test_a_saved_scratch_vae_loads_as_itself_and_as_the_estimator(images, tmp_path):
    vae = ScratchVAE([784, 16, 2], epochs=1).train(images[:300])
    vae.save(tmp_path / "n")
    loaded = ScratchVAE.load(tmp_path / "n")
    assert loaded.layer_sizes == (784, 16, 2)
    np.testing.assert_array_equal(loaded.predict(images[:5]), vae.predict(images[:5]))
    assert VAE.load(tmp_path / "n").engine_.name == "numpy"


def test_from_vaekit_import_vae_is_the_estimator():
    import vaekit

    assert vaekit.VAE is VAE and "VAE" in vaekit.__all__
    with pytest.raises(AttributeError, match="no attribute 'VAEModule'"):
        vaekit.VAEModule  # noqa: B018


def test_a_conditional_estimator_saves_and_loads(images, mnist_small, tmp_path):
    labels = mnist_small[0].y[:1500]
    vae = VAE(hidden=(32,), latent_dim=2, conditional=True, epochs=1, batch_size=100)
    with pytest.raises(ConfigError, match="fit\\(X, y\\)"):
        vae.fit(images)
    vae.fit(images, labels)
    assert vae.model_config_.n_classes == 10
    assert vae.sample(3, labels=4).shape == (3, 1, 28, 28)
    assert vae.score_samples(images[:5], labels[:5], k=5).shape == (5,)
    assert vae.transform(images[:5], labels[:5]).shape == (5, 2)
    vae.save(tmp_path / "c")
    loaded = VAE.load(tmp_path / "c")
    assert loaded.conditional and loaded.latent_dim == 2
    np.testing.assert_array_equal(
        loaded.sample(3, seed=1, labels=4), vae.sample(3, seed=1, labels=4)
    )


def test_the_signature_is_the_config_fields_but_the_exclusions():
    signature = inspect.signature(VAE.__init__)
    params = dict(signature.parameters)
    assert params.pop("self").kind == Parameter.POSITIONAL_OR_KEYWORD
    assert all(p.kind == Parameter.KEYWORD_ONLY for p in params.values())
    configs = {f.name: f.default for c in (ModelConfig, TrainConfig) for f in fields(c)}
    expected = {k: v for k, v in configs.items() if k not in estimator.EXCLUDED_FIELDS}
    expected.update(conditional=False, verbose=False, contamination=0.01)
    assert {name: p.default for name, p in params.items()} == expected
    assert set(estimator.EXCLUDED_FIELDS) <= set(configs)
    assert {name: getattr(VAE(), name) for name in params} == expected


def test_a_field_added_to_a_config_becomes_a_parameter():
    extra = make_dataclass("Extra", [("new_knob", int, 7), ("data", str, "x")])
    (knob,) = estimator.config_parameters(extra)  # "data" is one of the exclusions
    assert (knob.name, knob.default, knob.kind) == ("new_knob", 7, Parameter.KEYWORD_ONLY)


def test_unknown_keywords_are_refused_naming_the_nearest_parameter():
    with pytest.raises(
        TypeError, match="no parameter 'conv_channel'; did you mean 'conv_channels'"
    ):
        VAE(conv_channel=(16,))
    with pytest.raises(ConfigError, match="did you mean 'latent_dim'"):
        VAE(latentdim=3)
    with pytest.raises(TypeError):
        VAE((400,), 20)  # keywords only


def test_params_round_trip(tmp_path):
    vae = VAE(arch="conv", conv_channels=(8, 16), lr_decay=0.5, adam_eps=1e-6, latent_dim=3)
    params = vae.get_params()
    assert VAE(**params).get_params() == params and params["conv_channels"] == (8, 16)


def resolved(params: dict) -> dict:
    """The hyperparameters a saved run records: the defaults that depend on other settings
    (prior None, flow_steps None; keep, patience and max_minutes None) as an unconditional,
    flow-less model of a number of epochs resolves them."""
    stopping = {"keep": "last", "patience": 0, "max_minutes": None}
    return {**params, "prior": "standard", "flow_steps": 0, **stopping}


def test_a_conv_estimator_fits_and_a_loaded_run_refits_with_its_channels(images, tmp_path):
    vae = VAE(arch="conv", conv_channels=(16,), hidden=(), latent_dim=2, epochs=1, batch_size=100)
    vae.fit(images[:200])
    assert vae.model_config_.conv_channels == (16,)
    assert "encoder.conv.0.weight" in vae.engine_.get_weights()
    vae.save(tmp_path / "conv")
    loaded = VAE.load(tmp_path / "conv")
    assert loaded.get_params() == resolved(vae.get_params())
    loaded.fit(images[:200])
    assert loaded.model_config_ == vae.model_config_
    assert loaded.engine_.get_weights()["encoder.conv.0.weight"].shape == (16, 1, 4, 4)


# --- scaling: fitted once on the training rows, applied to every X ----------------------------


def tabular(n: int, seed: int = 0) -> np.ndarray:
    """Raw table rows: an age (0–100), an income (around 2e4–1e5) and a signed measurement."""
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [rng.uniform(0, 100, n), rng.lognormal(10.5, 0.4, n), rng.normal(0, 1, n)]
    )


@pytest.fixture(scope="module")
def table_vae():
    x = tabular(1100)
    vae = VAE(hidden=(16,), latent_dim=2, likelihood="gaussian", scale="standardize", epochs=2)
    return vae.fit(x), x


def test_standardize_is_numpys_mean_and_std_of_the_training_rows(table_vae):
    vae, x = table_vae
    train_rows, held = validation_split(len(x), 0.1, seed=0)  # val_fraction None: 0.1 held out
    assert len(held) == 110 and vae.scaling_.method == "standardize"
    np.testing.assert_allclose(vae.scaling_.shift, x[train_rows].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(vae.scaling_.scale, x[train_rows].std(axis=0), rtol=1e-6)


def test_a_row_gets_one_answer_in_any_batch(table_vae, fitted, images):
    vae, x = table_vae
    np.testing.assert_array_equal(vae.transform(x)[1:], vae.transform(x[1:]))
    np.testing.assert_array_equal(
        fitted.transform(images[:300])[1:], fitted.transform(images[1:300])
    )
    # a row alone goes through another matrix-product kernel (gemv): equal to float32 rounding
    np.testing.assert_allclose(vae.transform(x[7:8])[0], vae.transform(x)[7], rtol=1e-5)
    # each row draws its own importance samples: the same scores in any batch
    np.testing.assert_array_equal(vae.score_samples(x)[:500], vae.score_samples(x[:500], k=100))
    np.testing.assert_array_equal(vae.score_samples(x)[1:], vae.score_samples(x[1:]))
    assert vae.score(x[:500]) == pytest.approx(vae.score_samples(x)[:500].mean())


def test_methods_scale_inputs_and_return_raw_units(table_vae):
    vae, x = table_vae
    scaled = ((x - vae.scaling_.shift) / vae.scaling_.scale).astype(np.float32)
    np.testing.assert_allclose(vae.transform(x[:9]), vae.engine_.encode(scaled[:9])[0], atol=1e-6)
    z = vae.transform(x[:5])
    decoded = vae.engine_.decode(z)
    np.testing.assert_allclose(
        vae.inverse_transform(z), decoded * vae.scaling_.scale + vae.scaling_.shift, rtol=1e-5
    )
    assert 2e4 < np.median(vae.reconstruct(x[:50])[:, 1]) < 1e5  # incomes, not z-scores
    assert 2e4 < np.median(vae.sample(50, seed=1)[:, 1]) < 1e5


def test_auto_leaves_raw_numbers_as_they_are():
    ages = np.random.default_rng(3).integers(0, 101, size=(200, 4)).astype(np.float64)
    vae = VAE(hidden=(8,), latent_dim=2, likelihood="gaussian", epochs=1).fit(ages)
    assert vae.scaling_.method == "none"  # not divided by 255: they are no 8-bit pixels
    np.testing.assert_array_equal(
        vae.transform(ages), vae.engine_.encode(ages.astype(np.float32))[0]
    )


def test_save_load_gives_the_same_answers(table_vae, tmp_path):
    vae, x = table_vae
    vae.save(tmp_path / "t")
    assert (tmp_path / "t" / "scaling.json").is_file()
    loaded = VAE.load(tmp_path / "t")
    assert loaded.scaling_.method == "standardize"
    assert loaded.get_params() == resolved(vae.get_params())
    np.testing.assert_array_equal(loaded.transform(x), vae.transform(x))
    np.testing.assert_array_equal(loaded.score_samples(x, k=10), vae.score_samples(x, k=10))
    np.testing.assert_array_equal(
        loaded.inverse_transform(x[:3, :2]), vae.inverse_transform(x[:3, :2])
    )


def test_a_run_saved_before_scalings_were_stored_scales_by_auto(fitted, images, tmp_path):
    fitted.save(tmp_path / "old")
    (tmp_path / "old" / "scaling.json").unlink()
    loaded = VAE.load(tmp_path / "old")
    assert loaded.scaling_ is None
    np.testing.assert_array_equal(loaded.transform(images[:20]), fitted.transform(images[:20]))


def test_bernoulli_data_outside_the_unit_interval_is_refused_naming_the_fix(table_vae):
    with pytest.raises(DataError, match="outside \\[0, 1\\].*use --scale minmax or --likelihood"):
        VAE(hidden=(8,), latent_dim=2, epochs=1).fit(tabular(100))
    vae = VAE(hidden=(8,), latent_dim=2, scale="minmax", val_fraction=0.0, epochs=1)
    vae.fit(tabular(100))
    assert vae.scaling_.method == "minmax"
    # minmax clips later inputs to [0, 1] (see vaekit.data.scaling): a Bernoulli model scores any
    assert np.isfinite(vae.score_samples(tabular(100, seed=1) * 3, k=5)).all()


def test_keep_best_ends_with_the_best_epochs_weights_and_patience_stops():
    x = tabular(400)
    common = dict(hidden=(16,), latent_dim=2, likelihood="gaussian", scale="standardize")
    common.update(epochs=5, batch_size=20, lr=0.1)
    best = VAE(keep="best", **common).fit(x)
    losses = [record["val_loss"] for record in best.history_]
    assert 1 <= int(np.argmin(losses)) < len(losses) - 1  # a best epoch before the last
    _, held = validation_split(len(x), 0.1, seed=0)
    inputs = best.scaling_.apply(x[held])
    assert evaluate_elbo(best.engine_, inputs, seed=0).loss == min(losses)
    last = VAE(**common).fit(x)
    assert evaluate_elbo(last.engine_, inputs, seed=0).loss == losses[-1]
    stopped = VAE(patience=1, **{**common, "epochs": 20}).fit(x)
    assert len(stopped.history_) == int(np.argmin(losses)) + 2
    with pytest.raises(ConfigError, match="keep='best'.*val_fraction=0"):
        VAE(keep="best", val_fraction=0.0, **common).fit(x)


def test_the_scratch_vae_scales_tables_and_its_estimator_flags_outliers():
    x = tabular(300)
    vae = ScratchVAE([3, 8, 2], loss="mse", scale="standardize", epochs=2).train(x)
    assert vae.estimator.scaling_.method == "standardize"
    assert vae.predict(x[:10]).shape == (10, 3)  # in the table's own units
    flags = vae.estimator.predict(np.concatenate([x[:10], x[:10] * 50]))
    assert set(flags) <= {-1, 1} and np.all(flags[10:] == -1)


def test_a_command_line_run_loads_its_best_or_last_weights_and_its_scaling(tmp_path):
    rows = tabular(300)
    np.savetxt(tmp_path / "table.csv", rows, delimiter=",", fmt="%.6f")
    run = tmp_path / "run"
    flags = ["--likelihood", "gaussian", "--scale", "standardize", "--keep", "best"]
    argv = ["train", "--data", str(tmp_path / "table.csv"), "--hidden", "8", "--latent-dim", "2"]
    assert main([*argv, *flags, "--epochs", "3", "--quiet", "--out", str(run)]) == 0
    stored = Scaling.load(run)
    raw = np.loadtxt(tmp_path / "table.csv", delimiter=",")[:20]
    for which in ("last", "best"):
        vae = VAE.load(run, checkpoint=which)
        assert vae.scaling_.method == "standardize"
        engine = loading.open_run(run, which=which)
        np.testing.assert_array_equal(vae.transform(raw), engine.encode(stored.apply(raw))[0])
    with pytest.raises(ConfigError, match="which must be one of last, best"):
        VAE.load(run, checkpoint="first")


def test_a_dataframes_column_names_survive_save_and_load(tmp_path):
    """A model fitted on a DataFrame checks its column names, before and after a round trip
    through save and load: columns in another order, or renamed, are refused."""
    pandas = pytest.importorskip("pandas")

    rows = np.random.default_rng(3).normal(size=(80, 3))
    table = pandas.DataFrame(rows, columns=["age", "income", "score"])
    vae = VAE(hidden=(8,), latent_dim=2, epochs=1, likelihood="gaussian", scale="standardize")
    vae.fit(table)
    vae.save(tmp_path / "model")
    loaded = VAE.load(tmp_path / "model")
    assert list(loaded.feature_names_in_) == ["age", "income", "score"]
    np.testing.assert_allclose(loaded.transform(table), vae.transform(table), rtol=1e-6)
    for model in (vae, loaded):
        with pytest.raises(DataError, match="feature names"):
            model.transform(table[["score", "income", "age"]])
        with pytest.raises(DataError, match="feature names"):
            model.transform(table.rename(columns={"age": "years"}))
    assert not hasattr(VAE.load(_array_model(tmp_path)), "feature_names_in_")


def _array_model(tmp_path):
    path = tmp_path / "from-an-array"
    VAE(hidden=(8,), latent_dim=2, epochs=1, likelihood="gaussian").fit(np.zeros((20, 3))).save(
        path
    )
    return path


def test_no_samples_a_link_or_a_full_folder_is_a_clear_error(fitted, tmp_path):
    for n in (0, -1, 2.5):
        with pytest.raises(ConfigError, match="number of samples must be a whole number of 1"):
            fitted.sample(n)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    with pytest.raises(ConfigError, match="symbolic link"):
        fitted.save(tmp_path / "link")
    assert not any((tmp_path / "real").iterdir())  # the link was not followed
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an empty directory"):
        fitted.save(tmp_path / "full")
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"


def test_a_seed_beyond_32_bits_is_refused_as_the_flag_refuses_it(images):
    with pytest.raises(ConfigError, match="seed must be a whole number from 0 to 4,294,967,295"):
        VAE(hidden=(8,), latent_dim=2, epochs=1, seed=2**32).fit(images[:20])
