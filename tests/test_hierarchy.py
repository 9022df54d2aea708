"""Two stochastic layers (Burda et al., 2015): q(z1|x) q(z2|z1), p(z2) p(z1|z2) p(x|z1).

The log-weights against the formula assembled by hand, log p(x) by quadrature against L_k,
gradients into the networks between the layers, the marginal prior p(z1), and the command line
and the estimator end to end."""

from __future__ import annotations

import copy
import json
from statistics import NormalDist

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Normal

from cli_runner import resume_matches_whole, run_cli, user_error
from hierarchy_quadrature import quadrature_log_px
from vaekit.api.estimator import VAE
from vaekit.config.settings import ModelConfig
from vaekit.engines import build_engine
from vaekit.engines.torch import hierarchy
from vaekit.errors import ConfigError
from vaekit.measure import evaluation
from vaekit.model import parameters

TINY = ModelConfig(input_shape=(5,), hidden=(6,), latent_dim=3, top_latent_dim=2, top_hidden=(4,))
#: The command line's small two-layer model.
SMALL = ["--hidden", "32", "--batch-size", "250", "--latent-dims", "8", "4", "--top-hidden", "16"]


def double_model(config: ModelConfig, seed: int = 0):
    """The torch VAE of ``config`` in float64, eval mode."""
    engine = build_engine(config, "torch", seed=seed)
    return copy.deepcopy(engine.model).double().eval()


def binary_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, d)) > 0.5).astype(np.float32)


def test_top_layer_has_the_configured_parameter_names_and_shapes():
    model = double_model(TINY)
    top = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("top.")}
    want = {k: v for k, v in parameters.shapes(TINY).items() if k.startswith("top.")}
    assert top == want and "top.decoder.hidden.0.weight" in top


def test_log_weights_over_both_layers_equal_the_formula_by_hand():
    """log w = log p(x|z1) + log p(z1|z2) + log p(z2) − log q(z1|x) − log q(z2|z1), each term
    from torch.distributions and the networks' outputs."""
    model = double_model(TINY, seed=3)
    x = torch.from_numpy(binary_rows(4, 5)).double()
    eps = torch.randn(7, 4, TINY.noise_dim, generator=torch.Generator().manual_seed(1)).double()
    eps1, eps2 = eps[..., :3], eps[..., 3:]
    with torch.no_grad():
        mu1, logvar1 = model.encoder(x)
        z1 = mu1 + torch.exp(0.5 * logvar1) * eps1
        mu2, logvar2 = model.top.encoder(z1)
        z2 = mu2 + torch.exp(0.5 * logvar2) * eps2
        prior_mu1, prior_logvar1 = model.top.decoder(z2)
        logits = model.decoder(z1.reshape(-1, 3)).reshape(7, 4, 5)
        by_hand = (
            Bernoulli(logits=logits).log_prob(x).sum(-1)
            + Normal(prior_mu1, torch.exp(0.5 * prior_logvar1)).log_prob(z1).sum(-1)
            + Normal(0.0, 1.0).log_prob(z2).sum(-1)
            - Normal(mu1, torch.exp(0.5 * logvar1)).log_prob(z1).sum(-1)
            - Normal(mu2, torch.exp(0.5 * logvar2)).log_prob(z2).sum(-1)
        )
        log_w, recon = model.log_weights(x, eps)
        torch.testing.assert_close(log_w, by_hand, rtol=0, atol=1e-10)
        torch.testing.assert_close(recon, -Bernoulli(logits=logits).log_prob(x).sum(-1))
        # one sample: the ELBO's terms are recon and the estimate log q − log p, summing to −log w
        recon1, kl1 = model.elbo_terms(x, eps[0])
        torch.testing.assert_close(recon1 + kl1, -by_hand[0], rtol=0, atol=1e-10)
    # the engine's (float32) protocol method agrees
    engine = build_engine(TINY, "torch", seed=3)
    posterior = engine.encode(x.float().numpy())
    got = engine.log_weights(x.float().numpy(), posterior, eps.float().numpy())
    np.testing.assert_allclose(got, by_hand.numpy(), rtol=1e-4, atol=1e-4)


