"""The two-layer model with a VampPrior over its top layer, trained by the IWAE bound.

p(z2) is the VampPrior (1/C) Σ_c q(z2 | E[z1|u_c]) of the pseudo-inputs u_c, so the bound's log
weights are log p(x|z1) + log p(z1|z2) + log p(z2) − log q(z1|x) − log q(z2|z1) with that
mixture: checked against the networks' outputs assembled by hand, the engine's loss against the
bound from them, k = 1 against the ELBO with the same noise, L_k against log p(x) by quadrature,
and a model of 1000 pseudo-inputs through the command line and the estimator."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Normal

from cli_runner import resume_matches_whole, run_cli, sample_and_evaluate
from hierarchy_quadrature import quadrature_log_px
from vaekit.api.estimator import VAE
from vaekit.config.settings import ModelConfig
from vaekit.engines import build_engine
from vaekit.measure import evaluation
from vaekit.runs import config_file
from vaekit.runs.metrics import read_metrics

TINY = dict(
    input_shape=(5,), hidden=(6,), latent_dim=3, top_latent_dim=2, top_hidden=(4,),
    prior="vamp", prior_components=4,
)  # fmt: skip
K = 7
#: The command line's small two-layer VampPrior model of 1000 pseudo-inputs, trained by L_3.
SMALL_IWAE = [
    "--hidden", "32", "--latent-dims", "8", "4", "--top-hidden", "16", "--prior", "vamp",
    "--prior-components", "1000", "--objective", "iwae", "--k", "3", "--batch-size", "100",
]  # fmt: skip


def engine_and_double_model(config: ModelConfig, seed: int = 0):
    """The torch engine of ``config`` with pseudo-inputs spread over [−0.5, 1.5] (so that the
    clamp to [0, 1] of a Bernoulli model's pseudo-inputs matters), and its model in float64."""
    engine = build_engine(config, "torch", seed=seed)
    with torch.no_grad():
        u = engine.model.prior.pseudo_inputs
        u.copy_(torch.rand(u.shape, generator=torch.Generator().manual_seed(seed)) * 2 - 0.5)
    return engine, copy.deepcopy(engine.model).double().eval()


def vamp_log_density(model, z2: torch.Tensor) -> torch.Tensor:
    """log p(z2) = log (1/C) Σ_c N(z2; m_c, diag e^lv_c), (m_c, lv_c) = q(z2 | E[z1|u_c]) with u_c
    the pseudo-inputs clamped to [0, 1], from torch.distributions."""
    u = model.prior.pseudo_inputs.clamp(0.0, 1.0)
    m, lv = model.top.encoder(model.encoder(u)[0])  # (C, K2) each
    per_component = Normal(m, torch.exp(0.5 * lv)).log_prob(z2[..., None, :]).sum(-1)
    return torch.logsumexp(per_component, dim=-1) - math.log(len(u))


def log_weights_by_hand(model, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(log w, −log p(x|z1)), each (S, N), from the networks' outputs, each density from
    torch.distributions."""
    k1 = model.config.latent_dim
    eps1, eps2 = eps[..., :k1], eps[..., k1:]
    mu1, logvar1 = model.encoder(x)
    z1 = mu1 + torch.exp(0.5 * logvar1) * eps1
    mu2, logvar2 = model.top.encoder(z1)
    z2 = mu2 + torch.exp(0.5 * logvar2) * eps2
    prior_mu1, prior_logvar1 = model.top.decoder(z2)
    logits = model.decoder(z1.reshape(-1, k1)).reshape(*z1.shape[:-1], -1)
    log_px = Bernoulli(logits=logits).log_prob(x).sum(-1)
    log_w = (
        log_px
        + Normal(prior_mu1, torch.exp(0.5 * prior_logvar1)).log_prob(z1).sum(-1)
        + vamp_log_density(model, z2)
        - Normal(mu1, torch.exp(0.5 * logvar1)).log_prob(z1).sum(-1)
        - Normal(mu2, torch.exp(0.5 * logvar2)).log_prob(z2).sum(-1)
    )
    return log_w, -log_px


def binary_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, d)) > 0.5).astype(np.float32)


@pytest.mark.parametrize("activation", ["relu", "gated"])
def test_the_iwae_bound_over_both_layers_and_the_vamp_prior_equals_the_formula(activation):
    config = ModelConfig(**TINY, activation=activation, objective="iwae", iw_samples=K)
    engine, model = engine_and_double_model(config, seed=3)
    x = torch.from_numpy(binary_rows(4, 5)).double()
    eps = torch.randn(K, 4, config.noise_dim, generator=torch.Generator().manual_seed(1)).double()
    with torch.no_grad():
        by_hand, recon_by_hand = log_weights_by_hand(model, x, eps)
        bound = torch.logsumexp(by_hand, dim=0) - math.log(K)  # L_k of each row, (N,)
        log_w, _ = model.log_weights(x, eps)
        torch.testing.assert_close(log_w, by_hand, rtol=0, atol=1e-10)
        bound_sum, _, _ = model.training_sums(x, eps, None, 1.0)
        torch.testing.assert_close(bound_sum, bound.sum(), rtol=0, atol=1e-10)
    # the engine's training loss (float32) is −mean L_k, its recon the mean −log p(x|z1)
    loss, recon, _ = engine.backward(x.float(), None, eps.float(), 1.0, 4).tolist()
    assert loss == pytest.approx(-float(bound.mean()), rel=1e-5)
    assert recon == pytest.approx(float(recon_by_hand.mean()), rel=1e-5)


def test_iwae_with_one_sample_is_the_elbo_with_the_same_noise():
    """L_1 = log w of the one sample = −(recon + log q − log p): the same loss and gradients."""
    x = torch.from_numpy(binary_rows(6, 5, seed=2))
    eps = torch.randn(1, 6, 5, generator=torch.Generator().manual_seed(4))
    iwae = build_engine(ModelConfig(**TINY, objective="iwae", iw_samples=1), "torch", seed=0)
    elbo = build_engine(ModelConfig(**TINY), "torch", seed=0)
    for name, weight in iwae.get_weights().items():
        np.testing.assert_array_equal(elbo.get_weights()[name], weight, err_msg=name)
    got = iwae.backward(x, None, eps, 1.0, 6)
    want = elbo.backward(x, None, eps[0], 1.0, 6)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)
    elbo_grads = dict(elbo.model.named_parameters())
    for name, param in iwae.model.named_parameters():
        torch.testing.assert_close(param.grad, elbo_grads[name].grad, rtol=1e-5, atol=1e-6)


def test_the_bound_rises_from_the_elbo_to_log_px_by_quadrature():
    config = ModelConfig(
        input_shape=(3,), hidden=(4,), latent_dim=1, top_latent_dim=1, top_hidden=(3,),
        prior="vamp", prior_components=3, objective="iwae", iw_samples=5,
    )  # fmt: skip
    engine = build_engine(config, "torch", seed=5, lr=0.05)
    x = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 0]], dtype=np.float32)
    for _ in range(60):  # a posterior that fits, so that L_k gets close for moderate k
        engine.train_step(np.tile(x, (10, 1)), 1.0)
    model = copy.deepcopy(engine.model).double().eval()
    log_px = quadrature_log_px(model, x, lambda z2: vamp_log_density(model, z2))
    # 100 seeds, each row drawing its own noise from the seed: the mean of L_1000 has a standard
    # error of about 0.001 nats, L_1's about 0.03
    elbo, bound = (
        np.stack([evaluation.iwae_log_likelihood(engine, x, k, seed=s) for s in range(100)])
        for k in (1, 1000)
    )
    assert elbo.mean() < log_px.mean() - 0.02  # E[L_1] = the ELBO < log p(x)
    np.testing.assert_allclose(bound.mean(axis=0), log_px, atol=0.005)  # L_k → log p(x)


def test_cli_trains_samples_evaluates_and_resumes_1000_pseudo_inputs_by_iwae(capsys, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    train = ["train", "--data", "mnist-small", "--quiet", *SMALL_IWAE]
    assert run_cli(capsys, *train, "--epochs", "2", "--out", whole)[0] == 0
    assert run_cli(capsys, *train, "--epochs", "1", "--out", cut)[0] == 0
    weights = resume_matches_whole(capsys, cut, whole)
    config, _, _ = config_file.read_config(cut)
    assert (config.prior_components, config.objective, config.iw_samples) == (1000, "iwae", 3)
    assert weights["prior.pseudo_inputs"].shape == (1000, 784)
    losses = [r["loss"] for r in read_metrics(whole)]
    assert losses[1] < losses[0]
    result = sample_and_evaluate(capsys, cut, tmp_path / "s.npy")
    assert result["kl_per_dim"] == "n/a"
    code, out, err = run_cli(capsys, "evaluate", cut, "--iw-samples", "50", "--json", "--quiet")
    assert code == 0 and json.loads(out)["nll"] <= result["nll"] + 0.5, err  # L_50 ≥ L_10 ± noise


def test_estimator_fits_samples_and_scores_a_two_layer_vamp_model_by_iwae(mnist_small):
    images = (mnist_small[0].x[:600] * 255).astype(np.uint8)
    vae = VAE(
        hidden=(32,), latent_dim=8, top_latent_dim=4, top_hidden=(16,), prior="vamp",
        prior_components=1000, objective="iwae", iw_samples=3, epochs=1, batch_size=100,
    ).fit(images)  # fmt: skip
    config = vae.model_config_
    assert (config.prior, config.top_latent_dim, config.objective) == ("vamp", 4, "iwae")
    assert vae.transform(images[:5]).shape == (5, 8)
    np.testing.assert_array_equal(vae.sample(3, seed=1), vae.sample(3, seed=1))
    scores = vae.score_samples(images[:5], k=4)
    assert scores.shape == (5,) and np.isfinite(scores).all() and (scores < 0).all()
