"""The hand-written NumPy engine: gradients by finite differences, agreement with PyTorch's
autograd, training, determinism and cross-engine checkpoints."""

import numpy as np
import pytest
import torch

from conftest import quick_config
from vaekit.config.limits import POINTWISE_ACTIVATIONS
from vaekit.config.settings import ModelConfig
from vaekit.data.pipeline import TrainingData
from vaekit.engines import build_engine
from vaekit.engines.numpy import NumpyEngine
from vaekit.engines.torch import TorchEngine
from vaekit.model import objectives, parameters
from vaekit.runs import checkpoint, loading
from vaekit.train.start import resume_run, start_run

LIKELIHOODS = [
    {"likelihood": "bernoulli"},
    {"likelihood": "gaussian", "sigma": 0.7},
    {"likelihood": "gaussian", "sigma": 0.7, "learn_sigma": "scalar"},
    {"likelihood": "gaussian", "sigma": 0.7, "learn_sigma": "per-dim"},
]


def tiny(activation="tanh", **kwargs) -> ModelConfig:
    return ModelConfig(
        input_shape=(6,),
        hidden=(5, 4),
        latent_dim=3,
        decoder_hidden=(4,),
        activation=activation,
        **kwargs,
    )


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.linalg.norm(a)) + float(np.linalg.norm(b))  # float64: 1e-300 is not 0
    return float(np.linalg.norm(a - b)) / max(scale, 1e-300)


@pytest.mark.parametrize("activation", POINTWISE_ACTIVATIONS)
@pytest.mark.parametrize("likelihood", LIKELIHOODS, ids=lambda k: "-".join(map(str, k.values())))
def test_gradients_match_central_differences(activation, likelihood, rng):
    cfg = tiny(activation, **likelihood)
    engine = NumpyEngine(cfg, seed=2, dtype=np.float64)
    if "learn_sigma" in likelihood:  # move log σ off its initial value so its gradient is generic
        engine.params["decoder.log_sigma"] += rng.normal(
            scale=0.2, size=parameters.shapes(cfg)["decoder.log_sigma"]
        )
    assert_gradients_match_finite_differences(engine, rng)


def assert_gradients_match_finite_differences(engine, rng, y=None):
    """Central differences (step 1e-6, float64) of the engine's objective vs its backward pass."""
    x = rng.uniform(size=(7, engine.config.input_dim))
    eps = rng.standard_normal((7, engine.config.latent_dim))
    beta = 0.7

    def loss() -> float:
        return engine.loss_and_grads(x, eps, beta, y)[0]

    objective, recon, kl, grads = engine.loss_and_grads(x, eps, beta, y)
    if not engine.config.free_bits:
        assert objective == pytest.approx(float(np.mean(recon + beta * kl)))
    assert set(grads) == set(parameters.shapes(engine.config))
    step = 1e-6
    for name, param in engine.params.items():
        numeric = np.zeros_like(param)
        for i in np.ndindex(param.shape):
            saved = param[i]
            param[i] = saved + step
            up = loss()
            param[i] = saved - step
            down = loss()
            param[i] = saved
            numeric[i] = (up - down) / (2 * step)
        assert rel_error(grads[name], numeric) < 1e-6, name


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_conditional_gradients_match_central_differences(activation, rng):
    engine = NumpyEngine(tiny(activation, n_classes=3, prior="class"), seed=2, dtype=np.float64)
    assert_gradients_match_finite_differences(engine, rng, y=np.array([0, 1, 2, 2, 1, 0, 1]))


def test_free_bits_gradients_match_central_differences(rng):
    plain = NumpyEngine(tiny(), seed=2, dtype=np.float64)
    x = np.random.default_rng(0).uniform(size=(7, 6))
    mu, logvar = plain.encode(x)
    kl_dims = np.sort(0.5 * (np.exp(logvar) + mu**2 - 1 - logvar).mean(axis=0))
    free_bits = (kl_dims[0] + kl_dims[1]) / 2  # one dimension held at λ, two free
    engine = NumpyEngine(tiny(free_bits=float(free_bits)), seed=2, dtype=np.float64)
    assert_gradients_match_finite_differences(engine, np.random.default_rng(0))


