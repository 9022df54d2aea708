"""The loss terms against independent computations: Monte Carlo, naive formulas, by hand."""

import math

import numpy as np
import pytest
import torch

from vaekit.model import objectives


def test_kl_closed_form_matches_monte_carlo(rng):
    mu = rng.normal(size=(3, 4))
    logvar = rng.normal(scale=0.5, size=(3, 4))
    exact = objectives.kl_per_dim(mu, logvar).sum(-1)
    z = mu + np.exp(0.5 * logvar) * rng.standard_normal((200_000, 3, 4))
    log_q = -0.5 * ((z - mu) ** 2 / np.exp(logvar) + logvar + math.log(2 * math.pi)).sum(-1)
    log_p = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
    mc = (log_q - log_p).mean(0)
    np.testing.assert_allclose(exact, mc, atol=0.03)
    assert np.all(exact >= 0)


def test_kl_is_zero_at_the_prior():
    assert objectives.kl_per_dim(np.zeros((2, 5)), np.zeros((2, 5))).sum(-1).tolist() == [0, 0]


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


def test_each_formula_gives_the_same_numbers_on_tensors_as_on_arrays(rng):
    mu, logvar = rng.normal(size=(2, 4, 6))
    eps = rng.normal(size=(3, 4, 6))
    logits, x = rng.normal(size=(4, 9)), rng.uniform(size=(4, 9))
    log_sigma = rng.normal(size=9)
    kl_means = np.abs(rng.normal(size=6))
    t = torch.from_numpy
    pairs = [
        (objectives.kl_per_dim(mu, logvar), objectives.kl_per_dim(t(mu), t(logvar))),
        (
            objectives.gaussian_log_density(eps, logvar),
            objectives.gaussian_log_density(t(eps), t(logvar)),
        ),
        (
            objectives.log_weights(logits[:3, :4], x[:3, :4], eps[0, :3, :4], 0.5),
            objectives.log_weights(t(logits[:3, :4]), t(x[:3, :4]), t(eps[0, :3, :4]), 0.5),
        ),
        (objectives.free_bits(kl_means, 0.7)[0], objectives.free_bits(t(kl_means), 0.7)[0]),
        (objectives.sigmoid(logits), objectives.sigmoid(t(logits))),
        (objectives.bernoulli_nll(logits, x), objectives.bernoulli_nll(t(logits), t(x))),
        (
            objectives.gaussian_nll(logits, x, log_sigma),
            objectives.gaussian_nll(t(logits), t(x), t(log_sigma)),
        ),
        (objectives.gaussian_nll(logits, x, 0.3), objectives.gaussian_nll(t(logits), t(x), 0.3)),
    ]
    for expected, actual in pairs:
        np.testing.assert_allclose(actual.numpy(), expected, rtol=1e-12)
    assert objectives.namespace(t(mu)) is torch and objectives.namespace(mu) is np


def test_bernoulli_on_tensors_is_the_fused_kernel_under_a_gradient_else_products(rng):
    """Training's tensors go through torch's BCE-with-logits kernel (its fused backward), and
    evaluation's (no gradient) through the products: the same numbers either way."""
    logits, x = rng.normal(scale=5, size=(4, 9)), rng.uniform(size=(4, 9))
    bernoulli = objectives.LIKELIHOODS["bernoulli"]
    assert bernoulli.torch_nll is objectives.bernoulli_nll_torch
    expected = objectives.bernoulli_nll(logits, x)
    trained = torch.from_numpy(logits).requires_grad_()
    with_gradient = bernoulli.nll(trained, torch.from_numpy(x))
    assert "BinaryCrossEntropyWithLogits" in with_gradient.grad_fn.next_functions[0][0].name()
    with torch.no_grad():
        evaluated = bernoulli.nll(trained, torch.from_numpy(x))
    assert evaluated.grad_fn is None
    for got in (with_gradient.detach(), evaluated):
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("width", [1, 2, 125, 126, 127, 252, 253, 784, 3072])
@pytest.mark.parametrize("targets", ["binary", "grey"])
def test_bernoulli_by_products_is_the_formula_over_widths_and_extreme_logits(rng, width, targets):
    """Σ softplus(l) − x·l from products of σ(|l|) in groups of 126, against the formula in
    float64: at float32 rounding for float32 logits (huge ones, and a whole row of zeros whose
    groups multiply to exactly 2^−126, included), at float64 rounding for float64 ones."""
    logits = rng.normal(scale=8, size=(3, 5, width))
    logits[0, 0, 0], logits[0, 1, 0], logits[1, 0] = 1000.0, -1000.0, 0.0
    x = rng.uniform(size=(5, width))
    x = (x > 0.5).astype(float) if targets == "binary" else x
    expected = objectives.bernoulli_nll(logits, x)
    single = objectives.bernoulli_nll_by_products(
        torch.tensor(logits, dtype=torch.float32), torch.tensor(x, dtype=torch.float32)
    )
    assert single.dtype == torch.float32 and single.shape == (3, 5)
    scale = np.abs(logits).sum(-1) + width  # the size of the sum's terms, for float32's rounding
    assert np.all(np.abs(single.double().numpy() - expected) <= 1e-6 * scale)
    double = objectives.bernoulli_nll_by_products(torch.from_numpy(logits), torch.from_numpy(x))
    assert np.all(np.abs(double.numpy() - expected) <= 1e-14 * scale)
    assert np.isclose(single[1, 0].item(), width * math.log(2), rtol=1e-6)  # the row of zeros


