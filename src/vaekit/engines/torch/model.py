"""The VAE as a ``torch.nn.Module``: MLP encoder to (mu, logvar), MLP decoder to logits or a mean.

Parameter names equal :attr:`vaekit.config.ModelConfig.parameter_shapes`, so the state dict is a
vaekit checkpoint. The loss terms are :mod:`vaekit.objectives`' formulas, in nats per example.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from vaekit import objectives
from vaekit.config import ModelConfig

ACTIVATIONS = {
    "relu": F.relu,
    "elu": F.elu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "leaky_relu": F.leaky_relu,  # negative slope 0.01
}


def _stack(sizes: list[int]) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(sizes))


class Encoder(nn.Module):
    """x (N, D) → hidden layers → (mu, logvar), each (N, K)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.hidden = _stack([config.input_dim, *config.hidden])
        width = config.hidden[-1] if config.hidden else config.input_dim
        self.mu = nn.Linear(width, config.latent_dim)
        self.logvar = nn.Linear(width, config.latent_dim)
        self.act = ACTIVATIONS[config.activation]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x
        for layer in self.hidden:
            h = self.act(layer(h))
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    """z (N, K) → hidden layers → D outputs (Bernoulli logits or Gaussian mean)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.hidden = _stack([config.latent_dim, *config.decoder_sizes])
        width = config.decoder_sizes[-1] if config.decoder_sizes else config.latent_dim
        self.out = nn.Linear(width, config.input_dim)
        self.act = ACTIVATIONS[config.activation]
        shape = config.parameter_shapes.get("decoder.log_sigma")
        if shape is not None:
            self.log_sigma = nn.Parameter(torch.full(shape, math.log(config.sigma)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for layer in self.hidden:
            h = self.act(layer(h))
        return self.out(h)


class VAE(nn.Module):
    """p(x|z) p(z) with q(z|x) = N(mu(x), diag e^logvar(x)); inputs are flat (N, D)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z): sigmoid(logits) for Bernoulli, f(z) for Gaussian."""
        out = self.decoder(z)
        return torch.sigmoid(out) if self.config.likelihood == "bernoulli" else out

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """z = mu + exp(½·logvar) ⊙ eps."""
        return mu + torch.exp(0.5 * logvar) * eps

    def log_sigma(self) -> torch.Tensor | float:
        """log σ of the Gaussian likelihood: the learned parameter, or log of the fixed σ."""
        learned = getattr(self.decoder, "log_sigma", None)
        return learned if learned is not None else math.log(self.config.sigma)

    def reconstruction_nll(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """−log p(x|z) per example, nats."""
        out = self.decoder(z)
        if self.config.likelihood == "bernoulli":
            return objectives.bernoulli_nll_torch(out, x)
        return objectives.gaussian_nll_torch(out, x, self.log_sigma())

    def loss_terms(self, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(recon, kl) per example in nats: recon = −log p(x|z), kl = KL(q(z|x) ‖ N(0, I))."""
        mu, logvar = self.encoder(x)
        recon = self.reconstruction_nll(x, self.reparameterize(mu, logvar, eps))
        return recon, objectives.kl_standard_normal_torch(mu, logvar)

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The per-example negative ELBO (beta = 1), nats."""
        recon, kl = self.loss_terms(x, eps)
        return recon + kl

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws of the decoder mean at z ~ N(0, I)."""
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=self._device())
        return self.decode(z)

    def reconstruct(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Encode, sample z ~ q(z|x), decode: the mean of p(x|z)."""
        mu, logvar = self.encoder(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return self.decode(self.reparameterize(mu, logvar, eps))

    def _device(self) -> torch.device:
        return self.decoder.out.weight.device
