"""Two stochastic layers with convolutional networks between x and z1 (``arch="conv"``,
``top_latent_dim`` > 0): q(z1|x) by stride-2 convolutions and a dense layer, p(x|z1) by their
mirror image, and dense networks between z1 and z2.

The parameters against a count by hand, the training loss and the log-weights against the
negative ELBO assembled by hand from ``torch.nn.functional`` and ``torch.distributions`` (the
VampPrior's pseudo-inputs through the conv encoder and q(z2|z1) included), training on
mnist-small, and the command line and the estimator end to end."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file
from torch.distributions import Bernoulli, Normal

from cli_runner import resume_matches_whole, run_cli, sample_and_evaluate, user_error
from vaekit.api.estimator import VAE
from vaekit.config.settings import ModelConfig
from vaekit.engines import build_engine
from vaekit.measure import evaluation
from vaekit.model import parameters
from vaekit.runs import layout

#: 8×8 images, two convolutions (2 and 3 channels: features (3, 2, 2)), z1 of 4, z2 of 2.
TINY = ModelConfig(
    input_shape=(1, 8, 8),
    arch="conv",
    conv_channels=(2, 3),
    hidden=(5,),
    latent_dim=4,
    top_latent_dim=2,
    top_hidden=(3,),
    prior="vamp",
    prior_components=6,
)
#: The command line's small conv two-layer model of 28×28 digits.
SMALL = ["--arch", "conv", "--conv-channels", "4", "8", "--hidden", "32", "--latent-dim", "8"]
SMALL += ["--top-latent-dim", "4", "--top-hidden", "16", "--prior", "vamp"]
SMALL += ["--prior-components", "20", "--batch-size", "250", "--quiet"]


def test_parameters_are_the_conv_networks_the_dense_top_layer_and_the_pseudo_inputs():
    engine = build_engine(TINY, "torch", seed=0)
    state = {k: tuple(v.shape) for k, v in engine.model.state_dict().items()}
    assert state == parameters.shapes(TINY)
    assert state["encoder.conv.1.weight"] == (3, 2, 4, 4)
    assert state["decoder.deconv.0.weight"] == (3, 2, 4, 4)
    assert state["top.encoder.hidden.0.weight"] == (3, 4)
    assert state["prior.pseudo_inputs"] == (6, 64)
    encoder = (2 * 16 + 2) + (3 * 2 * 16 + 3) + (12 * 5 + 5) + 2 * (5 * 4 + 4)
    decoder = (4 * 5 + 5) + (5 * 12 + 12) + (3 * 2 * 16 + 2) + (2 * 16 + 1)
    top = (4 * 3 + 3) + 2 * (3 * 2 + 2) + (2 * 3 + 3) + 2 * (3 * 4 + 4)
    assert parameters.count(TINY) == encoder + decoder + top + 6 * 64 == 930


def _layer(weights, name: str, h: torch.Tensor, op=F.linear, **strides) -> torch.Tensor:
    """The layer ``name`` of ``weights`` applied to h: dense, or ``op`` a (transposed)
    convolution with its ``stride`` and ``padding``."""
    return op(h, weights[f"{name}.weight"], weights[f"{name}.bias"], **strides)


def _gaussian(weights, prefix: str, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One ReLU hidden layer ``prefix.hidden.0``, then the heads (mu, logvar)."""
    h = F.relu(_layer(weights, f"{prefix}.hidden.0", h))
    return _layer(weights, f"{prefix}.mu", h), _layer(weights, f"{prefix}.logvar", h)


