"""The decoder's last layer and its Bernoulli likelihood in one product, against the formula."""

import numpy as np
import pytest
import torch

from vaekit.config.settings import ModelConfig
from vaekit.engines import build_engine
from vaekit.engines.numpy import NumpyEngine
from vaekit.engines.torch import bernoulli_head
from vaekit.engines.torch.dense import onednn_matmul_available
from vaekit.engines.torch.model import VAEModule
from vaekit.measure.evaluation import iwae_log_likelihood
from vaekit.model.objectives import bernoulli_nll

pytestmark = pytest.mark.skipif(not onednn_matmul_available(), reason="PyTorch without oneDNN")


def _inputs(kind: str, n: int, d: int, gen: torch.Generator) -> torch.Tensor:
    """n inputs of d values: all 0 or 1, all grey, or as MNIST's (mostly 0, some 1, some grey)."""
    u = torch.rand(n, d, generator=gen)
    if kind == "binary":
        return (u < 0.3).float()
    if kind == "grey":
        return torch.rand(n, d, generator=gen)
    return torch.where(u < 0.7, 0.0, torch.where(u < 0.85, 1.0, torch.rand(n, d, generator=gen)))


def _layer(samples: int, inputs: int, width: int, gen: torch.Generator, scale: float = 1.0):
    h = torch.relu(torch.randn(samples, inputs, 50, generator=gen))
    weight = torch.randn(width, 50, generator=gen) * 0.3 * scale
    bias = torch.randn(width, generator=gen) * scale
    return h, weight, bias


def _reference(h, weight, bias, x) -> np.ndarray:
    """Σ softplus(l) − x·l in float64 from the logits, (S, N)."""
    logits = h.double() @ weight.double().T + bias.double()
    return bernoulli_nll(logits.numpy(), x.double().numpy())


@pytest.mark.parametrize("width", [784, 112, 100, 250])
@pytest.mark.parametrize("kind", ["binary", "grey", "mnist"])
@pytest.mark.parametrize(("samples", "inputs"), [(64, 1), (200, 3)])
def test_the_product_gives_the_formulas_nll(width, kind, samples, inputs):
    """Widths that are, are not, and are less than a multiple of GROUP; every kind of input."""
    gen = torch.Generator().manual_seed(width + samples)
    h, weight, bias = _layer(samples, inputs, width, gen)
    x = _inputs(kind, inputs, width, gen)
    with torch.no_grad():
        got = bernoulli_head.bernoulli_nll(h, weight, bias, x)
    expected = _reference(h, weight, bias, x)
    assert got.shape == (samples, inputs) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=2e-6, atol=2e-4)


@pytest.mark.parametrize("logit", [-30.0, -120.0])
def test_samples_whose_products_underflow_take_the_logits(logit):
    """Every value of x is 1 and its logit ``logit``: σ(l) is 1e-13 (a product of ten is below
    float32's normal numbers) or 0 in float32. Half of the samples are pushed there, half
    stay near 0; both must get −log p(x|z) right (about 784·30 and 784·120 nats)."""
    gen = torch.Generator().manual_seed(0)
    h, weight, bias = _layer(64, 2, 784, gen)
    h[::2] = 0.0  # these samples' logits are the bias alone
    bias = torch.full((784,), logit)
    x = torch.ones(2, 784)
    with torch.no_grad():
        got = bernoulli_head.bernoulli_nll(h, weight, bias, x)
    expected = _reference(h, weight, bias, x)
    assert np.all(np.isfinite(got.numpy()))
    np.testing.assert_allclose(got.numpy(), expected, rtol=2e-6)
    np.testing.assert_allclose(got[::2].numpy(), -784 * logit, rtol=1e-6)


def test_an_inputs_numbers_do_not_depend_on_the_other_inputs():
    gen = torch.Generator().manual_seed(1)
    h, weight, bias = _layer(100, 4, 784, gen)
    x = _inputs("mnist", 4, 784, gen)
    with torch.no_grad():
        together = bernoulli_head.bernoulli_nll(h, weight, bias, x)
        for n in range(4):
            alone = bernoulli_head.bernoulli_nll(h[:, n : n + 1], weight, bias, x[n : n + 1])
            assert torch.equal(alone[:, 0], together[:, n])