def test_iwae_bound_rises_with_k_towards_log_px_by_quadrature():
    config = ModelConfig(
        input_shape=(3,),
        hidden=(4,),
        latent_dim=1,
        top_latent_dim=1,
        top_hidden=(3,),
        activation="tanh",
    )
    engine = build_engine(config, "torch", seed=5, lr=0.05)
    x = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 0]], dtype=np.float32)
    for _ in range(60):  # a posterior that fits, so that L_k gets close for moderate k
        engine.train_step(np.tile(x, (10, 1)), 1.0)
    top_prior = Normal(0.0, 1.0)
    log_px = quadrature_log_px(
        copy.deepcopy(engine.model).double(), x, lambda z2: top_prior.log_prob(z2[:, 0])
    )
    means = []
    for k in (1, 10, 100, 2000):  # 100 seeds: each row draws its own noise from the seed
        bound = np.stack([evaluation.iwae_log_likelihood(engine, x, k, seed=s) for s in range(100)])
        bound = bound.T  # (rows, seeds)
        means.append(bound.mean())
    assert means[0] < log_px.mean()  # E[L_1] = the ELBO ≤ log p(x)
    assert means[-1] - means[0] > 0.02 and np.all(np.diff(means) > -2e-3)  # rises, up to MC noise
    np.testing.assert_allclose(bound.mean(axis=1), log_px, atol=0.01)


def mean_bound(engine, x: np.ndarray) -> float:
    """The mean of L_5 over x with fixed noise, nats."""
    return float(evaluation.iwae_log_likelihood(engine, x, 5, seed=0).mean())


def test_gradients_reach_every_network_and_training_lowers_the_loss():
    x = binary_rows(40, 5, seed=2)
    for objective, k in (("elbo", 1), ("iwae", 3)):
        config = ModelConfig(**{**TINY.to_dict(), "objective": objective, "iw_samples": k})
        engine = build_engine(config, "torch", seed=0, lr=0.02)
        model = engine.model
        eps = torch.randn((k, 40, config.noise_dim) if objective == "iwae" else (40, 5))
        sums = model.training_sums(torch.from_numpy(x), eps, None, 1.0)
        loss = -sums[0] if objective == "iwae" else sums[0] + sums[1].sum()
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, (objective, name)
        before = mean_bound(engine, x)
        for _ in range(20):
            engine.train_step(x, 1.0)
        assert mean_bound(engine, x) > before + 0.1, objective


def test_marginal_prior_samples_ancestrally_and_its_quantiles_match_a_gaussian():
    """With no hidden units and a constant log-variance, p(z1|z2) = N(a·z2 + b, e^c): the marginal
    is N(b, a² + e^c) per coordinate (p(z2) = N(0, 1))."""
    config = ModelConfig(
        input_shape=(4,), hidden=(4,), latent_dim=2, top_latent_dim=1, top_hidden=()
    )
    engine = build_engine(config, "torch", seed=0)
    a, b, c = np.array([1.5, -0.5]), np.array([0.3, -1.0]), np.array([0.2, -1.2])
    weights = engine.get_weights()
    weights.update(
        {
            "top.decoder.mu.weight": a[:, None].astype(np.float32),
            "top.decoder.mu.bias": b.astype(np.float32),
            "top.decoder.logvar.weight": np.zeros((2, 1), np.float32),
            "top.decoder.logvar.bias": c.astype(np.float32),
        }
    )
    engine.set_weights(weights)
    prior = engine.prior
    assert isinstance(prior, hierarchy.MarginalPrior) and prior.latent_dim == 2
    # ancestral: z2 from the generator first, then the noise of z1
    rng = np.random.default_rng(7)
    z2 = rng.standard_normal((5, 1))
    want = a * z2 + b + np.exp(0.5 * c) * rng.standard_normal((5, 2))
    np.testing.assert_allclose(prior.sample(5, np.random.default_rng(7)), want, rtol=1e-6)
    p = np.array([[0.05, 0.5], [0.8, 0.95]])
    q = prior.quantile(p)
    sd = np.sqrt(a**2 + np.exp(c))
    exact = np.array(
        [[NormalDist(m, s).inv_cdf(v) for m, s in zip(b, sd, strict=True)] for v in p.ravel()]
    )
    assert q.shape == (2, 2, 2)
    np.testing.assert_allclose(q, exact.reshape(2, 2, 2), atol=0.04 * sd.max())
    np.testing.assert_array_equal(prior.quantile(p), q)  # the same seeded sample every call
    with pytest.raises(ConfigError, match="unconditional"):
        prior.sample(2, rng, labels=np.zeros(2, int))