def _conv_encoder(weights, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu1, logvar1): two ReLU stride-2 convolutions of the 8×8 image, then the dense part."""
    h = x.reshape(-1, 1, 8, 8)
    for i in range(2):
        h = F.relu(_layer(weights, f"encoder.conv.{i}", h, F.conv2d, stride=2, padding=1))
    return _gaussian(weights, "encoder", h.flatten(1))


def _conv_decoder_logits(weights, z1: torch.Tensor) -> torch.Tensor:
    """A ReLU hidden layer, the ReLU projection to (3, 2, 2), two transposed convolutions."""
    h = F.relu(_layer(weights, "decoder.hidden.0", z1))
    h = F.relu(_layer(weights, "decoder.project", h)).reshape(-1, 3, 2, 2)
    deconv = {"op": F.conv_transpose2d, "stride": 2, "padding": 1}
    h = F.relu(_layer(weights, "decoder.deconv.0", h, **deconv))
    return _layer(weights, "decoder.deconv.1", h, **deconv).flatten(1)


def _log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)


def negative_elbo_by_hand(weights, x, eps, prior: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(−log p(x|z1), log q(z1|x) + log q(z2|z1) − log p(z1|z2) − log p(z2)) per example, from
    the weights alone: convolutions by ``F.conv2d``, densities by ``torch.distributions``; the
    VampPrior p(z2) = (1/C) Σ_c q(z2|E[z1|u_c]) of the pseudo-inputs u_c clamped to [0, 1]."""
    mu1, logvar1 = _conv_encoder(weights, x)
    z1 = mu1 + torch.exp(0.5 * logvar1) * eps[:, :4]
    mu2, logvar2 = _gaussian(weights, "top.encoder", z1)
    z2 = mu2 + torch.exp(0.5 * logvar2) * eps[:, 4:]
    prior_mu1, prior_logvar1 = _gaussian(weights, "top.decoder", z2)
    if prior == "vamp":
        pseudo_mu1, _ = _conv_encoder(weights, weights["prior.pseudo_inputs"].clamp(0.0, 1.0))
        means, logvars = _gaussian(weights, "top.encoder", pseudo_mu1)
        components = _log_normal(z2[:, None, :], means, logvars)  # (N, C)
        log_p2 = torch.logsumexp(components, dim=1) - math.log(len(means))
    else:
        log_p2 = Normal(0.0, 1.0).log_prob(z2).sum(-1)
    recon = -Bernoulli(logits=_conv_decoder_logits(weights, z1)).log_prob(x).sum(-1)
    kl = (
        _log_normal(z1, mu1, logvar1)
        + _log_normal(z2, mu2, logvar2)
        - _log_normal(z1, prior_mu1, prior_logvar1)
        - log_p2
    )
    return recon, kl


def binary_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, d)) > 0.5).astype(np.float32)


@pytest.mark.parametrize("prior", ["standard", "vamp"])
def test_the_training_loss_is_the_negative_elbo_by_hand(prior):
    config = ModelConfig(**{**TINY.to_dict(), "prior": prior})
    engine = build_engine(config, "torch", seed=4)
    if prior == "vamp":  # pseudo-inputs across [0, 1] and beyond: the clamp matters
        weights = engine.get_weights()
        rng = np.random.default_rng(2)
        weights["prior.pseudo_inputs"] = rng.uniform(-0.5, 1.5, (6, 64)).astype(np.float32)
        engine.set_weights(weights)
    weights = {k: torch.from_numpy(v).double() for k, v in engine.get_weights().items()}
    x = binary_rows(5, 64, seed=1)
    eps = np.random.default_rng(3).standard_normal((5, TINY.noise_dim))
    xt, eps_t = torch.from_numpy(x), torch.from_numpy(eps)
    recon, kl = negative_elbo_by_hand(weights, xt.double(), eps_t, prior)
    # the model in float64: each example's terms
    model = copy.deepcopy(engine.model).double().eval()
    with torch.no_grad():
        got_recon, got_kl = model.elbo_terms(xt.double(), eps_t)
    torch.testing.assert_close(got_recon, recon, rtol=0, atol=1e-10)
    torch.testing.assert_close(got_kl, kl, rtol=0, atol=1e-10)
    # the engine's training step in float32: the batch means, β = 1
    loss, got_mean_recon, got_mean_kl = engine.backward(xt, None, eps_t.float(), 1.0, 5).tolist()
    np.testing.assert_allclose(
        [loss, got_mean_recon, got_mean_kl],
        [float((recon + kl).mean()), float(recon.mean()), float(kl.mean())],
        rtol=1e-5,
    )
    for name, param in engine.model.named_parameters():  # the loss reaches every weight
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_the_log_weights_are_the_elbo_terms_of_each_draw():
    engine = build_engine(TINY, "torch", seed=5)
    weights = {k: torch.from_numpy(v).double() for k, v in engine.get_weights().items()}
    x = binary_rows(3, 64, seed=6)
    eps = np.random.default_rng(7).standard_normal((4, 3, TINY.noise_dim))
    posterior = engine.encode(x)
    log_w = engine.log_weights(x, posterior, eps.astype(np.float32))
    xt = torch.from_numpy(x).double()
    want = np.stack(
        [-sum(negative_elbo_by_hand(weights, xt, torch.from_numpy(e), "vamp")).numpy() for e in eps]
    )
    np.testing.assert_allclose(log_w, want, rtol=1e-5)