def test_bernoulli_by_products_takes_bfloat16_logits_in_float32(rng):
    logits = torch.tensor(rng.normal(scale=4, size=(6, 300)), dtype=torch.bfloat16)
    x = torch.tensor(rng.uniform(size=(6, 300)) > 0.5, dtype=torch.float32)
    got = objectives.bernoulli_nll_by_products(logits, x)
    assert got.dtype == torch.float32
    expected = objectives.bernoulli_nll(logits.double().numpy(), x.double().numpy())
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_free_bits_hold_each_dimension_at_lambda_and_mask_the_others():
    kl_means = np.array([0.1, 0.5, 2.0])
    term, mask = objectives.free_bits(kl_means, 0.4)
    assert term == 0.4 + 0.5 + 2.0 and mask.tolist() == [False, True, True]
    term, mask = objectives.free_bits(kl_means, 0.0)
    assert term == kl_means.sum() and mask is None


@pytest.mark.parametrize(
    "name, log_sigma",
    [("bernoulli", None), ("gaussian", 0.3), ("gaussian", [0.2]), ("gaussian", [0.1, -0.2, 0.3])],
)
def test_likelihood_gradients_equal_autograd(name, log_sigma, rng):
    """The NumPy engine's ``grad`` of each likelihood against torch autograd of its ``nll``."""
    likelihood = objectives.LIKELIHOODS[name]
    out, x = rng.normal(size=(5, 3)), rng.uniform(size=(5, 3))
    learned = isinstance(log_sigma, list)
    np_log_sigma = np.array(log_sigma) if learned else log_sigma
    grad_out, grad_log_sigma = likelihood.grad(out.copy(), x, np_log_sigma)
    t_out = torch.tensor(out, requires_grad=True)
    t_log_sigma = (
        torch.tensor(log_sigma, dtype=torch.float64, requires_grad=True) if learned else log_sigma
    )
    likelihood.nll(t_out, torch.from_numpy(x), t_log_sigma).sum().backward()
    np.testing.assert_allclose(grad_out, t_out.grad.numpy(), rtol=1e-10)
    if learned:
        np.testing.assert_allclose(grad_log_sigma, t_log_sigma.grad.numpy(), rtol=1e-10)
    else:
        assert grad_log_sigma is None


def test_likelihood_means_are_probabilities_or_the_output():
    out = np.array([[-800.0, 0.0, 800.0]])
    np.testing.assert_array_equal(objectives.LIKELIHOODS["bernoulli"].mean(out), [[0, 0.5, 1]])
    np.testing.assert_array_equal(objectives.LIKELIHOODS["gaussian"].mean(out), out)


