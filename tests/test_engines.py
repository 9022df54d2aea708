import numpy as np
import pytest
import torch

from vaekit import objectives
from vaekit.config import ModelConfig
from vaekit.engines import build_engine
from vaekit.engines.torch import VAE
from vaekit.errors import ConfigError
from vaekit.evaluation import elbo_terms

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
    assert {k: v.shape for k, v in weights.items()} == cfg.parameter_shapes
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
    recon, kl = elbo_terms(engine, x, np.zeros((5, 4), np.float32))
    assert recon.shape == kl.shape == (5,) and recon.dtype == np.float64


@pytest.mark.parametrize("engine_name", ENGINES)
def test_elbo_terms_are_the_objectives_formulas(engine_name, rng):
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
    recon, kl = elbo_terms(engine, x, eps)
    np.testing.assert_allclose(recon, objectives.bernoulli_nll(logits, x), rtol=1e-5)
    np.testing.assert_allclose(kl, objectives.kl_standard_normal(mu, logvar), rtol=1e-4)


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


def test_module_sample_and_reconstruct_shapes():
    model = VAE(ModelConfig(hidden=(8,), latent_dim=2))
    g = torch.Generator().manual_seed(0)
    assert model.sample(5, g).shape == (5, 784)
    assert model.reconstruct(torch.rand(3, 784), g).shape == (3, 784)
    assert model(torch.rand(3, 784), torch.zeros(3, 2)).shape == (3,)


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
        ModelConfig(hidden=(16,), latent_dim=3, n_classes=4),
        ModelConfig(input_shape=(6,), hidden=(), latent_dim=2, likelihood="gaussian"),
    ],
)
@pytest.mark.parametrize("engine_name", ENGINES)
def test_reconstruction_nll_of_several_latents_per_input(engine_name, cfg, rng):
    """z of shape (S, N, K) shares each input across its S latents: the same numbers as S calls
    with one latent per input."""
    engine = build_engine(cfg, engine_name, seed=1)
    x = rng.uniform(size=(5, *cfg.input_shape)).astype(np.float32)
    y = rng.integers(0, 4, size=5) if cfg.conditional else None
    z = rng.standard_normal((3, 5, cfg.latent_dim)).astype(np.float32)
    together = engine.reconstruction_nll(x, z, y)
    assert together.shape == (3, 5) and together.dtype == np.float64
    one_by_one = np.stack([engine.reconstruction_nll(x, z_s, y) for z_s in z])
    np.testing.assert_allclose(together, one_by_one, rtol=1e-6)