def mean_bound(engine, x: np.ndarray) -> float:
    """The mean of L_5 over x with fixed noise, nats."""
    return float(evaluation.iwae_log_likelihood(engine, x, 5, seed=0).mean())


@pytest.mark.parametrize(("prior", "precision"), [("vamp", "fp32"), ("mog", "bf16")])
def test_training_on_mnist_small_raises_the_bound(mnist_small, prior, precision):
    config = ModelConfig(
        arch="conv",
        conv_channels=(4, 8),
        hidden=(32,),
        latent_dim=8,
        top_latent_dim=4,
        top_hidden=(16,),
        prior=prior,
        prior_components=20,
    )
    engine = build_engine(config, "torch", seed=0, lr=3e-3, precision=precision)
    x = mnist_small[0].x[:300].reshape(300, -1)
    before = mean_bound(engine, x[:100])
    for step in range(30):
        rows = slice(100 * (step % 3), 100 * (step % 3 + 1))
        assert np.isfinite(engine.train_step(x[rows], 1.0).loss)
    assert mean_bound(engine, x[:100]) > before + 100.0


# --- the command line and the estimator ---------------------------------------------------------


def train(capsys, data, out, *flags):
    code, _, err = run_cli(capsys, "train", "--data", data, "--out", out, *SMALL, *flags)
    assert code == 0, err


def test_cli_trains_samples_and_evaluates_a_conv_two_layer_model(capsys, tmp_path):
    run = tmp_path / "run"
    train(capsys, "mnist-small", run, "--epochs", "1")
    config = json.loads((run / "config.json").read_text())["model"]
    assert (config["arch"], config["top_latent_dim"], config["prior"]) == ("conv", 4, "vamp")
    assert "top.encoder.mu.weight" in load_file(run / layout.WEIGHTS_FILE)
    sample_and_evaluate(capsys, run, tmp_path / "samples.npy")


def test_cli_resume_of_a_conv_two_layer_model_is_bit_exact(capsys, tmp_path, digits_file):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    train(capsys, digits_file, whole, "--epochs", "2")
    train(capsys, digits_file, cut, "--epochs", "1")
    want = resume_matches_whole(capsys, cut, whole)
    assert "encoder.conv.0.weight" in want and "prior.pseudo_inputs" in want


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--conditional"], "unconditional models"),
        (["--engine", "numpy"], "--engine torch"),
    ],
)
def test_cli_refuses_what_a_conv_two_layer_model_cannot_be_in_one_line(
    capsys, tmp_path, flags, words
):
    line = user_error(
        capsys, "train", "--data", "mnist-small", "--out", tmp_path / "r", "--epochs", "1",
        *SMALL, *flags,
    )  # fmt: skip
    assert words in line


def test_estimator_fits_samples_scores_and_transforms_a_conv_two_layer_model(mnist_small):
    images = (mnist_small[0].x[:400] * 255).astype(np.uint8)
    vae = VAE(
        arch="conv",
        conv_channels=(4, 8),
        hidden=(32,),
        latent_dim=8,
        top_latent_dim=4,
        top_hidden=(16,),
        prior="vamp",
        prior_components=10,
        epochs=1,
        batch_size=100,
    ).fit(images)
    assert (vae.model_config_.arch, vae.model_config_.top_latent_dim) == ("conv", 4)
    assert vae.transform(images[:5]).shape == (5, 8)
    assert vae.sample(3, seed=1).shape == (3, 1, 28, 28)
    scores = vae.score_samples(images[:5], k=4)
    assert scores.shape == (5,) and np.isfinite(scores).all() and (scores < 0).all()
