"""Convolutional, conditional, free-bits and IWAE variants of the model (torch engine, and the
NumPy engine where it applies)."""

import math

import numpy as np
import pytest
import torch

from vaekit.config.settings import ModelConfig
from vaekit.engines import build_engine
from vaekit.engines.sampling import sample_prior
from vaekit.errors import ConfigError
from vaekit.model import parameters


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(arch="conv", hidden=(64,), latent_dim=4),
        ModelConfig(arch="conv", hidden=(), latent_dim=3, likelihood="gaussian", sigma=0.7071),
        ModelConfig(
            arch="conv",
            input_shape=(3, 32, 32),
            hidden=(32,),
            latent_dim=5,
            conv_channels=(8, 16),
            likelihood="gaussian",
            learn_sigma="per-dim",
        ),
        ModelConfig(arch="conv", hidden=(32,), latent_dim=2, n_classes=10),
    ],
)
def test_conv_shapes_names_and_training(cfg, rng):
    engine = build_engine(cfg, seed=1, lr=3e-3)
    weights = engine.get_weights()
    assert {k: v.shape for k, v in weights.items()} == parameters.shapes(cfg)
    x = rng.uniform(size=(6, *cfg.input_shape)).astype(np.float32)
    y = np.arange(6) % 10 if cfg.conditional else None
    mu, logvar = engine.encode(x, y)
    assert mu.shape == logvar.shape == (6, cfg.latent_dim)
    assert engine.decode(mu, y).shape == (6, *cfg.input_shape)
    first = engine.train_step(x, 1.0, y).loss
    for _ in range(30):
        last = engine.train_step(x, 1.0, y).loss
    assert last < first


def test_conv_config_errors():
    with pytest.raises(ConfigError, match="divisible by 4"):
        ModelConfig(arch="conv", input_shape=(1, 30, 30))
    with pytest.raises(ConfigError, match="divisible by 8"):
        ModelConfig(arch="conv", input_shape=(1, 28, 28), conv_channels=(8, 8, 8))
    with pytest.raises(ConfigError, match="numpy engine"):
        build_engine(ModelConfig(arch="conv"), "numpy")
    with pytest.raises(ConfigError, match="numpy engine"):
        build_engine(ModelConfig(objective="iwae", iw_samples=5), "numpy")
    with pytest.raises(ConfigError, match="iwae"):
        ModelConfig(iw_samples=5)


@pytest.mark.parametrize("engine_name", ["torch", "numpy"])
def test_conditional_model_needs_labels_and_uses_them(engine_name, rng):
    cfg = ModelConfig(hidden=(16,), latent_dim=2, n_classes=10, prior="class")
    engine = build_engine(cfg, engine_name)
    z = rng.standard_normal((3, 2)).astype(np.float32)
    with pytest.raises(ConfigError, match="conditional"):
        engine.decode(z)
    assert not np.allclose(engine.decode(z, np.array([1, 1, 1])), engine.decode(z, [7, 7, 7]))
    with pytest.raises(ConfigError, match="between 0 and 9"):
        sample_prior(engine, 2, labels=12)
    unconditional = build_engine(ModelConfig(hidden=(16,), latent_dim=2), engine_name)
    with pytest.raises(ConfigError, match="not conditional"):
        sample_prior(unconditional, 2, labels=3)


@pytest.mark.parametrize("engine_name", ["torch", "numpy"])
def test_conditional_samples_look_like_the_asked_digit(engine_name, mnist_small):
    """After brief training, the image decoded at the prior's mode z = 0 for label c is nearest
    to the mean training image of class c."""
    train = mnist_small[0]
    cfg = ModelConfig(hidden=(128,), latent_dim=4, n_classes=10, prior="class")
    engine = build_engine(cfg, engine_name, seed=0)
    order = np.random.default_rng(0).permutation(len(train.x))
    for _ in range(15):
        for start in range(0, len(order), 100):
            index = order[start : start + 100]
            engine.train_step(train.x[index], 1.0, train.y[index])
    means = np.stack([train.x[train.y == c].mean(0).ravel() for c in range(10)])
    decoded = engine.decode(np.zeros((10, 4), np.float32), np.arange(10)).reshape(10, -1)
    nearest = np.argmin(((decoded[:, None] - means[None]) ** 2).sum(2), axis=1)
    assert (nearest == np.arange(10)).sum() >= 8, nearest
    samples = sample_prior(engine, 200, seed=1, labels=np.repeat(np.arange(10), 20))
    nearest = np.argmin(((samples.reshape(200, 1, -1) - means[None]) ** 2).sum(2), axis=1)
    assert (nearest == np.repeat(np.arange(10), 20)).mean() > 0.5  # chance: 0.1


def test_free_bits_hold_each_dimension_at_lambda():
    torch.manual_seed(0)
    cfg = ModelConfig(input_shape=(4,), hidden=(3,), latent_dim=3, free_bits=0.5)
    engine = build_engine(cfg)
    x = np.random.default_rng(0).uniform(size=(8, 4)).astype(np.float32)
    metrics = engine.train_step(x, 1.0)
    # at initialisation the KL of each dimension is far below 0.5 nats: the objective holds 3λ
    assert metrics.loss == pytest.approx(metrics.recon + 3 * 0.5, rel=1e-6)
    assert metrics.kl < 1.5


def test_iwae_objective_matches_evaluation_and_trains(rng):
    cfg = ModelConfig(input_shape=(10,), hidden=(8,), latent_dim=3, objective="iwae", iw_samples=5)
    engine = build_engine(cfg, seed=2)
    x = rng.uniform(size=(4, 10)).astype(np.float32)
    eps = rng.standard_normal((5, 4, 3)).astype(np.float32)
    bound_sum, _, _ = engine.objective(torch.from_numpy(x), torch.from_numpy(eps), None, 1.0)
    log_w = engine.log_weights(x, engine.encode(x), eps)
    peak = log_w.max(0)
    expected = peak + np.log(np.exp(log_w - peak).sum(0)) - math.log(5)
    assert bound_sum.item() == pytest.approx(expected.sum(), rel=1e-5)
    first = engine.train_step(x, 1.0).loss
    for _ in range(50):
        last = engine.train_step(x, 1.0).loss
    assert last < first


def test_iwae_with_one_sample_is_the_elbo_in_expectation(rng):
    cfg = ModelConfig(input_shape=(10,), hidden=(8,), latent_dim=3, objective="iwae")
    engine = build_engine(cfg, seed=2)
    x = torch.from_numpy(rng.uniform(size=(2000, 10)).astype(np.float32))
    eps = torch.from_numpy(rng.standard_normal((1, 2000, 3)).astype(np.float32))
    bound, recon, kl = (total.item() / 2000 for total in engine.objective(x, eps, None, 1.0))
    assert bound == pytest.approx(-(recon + kl), abs=0.05)
