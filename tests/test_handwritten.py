"""The hand-written forward and backward passes on torch tensors: the torch engine trains the
models they cover with them instead of autograd, so their gradients and losses must be
autograd's, for every activation, both likelihoods, free bits and a conditional model; the
models they do not cover keep autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaekit.config.settings import ModelConfig
from vaekit.engines.torch.engine import TorchEngine
from vaekit.model import parameters

COVERED = [
    {},
    {"hidden": (24, 16), "decoder_hidden": (20,), "activation": "tanh"},
    {"activation": "elu", "free_bits": 0.05},
    {"activation": "leaky_relu", "n_classes": 3, "prior": "standard"},
    {"activation": "sigmoid", "likelihood": "gaussian", "learn_sigma": "scalar"},
    {"activation": "softplus", "likelihood": "gaussian", "learn_sigma": "per-dim"},
    {"likelihood": "gaussian", "sigma": 0.3},
]


def small(**fields) -> ModelConfig:
    return ModelConfig(**{"input_shape": (1, 6, 5), "hidden": (16,), "latent_dim": 3, **fields})


def gradients(engine: TorchEngine, x, y, eps, beta) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    yb = None if y is None else torch.from_numpy(y)
    values = engine.backward(torch.from_numpy(x), yb, eps, beta, len(x))
    return values.numpy(), {n: p.grad.numpy() for n, p in engine.model.named_parameters()}


@pytest.mark.parametrize("fields", COVERED, ids=lambda f: ",".join(f) or "reference")
@pytest.mark.parametrize("beta", [1.0, 0.4])
def test_handwritten_gradients_and_losses_equal_autograd(fields, beta, rng):
    config = small(**fields)
    by_hand, by_autograd = TorchEngine(config, seed=3), TorchEngine(config, seed=3)
    assert by_hand.handwritten
    by_autograd.handwritten = False
    x = rng.uniform(size=(40, 30)).astype(np.float32)
    y = rng.integers(0, 3, size=40) if config.conditional else None
    eps = torch.from_numpy(rng.normal(size=(40, 3)).astype(np.float32))
    values, grads = gradients(by_hand, x, y, eps, beta)
    expected_values, expected = gradients(by_autograd, x, y, eps, beta)
    np.testing.assert_allclose(values, expected_values, rtol=1e-5)
    assert set(grads) == set(expected) == set(parameters.shapes(config))
    for name, grad in grads.items():
        assert grad.shape == expected[name].shape, name
        scale = np.abs(expected[name]).max()
        np.testing.assert_allclose(grad, expected[name], atol=1e-5 * scale, rtol=0, err_msg=name)


def test_training_by_hand_follows_autograd_for_many_steps(rng):
    """Twenty Adam steps apart: the weights agree to float32 rounding, not just the first step."""
    config = small(activation="tanh", free_bits=0.02)
    by_hand, by_autograd = TorchEngine(config, seed=1), TorchEngine(config, seed=1)
    by_autograd.handwritten = False
    for _ in range(20):
        x = rng.uniform(size=(32, 30)).astype(np.float32)
        a, b = by_hand.train_step(x, 1.0), by_autograd.train_step(x, 1.0)
        assert a.loss == pytest.approx(b.loss, rel=1e-5)
    for name, weight in by_hand.get_weights().items():
        np.testing.assert_allclose(weight, by_autograd.get_weights()[name], atol=1e-5, err_msg=name)


@pytest.mark.parametrize(
    "fields, precision",
    [
        ({"prior": "vamp", "prior_components": 4}, "fp32"),
        ({"prior": "mog", "prior_components": 4}, "fp32"),
        ({"n_classes": 3, "prior": "class"}, "fp32"),
        ({"objective": "iwae", "iw_samples": 3}, "fp32"),
        ({"objective": "tcvae"}, "fp32"),
        ({"flow": "iaf", "flow_steps": 1}, "fp32"),
        ({"top_latent_dim": 2, "top_hidden": (8,)}, "fp32"),
        ({"activation": "gated"}, "fp32"),
        ({"arch": "conv", "input_shape": (1, 8, 8), "conv_channels": (4,)}, "fp32"),
        ({"arch": "conv", "input_shape": (1, 8, 8), "conv_channels": (4,)}, "bf16"),
    ],
)
def test_models_the_handwritten_passes_do_not_cover_keep_autograd(fields, precision):
    config = small(**fields)
    assert not TorchEngine(config, precision=precision).handwritten
