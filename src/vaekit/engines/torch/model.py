"""The VAE as a ``torch.nn.Module``: MLP or convolutional, optionally conditional on a label.

Parameter names equal :attr:`vaekit.config.ModelConfig.parameter_shapes`, so the state dict is a
vaekit checkpoint. The loss terms are :mod:`vaekit.objectives`' formulas and the prior's
(:mod:`vaekit.priors`), in nats per example.
Labels ``y`` are int64 class indices; a conditional model concatenates their one-hot code to the
encoder's dense input and to z.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from vaekit import objectives, priors
from vaekit.config import ModelConfig
from vaekit.engines.torch.dense import Dense
from vaekit.errors import ConfigError

ACTIVATIONS = {
    "relu": F.relu,
    "elu": F.elu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "leaky_relu": F.leaky_relu,  # negative slope 0.01
}


def _stack(sizes: list[int]) -> nn.ModuleList:
    return nn.ModuleList(Dense(a, b) for a, b in pairwise(sizes))


def _with_label(h: torch.Tensor, onehot: torch.Tensor | None) -> torch.Tensor:
    return h if onehot is None else torch.cat([h, onehot], dim=1)


class Encoder(nn.Module):
    """x → [convolutions] → hidden layers → (mu, logvar), each (N, K)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        shapes = config.parameter_shapes
        if config.arch == "conv":
            self.conv = nn.ModuleList(
                nn.Conv2d(shapes[f"encoder.conv.{i}.weight"][1], out, 4, stride=2, padding=1)
                for i, out in enumerate(config.conv_channels)
            )
        width = shapes["encoder.mu.weight"][1]
        first = shapes["encoder.hidden.0.weight"][1] if config.hidden else width
        self.hidden = _stack([first, *config.hidden])
        self.mu = Dense(width, config.latent_dim)
        self.logvar = Dense(width, config.latent_dim)
        self.act = ACTIVATIONS[config.activation]

    def forward(
        self, x: torch.Tensor, onehot: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.arch == "conv":
            h = x.reshape(len(x), *self.config.input_shape)
            for layer in self.conv:
                h = self.act(layer(h))
            h = h.flatten(1)
        else:
            h = x
        h = _with_label(h, onehot)
        for layer in self.hidden:
            h = self.act(layer(h))
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    """z → hidden layers → D outputs (MLP), or → projection → deconvolutions (conv); the outputs
    are Bernoulli logits or the Gaussian mean, flattened to (N, D)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        shapes = config.parameter_shapes
        self.hidden = _stack([config.latent_dim + config.n_classes, *config.decoder_sizes])
        width = shapes["decoder.out.weight" if config.arch == "mlp" else "decoder.project.weight"][
            1
        ]
        if config.arch == "conv":
            self.project = Dense(width, shapes["decoder.project.weight"][0])
            self.deconv = nn.ModuleList(
                nn.ConvTranspose2d(*shapes[f"decoder.deconv.{i}.weight"][:2], 4, 2, padding=1)
                for i in range(len(config.conv_channels))
            )
        else:
            self.out = Dense(width, config.input_dim)
        self.act = ACTIVATIONS[config.activation]
        shape = shapes.get("decoder.log_sigma")
        if shape is not None:
            self.log_sigma = nn.Parameter(torch.full(shape, math.log(config.sigma)))

    def forward(self, z: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        h = _with_label(z, onehot)
        for layer in self.hidden:
            h = self.act(layer(h))
        if self.config.arch != "conv":
            return self.out(h)
        h = self.act(self.project(h)).reshape(len(h), *self.config.conv_feature_shape)
        for i, layer in enumerate(self.deconv):
            h = layer(h)
            if i < len(self.deconv) - 1:
                h = self.act(h)
        return h.flatten(1)


class VAE(nn.Module):
    """p(x|z[, y]) p(z) with q(z|x[, y]) = N(mu, diag e^logvar); inputs are flat (N, D).

    The likelihood p(x|z) is ``objectives.LIKELIHOODS[config.likelihood]`` and the prior p(z) is
    ``priors.for_config(config)``: every loss term below is theirs.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.prior = priors.for_config(config)
        self.likelihood = objectives.LIKELIHOODS[config.likelihood]

    def onehot(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """The one-hot code of labels y for a conditional model (None for an unconditional one)."""
        if not self.config.conditional:
            return None
        if y is None:
            raise ConfigError("this model is conditional: it needs a class label for each input")
        return F.one_hot(y, self.config.n_classes).to(self.encoder.mu.weight.dtype)

    def encode(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x, self.onehot(y))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The mean of p(x|z): sigmoid(logits) for Bernoulli, f(z) for Gaussian."""
        return self.likelihood.mean(self.decoder(z, self.onehot(y)))

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """z = mu + exp(½·logvar) ⊙ eps."""
        return mu + torch.exp(0.5 * logvar) * eps

    def log_sigma(self) -> torch.Tensor | float:
        """log σ of the Gaussian likelihood: the learned parameter, or log of the fixed σ."""
        learned = getattr(self.decoder, "log_sigma", None)
        return learned if learned is not None else math.log(self.config.sigma)

    def reconstruction_nll(
        self, x: torch.Tensor, z: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """−log p(x|z), nats: (N,) for z (N, K), or (S, N) for z (S, N, K) sharing x (N, D)."""
        samples = z.shape[:-1]
        y = None if y is None else y.expand(samples).reshape(-1)
        out = self.decoder(z.reshape(-1, z.shape[-1]), self.onehot(y)).reshape(*samples, -1)
        return self.likelihood.nll(out, x, self.log_sigma())

    def log_weights(
        self,
        x: torch.Tensor,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        eps: torch.Tensor,
        y: torch.Tensor | None = None,
        beta: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log w, recon), each (S, N), nats, for z = mu + σ·eps, eps (S, N, K):
        log w = log p(x|z) + β·(log p(z) − log q(z|x)) and recon = −log p(x|z)."""
        z = self.reparameterize(mu, logvar, eps)
        recon = self.reconstruction_nll(x, z, y)
        return objectives.log_weights(recon, self.prior.log_prob(z), eps, logvar, beta), recon

    def training_sums(
        self, x: torch.Tensor, eps: torch.Tensor, y: torch.Tensor | None, beta: float
    ) -> tuple[torch.Tensor, ...]:
        """A batch's training sums over its rows, in nats, for the model's objective:

        - ELBO (eps (N, K)): (Σ recon, Σ KL per latent dimension (K,)), the KL in closed form;
        - IWAE (eps (k, N, K)): (Σ L_k, Σ mean recon, Σ KL), with
          L_k = logsumexp_i log w_i − log k and log w = log p(x|z) + β·(log p(z) − log q(z|x)).
        """
        mu, logvar = self.encode(x, y)
        if self.config.objective == "iwae":
            log_w, recon = self.log_weights(x, mu, logvar, eps, y, beta)
            bound = torch.logsumexp(log_w, dim=0) - math.log(eps.shape[0])
            return bound.sum(), recon.mean(dim=0).sum(), self.prior.kl(mu, logvar).sum()
        recon = self.reconstruction_nll(x, self.reparameterize(mu, logvar, eps), y)
        return recon.sum(), self.prior.kl_per_dim(mu, logvar).sum(dim=0)


class TrainingObjective(nn.Module):
    """:meth:`VAE.training_sums` as a module's forward, so that ``DistributedDataParallel`` can
    wrap it (its parameters are the VAE's)."""

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(
        self, x: torch.Tensor, eps: torch.Tensor, y: torch.Tensor | None, beta: float
    ) -> tuple[torch.Tensor, ...]:
        return self.vae.training_sums(x, eps, y, beta)
