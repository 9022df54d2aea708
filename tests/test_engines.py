import math

import numpy as np
import pytest
import torch

from vaekit.config.settings import ModelConfig
from vaekit.engines import build_engine
from vaekit.engines.sampling import sample_prior
from vaekit.errors import ConfigError
from vaekit.model import objectives, parameters
from vaekit.model.priors import StandardNormal

ENGINES = ["torch", "numpy"]


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(hidden=(32, 16), latent_dim=3),
        ModelConfig(
            input_shape=(12,), hidden=(), latent_dim=2, likelihood="gaussian", learn_sigma="scalar"
        ),
        ModelConfig(
            input_shape=(3, 4, 4),
            hidden=(8,),
            decoder_hidden=(5, 6),
            activation="elu",
            likelihood="gaussian",
            learn_sigma="per-dim",
        ),
    ],
)
@pytest.mark.parametrize("engine_name", ENGINES)
def test_weights_have_the_config_names_and_shapes(engine_name, cfg):
    weights = build_engine(cfg, engine_name).get_weights()
    assert {k: v.shape for k, v in weights.items()} == parameters.shapes(cfg)
    assert all(v.dtype == np.float32 for v in weights.values())


@pytest.mark.parametrize("engine_name", ENGINES)
def test_shapes_of_encode_decode_and_elbo_terms(engine_name, rng):
    cfg = ModelConfig(hidden=(32,), latent_dim=4)
    engine = build_engine(cfg, engine_name)
    x = rng.uniform(size=(5, 1, 28, 28)).astype(np.float32)
    mu, logvar = engine.encode(x)
    assert mu.shape == logvar.shape == (5, 4) and mu.dtype == np.float32
    images = engine.decode(mu)
    assert images.shape == (5, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    recon, kl = engine.elbo_terms(x, np.zeros((5, 4), np.float32))
    assert recon.shape == kl.shape == (5,) and recon.dtype == np.float64


@pytest.mark.parametrize("engine_name", ENGINES)
def test_elbo_terms_are_the_bernoulli_nll_and_the_gaussian_kl(engine_name, rng):
    cfg = ModelConfig(input_shape=(10,), hidden=(6,), latent_dim=3, activation="tanh")
    engine = build_engine(cfg, engine_name, seed=5)
    w = {k: v.astype(np.float64) for k, v in engine.get_weights().items()}
    x = rng.uniform(size=(4, 10)).astype(np.float32)
    eps = rng.standard_normal((4, 3)).astype(np.float32)
    h = np.tanh(x @ w["encoder.hidden.0.weight"].T + w["encoder.hidden.0.bias"])
    mu = h @ w["encoder.mu.weight"].T + w["encoder.mu.bias"]
    logvar = h @ w["encoder.logvar.weight"].T + w["encoder.logvar.bias"]
    z = mu + np.exp(0.5 * logvar) * eps
    hd = np.tanh(z @ w["decoder.hidden.0.weight"].T + w["decoder.hidden.0.bias"])
    logits = hd @ w["decoder.out.weight"].T + w["decoder.out.bias"]
    recon, kl = engine.elbo_terms(x, eps)
    p = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(recon, -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(1), rtol=1e-5)
    by_hand = 0.5 * (np.exp(logvar) + mu**2 - 1 - logvar).sum(1)
    np.testing.assert_allclose(kl, by_hand, rtol=1e-4)


@pytest.mark.parametrize("engine_name", ENGINES)
def test_same_seed_same_init_and_steps(engine_name, rng):
    cfg = ModelConfig(hidden=(16,), latent_dim=2)
    x = rng.uniform(size=(8, 1, 28, 28)).astype(np.float32)
    a, b, c = (build_engine(cfg, engine_name, seed=s) for s in (1, 1, 2))
    assert [a.train_step(x, 1.0) for _ in range(3)] == [b.train_step(x, 1.0) for _ in range(3)]
    assert not np.array_equal(
        a.get_weights()["encoder.mu.weight"], c.get_weights()["encoder.mu.weight"]
    )


def test_engine_does_not_touch_global_torch_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    build_engine(ModelConfig(hidden=(8,), latent_dim=2), seed=9)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("engine_name", ENGINES)
def test_training_state_round_trip_continues_identically(engine_name, rng):
    cfg = ModelConfig(hidden=(16,), latent_dim=2)
    x = rng.uniform(size=(8, 1, 28, 28)).astype(np.float32)
    for optimizer in ("adam", "sgd"):
        a = build_engine(cfg, engine_name, seed=1, optimizer=optimizer, momentum=0.9, lr=1e-2)
        for _ in range(2):
            a.train_step(x, 1.0)
        b = build_engine(cfg, engine_name, seed=7, optimizer=optimizer, momentum=0.9, lr=1e-2)
        b.set_weights(a.get_weights())
        b.set_training_state(*a.get_training_state())
        assert a.train_step(x, 0.5) == b.train_step(x, 0.5)
        for k, v in a.get_weights().items():
            np.testing.assert_array_equal(v, b.get_weights()[k])


@pytest.mark.parametrize("engine_name", ENGINES)
def test_non_finite_loss_leaves_weights_unchanged(
    engine_name,
):
    cfg = ModelConfig(input_shape=(4,), hidden=(3,), latent_dim=2)
    engine = build_engine(cfg, engine_name)
    before = engine.get_weights()
    metrics = engine.train_step(np.full((2, 4), np.nan, np.float32), 1.0)
    assert np.isnan(metrics.loss)
    for k, v in engine.get_weights().items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("engine_name", ENGINES)
def test_learned_sigma_is_trained(engine_name, rng):
    cfg = ModelConfig(
        input_shape=(6,),
        hidden=(4,),
        latent_dim=2,
        likelihood="gaussian",
        sigma=1.0,
        learn_sigma="scalar",
    )
    engine = build_engine(cfg, engine_name, lr=0.05)
    x = rng.normal(scale=0.05, size=(64, 6)).astype(np.float32)
    for _ in range(30):
        engine.train_step(x, 1.0)
    assert engine.get_weights()["decoder.log_sigma"][0] < -0.5  # data are far tighter than σ=1


@pytest.mark.parametrize("engine_name", ENGINES)
def test_the_prior_is_the_engines_and_samples_are_decoded_draws_from_it(engine_name):
    engine = build_engine(ModelConfig(hidden=(8,), latent_dim=2), engine_name)
    assert isinstance(engine.prior, StandardNormal) and engine.prior.latent_dim == 2
    z = engine.prior.sample(5, np.random.default_rng(3)).astype(np.float32)
    np.testing.assert_array_equal(sample_prior(engine, 5, seed=3), engine.decode(z))


def test_cuda_without_gpu_is_a_config_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="CUDA"):
        build_engine(ModelConfig(hidden=(8,), latent_dim=2), device="cuda")
    with pytest.raises(ConfigError, match="CPU"):
        build_engine(ModelConfig(hidden=(8,), latent_dim=2), "numpy", device="cuda")


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(hidden=(16,), latent_dim=3),
        ModelConfig(hidden=(16,), latent_dim=3, n_classes=4, prior="class"),
        ModelConfig(input_shape=(6,), hidden=(), latent_dim=2, likelihood="gaussian"),
    ],
)
@pytest.mark.parametrize("engine_name", ENGINES)
def test_log_weights_of_several_latents_per_input(engine_name, cfg, rng):
    """eps of shape (S, N, K) shares each input across its S latents: log w = −recon + log p(z)
    − log q(z|x), with recon the ELBO's at the same eps and the densities written out here."""
    engine = build_engine(cfg, engine_name, seed=1)
    x = rng.uniform(size=(5, *cfg.input_shape)).astype(np.float32)
    y = rng.integers(0, 4, size=5) if cfg.conditional else None
    eps = rng.standard_normal((3, 5, cfg.latent_dim)).astype(np.float32)
    mu, logvar = engine.encode(x, y)
    together = engine.log_weights(x, (mu, logvar), eps, y)
    assert together.shape == (3, 5) and together.dtype == np.float64
    mu64, logvar64, eps64 = (a.astype(np.float64) for a in (mu, logvar, eps))
    z = mu64 + np.exp(0.5 * logvar64) * eps64
    log_p = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
    log_q = -0.5 * ((z - mu64) ** 2 / np.exp(logvar64) + logvar64 + math.log(2 * math.pi)).sum(-1)
    recon = np.stack([engine.elbo_terms(x, eps_s, y)[0] for eps_s in eps])
    np.testing.assert_allclose(together, -recon + log_p - log_q, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_a_calibrated_sigma_is_set_by_each_step_and_evaluation_uses_it(engine_name, arch, rng):
    """Each step moves the stored σ² a tenth of the way to the batch's maximum-likelihood value
    (the untrained decoder's error, about 0.5: log σ ≈ −0.7, where a learned σ would move from 0
    by about the learning rate a step), no optimizer touches it, and the held-out −log p(x|z) is
    the Gaussian's with the stored σ."""
    if arch == "conv" and engine_name == "numpy":
        pytest.skip("the NumPy engine has no conv model")
    shape = (1, 8, 8) if arch == "conv" else (6,)
    cfg = ModelConfig(
        input_shape=shape,
        hidden=(4,),
        latent_dim=2,
        arch=arch,
        conv_channels=(2,),
        likelihood="gaussian",
        learn_sigma="calibrated",
    )
    engine = build_engine(cfg, engine_name, lr=1e-3)
    x = (0.5 + rng.normal(scale=0.05, size=(64, *shape))).astype(np.float32)
    for _ in range(40):
        engine.train_step(x, 1.0)
    stored = engine.get_weights()["decoder.log_sigma"]
    assert stored.shape == (1,) and stored[0] < -0.3
    eps = np.zeros((len(x), cfg.noise_dim), np.float32)
    recon, _ = engine.elbo_terms(x, eps)
    mean = engine.decode(engine.encode(x)[0]).reshape(len(x), -1)
    expected = objectives.gaussian_nll(mean, x.reshape(len(x), -1), stored.astype(np.float64))
    np.testing.assert_allclose(recon, expected, rtol=1e-4)
    for _ in range(3):
        engine.train_step(x, 1.0)
    assert engine.get_weights()["decoder.log_sigma"][0] != stored[0]  # each step sets its own