VARIANTS = [
    {**likelihood, "activation": activation}
    for likelihood in LIKELIHOODS
    for activation in ("relu", "elu", "softplus")
] + [
    {"n_classes": 10, "prior": "class", "free_bits": 0.2},
    {"n_classes": 4, "prior": "class", "likelihood": "gaussian"},
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda k: "-".join(map(str, k.values())))
def test_loss_and_gradients_equal_torch_autograd(variant, rng):
    cfg = ModelConfig(hidden=(64, 32), latent_dim=8, **variant)
    reference = TorchEngine(cfg, seed=3)
    engine = NumpyEngine(cfg, seed=99)
    engine.set_weights(reference.get_weights())
    x = rng.uniform(size=(16, 784)).astype(np.float32)
    eps = rng.standard_normal((16, 8)).astype(np.float32)
    y = rng.integers(0, cfg.n_classes, size=16) if cfg.conditional else None
    beta = 0.5

    objective, recon, kl, grads = engine.loss_and_grads(x, eps, beta, y)
    t_y = None if y is None else torch.from_numpy(y)
    # the torch engine's training sums, with free bits as its train_step applies them
    recon_sum, kl_sums = reference.objective(torch.from_numpy(x), torch.from_numpy(eps), t_y, beta)
    kl_term, _ = objectives.free_bits(kl_sums / 16, cfg.free_bits)
    t_objective = recon_sum / 16 + beta * kl_term
    t_objective.backward()
    assert objective == pytest.approx(t_objective.item(), rel=1e-5)
    t_recon, t_kl = reference.elbo_terms(x, eps, y)
    np.testing.assert_allclose(recon, t_recon, rtol=1e-5)
    np.testing.assert_allclose(kl, t_kl, rtol=1e-5)
    for name, param in reference.model.named_parameters():
        assert rel_error(grads[name], param.grad.numpy()) < 1e-5, name


def test_training_lowers_the_loss_and_is_bit_for_bit_deterministic(small_data):
    cfg = ModelConfig(hidden=(64,), latent_dim=8)

    def run():
        engine = NumpyEngine(cfg, seed=5)
        losses = []
        for _ in range(3):
            for start in range(0, 1000, 100):
                losses.append(engine.train_step(small_data.train[start : start + 100], 1.0).loss)
        return losses, engine.get_weights()

    (losses, weights), (again, weights2) = run(), run()
    assert losses == again
    for name in weights:
        np.testing.assert_array_equal(weights[name], weights2[name])
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 50


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_optimizers_follow_torch_update_rules(optimizer, rng):
    cfg = tiny("relu")
    reference = TorchEngine(cfg, seed=1, optimizer=optimizer, lr=0.01, momentum=0.9)
    engine = NumpyEngine(cfg, seed=1, optimizer=optimizer, lr=0.01, momentum=0.9)
    engine.set_weights(reference.get_weights())
    x = rng.uniform(size=(8, 6)).astype(np.float32)
    for _ in range(5):
        eps = rng.standard_normal((8, 3)).astype(np.float32)
        grads = engine.loss_and_grads(x, eps, 1.0)[3]
        engine.optimizer.step(engine.params, grads)
        recon_sum, kl_sums = reference.objective(
            torch.from_numpy(x), torch.from_numpy(eps), None, 1
        )
        reference.optimizer.zero_grad()
        ((recon_sum + kl_sums.sum()) / 8).backward()
        reference.optimizer.step()
    for name, value in reference.get_weights().items():
        np.testing.assert_allclose(engine.params[name], value, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("trained_with, loaded_with", [("numpy", "torch"), ("torch", "numpy")])
def test_cross_engine_checkpoint_round_trip(tmp_path, small_data, trained_with, loaded_with):
    cfg = ModelConfig(hidden=(32,), latent_dim=4, likelihood="gaussian", learn_sigma="scalar")
    start_run(
        cfg,
        quick_config(epochs=1, engine=trained_with),
        tmp_path,
        data=small_data,
        progress=False,
        log=lambda line: None,
    )
    original = loading.open_run(tmp_path)
    other = loading.open_run(tmp_path, engine=loaded_with)
    assert (original.name, other.name) == (trained_with, loaded_with)
    z = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    x = small_data.test[:10]
    np.testing.assert_allclose(other.decode(z), original.decode(z), atol=1e-5)
    for a, b in zip(other.encode(x), original.encode(x), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_resume_equals_uninterrupted_bit_for_bit(tmp_path, small_data, small_model, monkeypatch):
    quiet = {"progress": False, "log": lambda line: None}
    config = quick_config(epochs=3, engine="numpy", binarize="dynamic")
    start_run(small_model, config, tmp_path / "whole", data=small_data, **quiet)

    def stop(line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        start_run(small_model, config, tmp_path / "cut", data=small_data, progress=False, log=stop)
    monkeypatch.setattr(TrainingData, "load", classmethod(lambda cls, c, **_: small_data))
    resume_run(tmp_path / "cut", **quiet)
    whole = checkpoint.load_weights(tmp_path / "whole", small_model)
    cut = checkpoint.load_weights(tmp_path / "cut", small_model)
    for name in whole:
        np.testing.assert_array_equal(whole[name], cut[name])


def test_float64_is_available_and_float32_is_the_default():
    cfg = tiny()
    assert all(v.dtype == np.float32 for v in build_engine(cfg, "numpy").get_weights().values())
    engine = NumpyEngine(cfg, dtype=np.float64)
    assert engine.encode(np.zeros((2, 6)))[0].dtype == np.float64
