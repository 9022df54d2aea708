"""The scikit-learn-style VAE and the NumPy learner API."""

import inspect
from dataclasses import fields, make_dataclass
from inspect import Parameter

import numpy as np
import pytest

from vaekit import checkpoint, estimator, learner
from vaekit.cli import main
from vaekit.config import ModelConfig, TrainConfig
from vaekit.errors import ConfigError
from vaekit.estimator import VAE


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
    assert checkpoint.read_config(tmp_path / "model")[2]["created_by"] == "estimator"


def test_errors(fitted):
    with pytest.raises(ConfigError, match="not fitted"):
        VAE().transform(np.zeros((2, 4)))
    with pytest.raises(ConfigError, match="shape"):
        fitted.transform(np.zeros((2, 5)))
    with pytest.raises(ConfigError, match="Z must have shape"):
        fitted.inverse_transform(np.zeros((2, 7)))
    with pytest.raises(ConfigError, match="latent_dim"):
        VAE(latent_dim=0).fit(np.zeros((4, 4)))


def test_numpy_learner_api(images):
    vae = learner.VAE([784, 32, 2], activation="tanh", loss="bce", epochs=2, batch_size=100)
    assert vae.fit(images) is vae and vae.engine_.name == "numpy"
    assert vae.model_config_.hidden == (32,) and vae.model_config_.latent_dim == 2
    mu, logvar = vae.encode(images[:4])
    assert mu.shape == logvar.shape == (4, 2)
    assert vae.reconstruct(images[:4]).shape == (4, 1, 28, 28)
    assert vae.generate().shape == (1, 1, 28, 28)
    assert vae.generate(np.zeros((3, 2))).shape == (3, 1, 28, 28)
    mse = learner.VAE([784, 16, 2], loss="mse", sigma=0.5, epochs=1).fit(images[:300])
    assert mse.model_config_.likelihood == "gaussian" and mse.model_config_.sigma == 0.5
    with pytest.raises(
        ConfigError,
        match="784 values per example, but layer_sizes starts with 100",
    ):
        learner.VAE([100, 2]).fit(images)
    with pytest.raises(ConfigError, match="loss"):
        learner.VAE(loss="hinge")


def test_conditional_estimator_and_numpy_learner_load(images, mnist_small, tmp_path):
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
    from_scratch = learner.VAE([784, 16, 2], epochs=1).fit(images[:300])
    from_scratch.save(tmp_path / "n")
    assert VAE.load(tmp_path / "n").engine_.name == "numpy"


def test_the_signature_is_the_config_fields_but_the_exclusions():
    signature = inspect.signature(VAE.__init__)
    params = dict(signature.parameters)
    assert params.pop("self").kind == Parameter.POSITIONAL_OR_KEYWORD
    assert all(p.kind == Parameter.KEYWORD_ONLY for p in params.values())
    configs = {f.name: f.default for c in (ModelConfig, TrainConfig) for f in fields(c)}
    expected = {k: v for k, v in configs.items() if k not in estimator.EXCLUDED_FIELDS}
    expected.update(conditional=False, verbose=False)
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
    from_scratch = learner.VAE([784, 8, 2], loss="mse")
    assert learner.VAE(**from_scratch.get_params()).get_params() == from_scratch.get_params()


def test_a_conv_estimator_fits_and_a_loaded_run_refits_with_its_channels(images, tmp_path):
    vae = VAE(arch="conv", conv_channels=(16,), hidden=(), latent_dim=2, epochs=1, batch_size=100)
    vae.fit(images[:200])
    assert vae.model_config_.conv_channels == (16,)
    assert "encoder.conv.0.weight" in vae.engine_.get_weights()
    vae.save(tmp_path / "conv")
    loaded = VAE.load(tmp_path / "conv")
    assert loaded.get_params() == vae.get_params()
    loaded.fit(images[:200])
    assert loaded.model_config_ == vae.model_config_
    assert loaded.engine_.get_weights()["encoder.conv.0.weight"].shape == (16, 1, 4, 4)
