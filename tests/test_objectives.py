"""The loss terms against independent computations: Monte Carlo, naive formulas, by hand."""

import math

import numpy as np
import torch

from vaekit import objectives


def test_kl_closed_form_matches_monte_carlo(rng):
    mu = rng.normal(size=(3, 4))
    logvar = rng.normal(scale=0.5, size=(3, 4))
    exact = objectives.kl_standard_normal(mu, logvar)
    z = mu + np.exp(0.5 * logvar) * rng.standard_normal((200_000, 3, 4))
    log_q = -0.5 * ((z - mu) ** 2 / np.exp(logvar) + logvar + math.log(2 * math.pi)).sum(-1)
    log_p = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
    mc = (log_q - log_p).mean(0)
    np.testing.assert_allclose(exact, mc, atol=0.03)
    assert np.all(exact >= 0)


def test_kl_is_zero_at_the_prior():
    assert objectives.kl_standard_normal(np.zeros((2, 5)), np.zeros((2, 5))).tolist() == [0, 0]


def test_bernoulli_nll_equals_naive_formula_where_finite(rng):
    logits = rng.normal(scale=4, size=(5, 30))
    x = rng.uniform(size=(5, 30))  # grey levels are allowed targets
    p = 1 / (1 + np.exp(-logits))
    naive = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(1)
    np.testing.assert_allclose(objectives.bernoulli_nll(logits, x), naive, rtol=1e-10)


def test_bernoulli_nll_is_stable_for_huge_logits():
    logits = np.array([[1000.0, -1000.0]])
    assert objectives.bernoulli_nll(logits, np.array([[1.0, 0.0]]))[0] == 0.0
    np.testing.assert_allclose(objectives.bernoulli_nll(logits, np.array([[0.0, 1.0]])), [2000.0])


def test_gaussian_nll_by_hand():
    mean = np.array([[0.0, 1.0]])
    x = np.array([[1.0, 1.0]])
    sigma = 2.0
    by_hand = (1.0 / (2 * 4.0)) + 2 * (math.log(2.0) + 0.5 * math.log(2 * math.pi))
    np.testing.assert_allclose(objectives.gaussian_nll(mean, x, math.log(sigma)), [by_hand])
    per_dim = objectives.gaussian_nll(mean, x, np.log(np.array([2.0, 2.0])))
    np.testing.assert_allclose(per_dim, [by_hand])


def test_torch_versions_agree_with_numpy(rng):
    mu, logvar = rng.normal(size=(2, 4, 6))
    logits, x = rng.normal(size=(4, 9)), rng.uniform(size=(4, 9))
    log_sigma = rng.normal(size=9)
    t = torch.from_numpy
    pairs = [
        (
            objectives.kl_standard_normal(mu, logvar),
            objectives.kl_standard_normal_torch(t(mu), t(logvar)),
        ),
        (objectives.bernoulli_nll(logits, x), objectives.bernoulli_nll_torch(t(logits), t(x))),
        (
            objectives.gaussian_nll(logits, x, log_sigma),
            objectives.gaussian_nll_torch(t(logits), t(x), t(log_sigma)),
        ),
        (
            objectives.gaussian_nll(logits, x, 0.3),
            objectives.gaussian_nll_torch(t(logits), t(x), 0.3),
        ),
    ]
    for expected, actual in pairs:
        np.testing.assert_allclose(actual.numpy(), expected, rtol=1e-12)