def test_kl_gradient_equals_autograd(rng):
    mu, logvar = rng.normal(size=(2, 4, 3))
    grad_mu, grad_logvar = objectives.kl_per_dim_grad(mu, logvar)
    t_mu, t_logvar = (torch.tensor(a, requires_grad=True) for a in (mu, logvar))
    objectives.kl_per_dim(t_mu, t_logvar).sum().backward()
    np.testing.assert_allclose(grad_mu, t_mu.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(grad_logvar, t_logvar.grad.numpy(), rtol=1e-12)


def test_the_settings_choices_are_the_likelihoods_objectives_implements():
    """A likelihood is named in the settings' choices (what --likelihood takes) and implemented
    by one entry of objectives.LIKELIHOODS: the two lists are the same."""
    from vaekit.config.limits import LIKELIHOODS

    assert tuple(objectives.LIKELIHOODS) == LIKELIHOODS


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_the_reparameterization_draws_from_the_posterior(library, rng):
    """z = mu + e^(logvar/2)·eps has mean mu and variance e^logvar (Monte Carlo, 200,000 draws),
    and a gradient of 1 in mu and ½·e^(logvar/2)·eps in logvar."""
    mu, logvar = np.array([1.5, -2.0, 0.0]), np.array([0.0, -1.0, 2.0])
    eps = rng.standard_normal((200_000, 3))
    if library == "torch":
        mu, logvar, eps = (torch.from_numpy(a) for a in (mu, logvar, eps))
    z = np.asarray(objectives.reparameterize(mu, logvar, eps))
    np.testing.assert_allclose(z.mean(0), np.asarray(mu), atol=0.02)
    np.testing.assert_allclose(z.var(0), np.exp(np.asarray(logvar)), rtol=0.02)
    m, lv = (torch.tensor([0.3, -0.4], dtype=torch.float64, requires_grad=True) for _ in "ml")
    e = torch.tensor([0.7, -1.2], dtype=torch.float64)
    objectives.reparameterize(m, lv, e).sum().backward()
    torch.testing.assert_close(m.grad, torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(lv.grad, 0.5 * torch.exp(0.5 * lv.detach()) * e)


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_a_bernoulli_draw_is_one_with_probability_p(library, rng):
    p = np.linspace(0.0, 1.0, 11, dtype=np.float32)
    u = rng.random((100_000, 11), dtype=np.float32)
    if library == "torch":
        p, u = torch.from_numpy(p), torch.from_numpy(u)
    draw = objectives.bernoulli_draw(p, u)
    assert str(draw.dtype).endswith("float32") and set(np.unique(np.asarray(draw))) <= {0.0, 1.0}
    np.testing.assert_allclose(np.asarray(draw).mean(0), np.asarray(p), atol=0.01)
    assert np.asarray(draw)[:, 0].max() == 0 and np.asarray(draw)[:, -1].min() == 1


@pytest.mark.parametrize("scale", [1e-2, 0.1, 1.0, 10.0])
@pytest.mark.parametrize("shape", [(7, 3), (2, 5, 4)])
def test_the_calibrated_sigma_is_the_one_that_fits_the_batch_best(scale, shape, rng):
    """σ*² = the batch's mean squared error minimises Σ −log N(x; mean, σ²I) over one σ: checked
    against a grid of σ around it, for arrays and tensors alike."""
    x = rng.uniform(size=shape[-2:])
    mean = x + rng.normal(scale=scale, size=shape)
    best = objectives.calibrated_log_sigma(mean, x)
    assert best.shape == (1,)
    np.testing.assert_allclose(best, 0.5 * np.log(((x - mean) ** 2).mean()))
    total = lambda log_sigma: objectives.gaussian_nll(mean, x, log_sigma).sum()  # noqa: E731
    for step in (-0.1, -0.01, 0.01, 0.1):
        assert total(best) < total(best + step)
    as_tensor = objectives.calibrated_log_sigma(torch.from_numpy(mean), torch.from_numpy(x))
    np.testing.assert_allclose(as_tensor.numpy(), best, rtol=1e-12)


def test_a_perfect_reconstruction_keeps_the_calibrated_sigma_finite():
    x = np.ones((3, 4))
    assert objectives.calibrated_log_sigma(x, x)[0] == np.log(objectives.MIN_CALIBRATED_SIGMA)


@pytest.mark.parametrize("stored, best", [(0.0, -2.0), (-3.0, 0.5), (-1.0, -1.0)])
def test_the_stored_calibrated_sigma_is_a_running_mean_of_the_variances(stored, best):
    for to_array in (np.array, lambda v: torch.tensor(v, dtype=torch.float64)):
        got = objectives.running_log_sigma(to_array([stored]), to_array([best]), 0.25)
        variance = 0.75 * np.exp(2 * stored) + 0.25 * np.exp(2 * best)
        np.testing.assert_allclose(np.asarray(got), [0.5 * np.log(variance)], rtol=1e-12)