def _spy(monkeypatch) -> list:
    calls = []
    original = bernoulli_head.bernoulli_nll

    def spied(*args):
        calls.append(args[0].shape)
        return original(*args)

    monkeypatch.setattr(bernoulli_head, "bernoulli_nll", spied)
    return calls


@pytest.mark.parametrize("samples", [bernoulli_head.MIN_SAMPLES - 1, bernoulli_head.MIN_SAMPLES])
def test_the_model_takes_the_product_for_many_samples_without_gradients(monkeypatch, samples):
    torch.manual_seed(0)
    model = VAEModule(ModelConfig(hidden=(32,), latent_dim=3)).eval()
    x = _inputs("mnist", 2, 784, torch.Generator().manual_seed(2))
    z = torch.randn(samples, 2, 3)
    calls = _spy(monkeypatch)
    with torch.no_grad():
        got = model.reconstruction_nll(x, z)
    assert len(calls) == (samples >= bernoulli_head.MIN_SAMPLES)
    logits = model.decoder(z.reshape(-1, 3)).reshape(samples, 2, 784)
    expected = bernoulli_nll(logits.detach().double().numpy(), x.double().numpy())
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=2e-6, atol=2e-4)
    calls.clear()
    model.reconstruction_nll(x, z).sum().backward()  # with gradients: the logits' kernel
    assert calls == []


def test_a_conditional_models_labels_reach_the_product(monkeypatch):
    """The decoder reads z and the one-hot label: the product by input must get both."""
    torch.manual_seed(0)
    model = VAEModule(ModelConfig(hidden=(32,), latent_dim=3, n_classes=10)).eval()
    x = _inputs("mnist", 2, 784, torch.Generator().manual_seed(3))
    y = torch.tensor([3, 7])
    samples = bernoulli_head.MIN_SAMPLES
    z = torch.randn(samples, 2, 3)
    calls = _spy(monkeypatch)
    with torch.no_grad():
        got = model.reconstruction_nll(x, z, y)
        onehot = model.onehot(y.expand(samples, 2).reshape(-1))
        logits = model.decoder(z.reshape(-1, 3), onehot).reshape(samples, 2, 784)
    assert len(calls) == 1
    expected = bernoulli_nll(logits.double().numpy(), x.double().numpy())
    np.testing.assert_allclose(got.numpy(), expected, rtol=2e-6, atol=2e-4)


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(hidden=(32,), latent_dim=3, likelihood="gaussian"),
        ModelConfig(arch="conv", hidden=(32,), latent_dim=3, conv_channels=(4, 8)),
    ],
    ids=["gaussian", "conv"],
)
def test_other_likelihoods_and_decoders_keep_their_logits(monkeypatch, config):
    model = VAEModule(config).eval()
    calls = _spy(monkeypatch)
    with torch.no_grad():
        model.reconstruction_nll(torch.rand(2, 784), torch.randn(bernoulli_head.MIN_SAMPLES, 2, 3))
    assert calls == []


@pytest.mark.parametrize("binarized", [False, True])
def test_the_torch_engines_bound_agrees_with_the_numpy_engines(mnist_small, binarized, monkeypatch):
    """k = 3000: each image's samples in one call (the product by input) in the torch engine,
    the logits in the NumPy engine's, with the same weights and noise."""
    calls = _spy(monkeypatch)
    config = ModelConfig(hidden=(64,), latent_dim=4)
    reference = NumpyEngine(config, seed=3)
    engine = build_engine(config, seed=0)
    engine.set_weights(reference.get_weights())
    x = mnist_small[1].x[:3].reshape(3, -1)
    if binarized:
        x = (x > 0.5).astype(np.float32)
    got = iwae_log_likelihood(engine, x, 3000, seed=1)
    assert len(calls) == 3
    expected = iwae_log_likelihood(reference, x, 3000, seed=1)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
