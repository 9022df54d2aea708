"""The prior object: its density, draws, quantiles and closed-form KL against independent
computations, and the parts of vaekit that ask it (sampling, figures) instead of assuming
N(0, I)."""

import math

import numpy as np
import pytest
import torch

from vaekit.config.settings import ModelConfig
from vaekit.draw import figures, geometry
from vaekit.draw.gallery import draw_label_grid
from vaekit.engines import build_engine
from vaekit.engines.sampling import sample_prior
from vaekit.model import objectives
from vaekit.model.priors import StandardNormal, for_config


def test_standard_normal_log_prob_is_the_gaussian_density(rng):
    z = rng.normal(size=(3, 5, 4))
    by_hand = np.log(np.prod(np.exp(-(z**2) / 2) / math.sqrt(2 * math.pi), axis=-1))
    prior = StandardNormal(4)
    np.testing.assert_allclose(prior.log_prob(z), by_hand, rtol=1e-12)
    np.testing.assert_allclose(prior.log_prob(torch.from_numpy(z)).numpy(), by_hand, rtol=1e-12)


def test_closed_form_kl_is_the_monte_carlo_mean_of_log_q_minus_log_p(rng):
    prior = StandardNormal(3)
    mu, logvar = rng.normal(size=(2, 2, 3))
    eps = rng.standard_normal((200_000, 2, 3))
    z = mu + np.exp(0.5 * logvar) * eps
    mc = (objectives.gaussian_log_density(eps, logvar) - prior.log_prob(z)).mean(0)
    np.testing.assert_allclose(prior.kl(mu, logvar), mc, atol=0.02)
    np.testing.assert_allclose(prior.kl(mu, logvar), prior.kl_per_dim(mu, logvar).sum(-1))


def test_draws_are_seeded_standard_normal_and_quantiles_invert_the_cdf():
    prior = StandardNormal(2)
    draws = prior.sample(100_000, np.random.default_rng(0))
    assert draws.shape == (100_000, 2) and draws.dtype == np.float64
    np.testing.assert_allclose(draws.mean(0), 0, atol=0.02)
    np.testing.assert_allclose(draws.std(0), 1, atol=0.02)
    np.testing.assert_array_equal(draws, prior.sample(100_000, np.random.default_rng(0)))
    q = prior.quantile(np.array([0.025, 0.5, 0.975]))
    assert q.shape == (3, 2)  # (*p.shape, K): each coordinate's marginal
    np.testing.assert_allclose(q, [[-1.959964] * 2, [0.0] * 2, [1.959964] * 2], atol=1e-6)
    assert np.mean(draws[:, 0] < q[2, 0]) == pytest.approx(0.975, abs=0.003)


def test_a_model_config_gets_the_standard_normal_of_its_latent_dim():
    prior = for_config(ModelConfig(latent_dim=7))
    assert isinstance(prior, StandardNormal) and prior.latent_dim == 7


class Shifted(StandardNormal):
    """N(c, I): a prior other than N(0, I), to see who asks the engine's prior."""

    def __init__(self, latent_dim: int, centre: float) -> None:
        super().__init__(latent_dim)
        self.centre = centre

    def sample(self, n, rng, labels=None):
        return super().sample(n, rng) + self.centre

    def quantile(self, p):
        return super().quantile(p) + self.centre


@pytest.mark.parametrize("engine_name", ["torch", "numpy"])
def test_sampling_and_figures_draw_from_the_engines_prior(engine_name, tmp_path, monkeypatch):
    engine = build_engine(
        ModelConfig(hidden=(8,), latent_dim=2, n_classes=3, prior="standard"), engine_name
    )
    monkeypatch.setattr(type(engine), "prior", Shifted(2, 5.0))
    z = (np.random.default_rng(4).standard_normal((6, 2)) + 5.0).astype(np.float32)
    labels = np.arange(6) % 3
    np.testing.assert_array_equal(sample_prior(engine, 6, seed=4), engine.decode(z, labels))
    decoded = []
    engine.decode = lambda z, y=None: decoded.append(z) or np.zeros((len(z), 1, 28, 28))
    draw_label_grid(engine, tmp_path / "grid.png", per_class=2, seed=4)
    np.testing.assert_array_equal(decoded[-1], np.tile(z[:2], (3, 1)))
    engine.config = ModelConfig(hidden=(8,), latent_dim=2)
    figures.save_manifold(engine, tmp_path / "manifold.png", n=3)
    grid = decoded[-1].reshape(3, 3, 2)
    np.testing.assert_allclose(grid[0, :, 0], geometry.manifold_quantiles(3, engine.prior)[:, 0])
    assert grid[1, 1, 0] == pytest.approx(5.0)  # the centre of the grid is the prior's median