def test_the_prior_snapshot_keeps_the_weights_it_was_taken_with():
    engine = build_engine(TINY, "torch", seed=0, lr=0.05)
    snapshot = engine.prior
    before = snapshot.sample(3, np.random.default_rng(0))
    for _ in range(3):
        engine.train_step(binary_rows(20, 5), 1.0)
    np.testing.assert_array_equal(snapshot.sample(3, np.random.default_rng(0)), before)
    assert not np.allclose(engine.prior.sample(3, np.random.default_rng(0)), before)


# --- the command line and the estimator ---------------------------------------------------------


def train(capsys, data, out, *flags):
    argv = ["train", "--data", data, "--out", out, "--quiet", *SMALL, *flags]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err


@pytest.fixture(scope="module")
def two_layer_run(tmp_path_factory):
    """A one-epoch two-layer mnist-small run made through the CLI."""
    from vaekit.cli import main

    out = tmp_path_factory.mktemp("hierarchy") / "run"
    argv = ["train", "--data", "mnist-small", "--out", str(out), "--epochs", "1", "--quiet"]
    assert main([*argv, *SMALL]) == 0
    return out


def test_cli_trains_samples_evaluates_and_draws_a_two_layer_model(two_layer_run, capsys, tmp_path):
    config = json.loads((two_layer_run / "config.json").read_text())["model"]
    assert config["latent_dim"] == 8 and config["top_latent_dim"] == 4
    assert config["top_hidden"] == [16]
    npy = tmp_path / "s.npy"
    code, _, err = run_cli(capsys, "sample", two_layer_run, "-n", "6", "--npy", npy)
    assert code == 0, err
    assert np.load(npy).shape == (6, 1, 28, 28)
    code, out, err = run_cli(capsys, "evaluate", two_layer_run, "--iw-samples", "10", "--json")
    assert code == 0, err
    result = json.loads(out)
    elbo, log_px = result["elbo"], -result["nll"]
    assert np.isfinite(elbo) and np.isfinite(log_px) and log_px > elbo - 1.0  # L_10 ≳ the ELBO
    for argv in (
        ["manifold", two_layer_run, "-n", "6"],
        ["manifold", two_layer_run, "--dims", "0", "3", "-n", "6"],
        ["scatter", two_layer_run, "--max-points", "300"],
        ["interpolate", two_layer_run, "--pairs", "2"],
        ["reconstruct", two_layer_run, "-n", "4"],
        ["curves", two_layer_run],
    ):
        out = tmp_path / f"{argv[0]}{len(argv)}.png"
        code, _, err = run_cli(capsys, *argv, "--out", out)
        assert code == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", (argv, err)


def test_cli_resume_of_a_two_layer_model_is_bit_exact(capsys, tmp_path, digits_file):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    train(capsys, digits_file, whole, "--epochs", "2")
    train(capsys, digits_file, cut, "--epochs", "1")
    want = resume_matches_whole(capsys, cut, whole)
    assert any(name.startswith("top.") for name in want)


def test_cli_trains_a_two_layer_model_by_the_iwae_bound(capsys, tmp_path, digits_file):
    run = tmp_path / "iwae"
    train(capsys, digits_file, run, "--epochs", "1", "--objective", "iwae", "--k", "3")
    config = json.loads((run / "config.json").read_text())["model"]
    assert config["objective"] == "iwae" and config["iw_samples"] == 3
    code, out, err = run_cli(capsys, "evaluate", run, "--iw-samples", "5", "--json")
    assert code == 0 and np.isfinite(json.loads(out)["nll"]), err


def test_the_numpy_engine_refuses_two_layers_in_one_line(capsys, tmp_path):
    line = user_error(
        capsys, "train", "--data", "mnist-small", "--out", tmp_path / "r", "--epochs", "1",
        *SMALL, "--engine", "numpy",
    )  # fmt: skip
    assert "second stochastic layer" in line and "--engine torch" in line


def test_estimator_fits_samples_scores_and_transforms_a_two_layer_model(mnist_small):
    images = (mnist_small[0].x[:600] * 255).astype(np.uint8)
    vae = VAE(
        hidden=(32,), latent_dim=8, top_latent_dim=4, top_hidden=(16,), epochs=1, batch_size=100
    ).fit(images)
    assert vae.model_config_.top_latent_dim == 4
    assert vae.transform(images[:5]).shape == (5, 8)
    assert vae.sample(3, seed=1).shape == (3, 1, 28, 28)
    np.testing.assert_array_equal(vae.sample(3, seed=1), vae.sample(3, seed=1))
    scores = vae.score_samples(images[:5], k=4)
    assert scores.shape == (5,) and np.isfinite(scores).all() and (scores < 0).all()
