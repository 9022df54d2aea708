"""The second stochastic layer of a two-layer VAE (Burda et al., 2015).

The model is p(z2) p(z1|z2) p(x|z1) with the posterior q(z1|x) q(z2|z1). q(z1|x) and p(x|z1) are
the VAE's own encoder and decoder (MLP or conv: :mod:`vaekit.engines.torch.model`); the two
conditionals between the layers are diagonal Gaussians whose mean and log-variance come from
small MLPs:

- q(z2|z1) = N(mu2(z1), diag e^logvar2(z1)): ``top.encoder``, z1 → ``top_hidden`` → (mu2, logvar2);
- p(z1|z2) = N(mu1(z2), diag e^logvar1(z2)): ``top.decoder``, z2 → reversed ``top_hidden`` →
  (mu1, logvar1).

:class:`TopLayer` draws z2 and returns the two log-densities that involve it, log q(z2|z1) and
log p(z1|z2), in nats; :class:`vaekit.engines.torch.model.VAEModule` adds log q(z1|x) and the
prior's log p(z2), so that log w = log p(x|z1) + log p(z1|z2) + log p(z2) − log q(z1|x) − log
q(z2|z1). The marginal p(z1) = ∫ p(z1|z2) p(z2) dz2 has no closed form: :class:`MarginalPrior`
samples it (ancestral sampling) and estimates its quantiles by Monte Carlo.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from vaekit.config.settings import ModelConfig
from vaekit.engines.torch.dense import Dense, HiddenLayers
from vaekit.errors import ConfigError
from vaekit.model import objectives
from vaekit.model.priors import Prior

#: Draws of the Monte Carlo sample :meth:`MarginalPrior.quantile` reads, and its seed.
QUANTILE_DRAWS = 20_000
QUANTILE_SEED = 0


class GaussianLayer(nn.Module):
    """u (…, N, size_in) → hidden layers → (mu, logvar), each (…, N, size_out): the mean and
    log-variance of a diagonal Gaussian conditional."""

    def __init__(
        self, size_in: int, hidden: tuple[int, ...], size_out: int, activation: str
    ) -> None:
        super().__init__()
        sizes = [size_in, *hidden]
        self.hidden = HiddenLayers(sizes, activation)
        self.mu = Dense(sizes[-1], size_out)
        self.logvar = Dense(sizes[-1], size_out)

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lead = u.shape[:-1]
        h = self.hidden(u.reshape(-1, u.shape[-1]))  # one matrix: 2-D inputs multiply fastest
        return self.mu(h).reshape(*lead, -1), self.logvar(h).reshape(*lead, -1)


class TopLayer(nn.Module):
    """q(z2|z1) (``encoder``) and p(z1|z2) (``decoder``); parameter names are
    :func:`vaekit.model.parameters.shapes`' ``top.*``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        k1, k2, hidden = config.latent_dim, config.top_latent_dim, config.top_hidden
        self.encoder = GaussianLayer(k1, hidden, k2, config.activation)
        self.decoder = GaussianLayer(k2, hidden[::-1], k1, config.activation)

    def posterior(self, z1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu2, logvar2) of q(z2|z1), each (…, N, K2)."""
        return self.encoder(z1)

    def forward(
        self, z1: torch.Tensor, eps2: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z2, log q(z2|z1), log p(z1|z2)) for z1 (…, N, K1) and eps2 ~ N(0, I) (…, N, K2).

        z2 = mu2(z1) + e^(logvar2(z1)/2)·eps2; the log-densities are (…, N), nats."""
        mu2, logvar2 = self.encoder(z1)
        z2 = objectives.reparameterize(mu2, logvar2, eps2)
        log_q2 = objectives.gaussian_log_density(eps2, logvar2)
        mu1, logvar1 = self.decoder(z2)
        return z2, log_q2, objectives.gaussian_log_density_at(z1, mu1, logvar1)

    def marginal(self, top_prior: Prior) -> MarginalPrior:
        """p(z1) = ∫ p(z1|z2) p(z2) dz2 with the current weights (a copy: later training steps do
        not change it)."""
        decoder = copy.deepcopy(self.decoder).to(device="cpu", dtype=torch.float64)
        return MarginalPrior(top_prior, decoder.requires_grad_(False))


class MarginalPrior:
    """The prior of z1 in a two-layer model, p(z1) = ∫ p(z1|z2) p(z2) dz2, as sampling, the
    figures and the explorer ask it (:class:`vaekit.model.priors.Prior`'s ``sample`` and
    ``quantile``). It has no closed-form density or KL: the model's ELBO uses the estimate
    log q − log p over both layers instead."""

    def __init__(self, top_prior: Prior, decoder: GaussianLayer) -> None:
        self.top_prior = top_prior
        self.decoder = decoder
        self.latent_dim = decoder.mu.out_features

    def sample(self, n: int, rng: np.random.Generator, labels: None = None) -> np.ndarray:
        """n ancestral draws (n, K1), float64: z2 ~ p(z2) then z1 = mu1(z2) + σ1(z2)·e with
        e ~ N(0, I), all noise from ``rng``. A two-layer model is unconditional: no labels."""
        if labels is not None:
            raise ConfigError("a two-layer model is unconditional: sample it without labels")
        z2 = torch.from_numpy(np.asarray(self.top_prior.sample(n, rng), dtype=np.float64))
        with torch.no_grad():
            mu1, logvar1 = (a.numpy() for a in self.decoder(z2))
        return objectives.reparameterize(mu1, logvar1, rng.standard_normal(mu1.shape))

    def quantile(self, p: np.ndarray) -> np.ndarray:
        """Each coordinate's marginal quantile at p, (*p.shape, K1): the empirical quantile of
        :data:`QUANTILE_DRAWS` draws from a generator seeded with :data:`QUANTILE_SEED` (the same
        answer every call; its error is of order 1/√QUANTILE_DRAWS of the spread)."""
        draws = self.sample(QUANTILE_DRAWS, np.random.default_rng(QUANTILE_SEED))
        return np.quantile(draws, np.asarray(p, dtype=np.float64), axis=0)
