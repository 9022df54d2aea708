import json

import pytest

from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.errors import ConfigError
from vaekit.model import parameters


def test_defaults_are_the_pytorch_example_model():
    m = ModelConfig()
    assert (m.input_dim, m.hidden, m.latent_dim, m.activation, m.likelihood) == (
        784,
        (400,),
        20,
        "relu",
        "bernoulli",
    )
    assert m.decoder_sizes == (400,)
    t = TrainConfig()
    assert (t.lr, t.batch_size, t.optimizer, t.epochs) == (1e-3, 128, "adam", 10)


def test_parameter_shapes_follow_torch_linear_layout():
    m = ModelConfig(hidden=(300, 100), latent_dim=5, likelihood="gaussian", learn_sigma="per-dim")
    s = parameters.shapes(m)
    assert s["encoder.hidden.0.weight"] == (300, 784)
    assert s["encoder.hidden.1.weight"] == (100, 300)
    assert s["encoder.mu.weight"] == (5, 100) and s["encoder.logvar.bias"] == (5,)
    assert s["decoder.hidden.0.weight"] == (100, 5)  # mirror: 5 → 100 → 300 → 784
    assert s["decoder.hidden.1.weight"] == (300, 100)
    assert s["decoder.out.weight"] == (784, 300)
    assert s["decoder.log_sigma"] == (784,)
    assert parameters.count(m) == sum(__import__("math").prod(v) for v in s.values())


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(),
        ModelConfig(hidden=(), decoder_hidden=(7, 9), activation="tanh"),
        ModelConfig(likelihood="gaussian", sigma=0.3, learn_sigma="scalar", beta=4.0),
    ],
)
def test_model_config_json_round_trip(cfg):
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_train_config_json_round_trip():
    cfg = TrainConfig(data="x.npy", binarize="dynamic", kl_warmup=2.5, seed=7)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("data_dir", ["../shared/data", "/srv/data", None])
def test_train_config_keeps_data_paths_as_given(data_dir):
    """Older runs stored relative paths; they still load, unchanged (the command line is what
    makes new runs' paths absolute)."""
    cfg = TrainConfig.from_dict({"data": "runs/../x.npy", "data_dir": data_dir})
    assert (cfg.data, cfg.data_dir) == ("runs/../x.npy", data_dir)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"latent_dim": -3}, "latent_dim"),
        ({"hidden": (10**9,)}, "limit"),
        ({"activation": "swish"}, "activation"),
        ({"likelihood": "poisson"}, "likelihood"),
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": float("nan")}, "sigma"),
        ({"beta": -1.0}, "beta"),
        ({"learn_sigma": "scalar"}, "gaussian"),
        ({"hidden": (True,)}, "hidden"),
    ],
)
def test_model_config_rejects_bad_values(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        ModelConfig(**kwargs)


def test_a_model_too_large_is_refused_before_an_engine_allocates_it():
    """A ModelConfig is settings only; the parameters are the model's (vaekit.model), whose size
    every engine checks first."""
    from vaekit.engines import build_engine

    huge = ModelConfig(hidden=(60000, 60000, 60000))
    for check in (parameters.check_size, lambda config: build_engine(config, "numpy")):
        with pytest.raises(ConfigError, match="parameters, more than the limit of 500,000,000"):
            check(huge)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"epochs": 0}, "epochs"),
        ({"lr": -1.0}, "lr"),
        ({"lr": float("inf")}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"engine": "jax"}, "engine"),
        ({"binarize": "maybe"}, "binarize"),
        ({"momentum": 1.0}, "momentum"),
        ({"seed": -1}, "seed"),
        ({"data_dir": ""}, "data_dir"),
        ({"data_dir": 3}, "data_dir"),
    ],
)
def test_train_config_rejects_bad_values(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig(**kwargs)


def test_from_dict_rejects_unknown_keys_and_wrong_types():
    with pytest.raises(ConfigError, match="unknown setting"):
        ModelConfig.from_dict({"latent_dim": 2, "layers": 3})
    with pytest.raises(ConfigError, match="JSON object"):
        ModelConfig.from_dict([1, 2])
    with pytest.raises(ConfigError):
        ModelConfig.from_dict({"latent_dim": "20"})


@pytest.mark.parametrize(
    ("shape", "engine", "given", "expected"),
    [
        ((3, 32, 32), "torch", {}, {"arch": "conv", "latent_dim": 50, "learn_sigma": "calibrated"}),
        ((3, 64, 48), "torch", {}, {"arch": "conv", "latent_dim": 50, "learn_sigma": "calibrated"}),
        ((3, 30, 30), "torch", {}, {"arch": "mlp", "latent_dim": 50, "learn_sigma": "calibrated"}),
        ((3, 32, 32), "torch", {"conv_channels": (8, 8, 8, 8, 8, 8)}, {"arch": "mlp"}),
        ((3, 32, 32), "numpy", {}, {"arch": "mlp", "latent_dim": 50, "likelihood": "gaussian"}),
        ((3, 32, 32), "torch", {"likelihood": "bernoulli"}, {"learn_sigma": "fixed"}),
        ((3, 32, 32), "torch", {"likelihood": "gaussian"}, {"learn_sigma": "fixed"}),
        ((3, 32, 32), "torch", {"arch": "mlp", "latent_dim": 8}, {"arch": "mlp", "latent_dim": 8}),
        ((3, 32, 32), "torch", {"learn_sigma": "scalar"}, {"likelihood": "gaussian"}),
        ((1, 28, 28), "torch", {}, {"arch": "mlp", "latent_dim": 20, "likelihood": "bernoulli"}),
        ((3072,), "torch", {}, {"arch": "mlp", "latent_dim": 20, "likelihood": "bernoulli"}),
        ((3, 32), "torch", {}, {"arch": "mlp", "latent_dim": 20, "likelihood": "bernoulli"}),
    ],
)
def test_colour_images_take_their_defaults_where_none_are_named(shape, engine, given, expected):
    """Colour images: a calibrated Gaussian, 50 latents and the conv model where it can be built;
    whatever is named wins, σ goes with the likelihood, and anything else keeps the old defaults."""
    from vaekit.config.defaults import colour_image_defaults

    settings = {**given, **colour_image_defaults(shape, engine, given)}
    config = ModelConfig(input_shape=shape, **settings)
    for name, value in expected.items():
        assert getattr(config, name) == value, name
