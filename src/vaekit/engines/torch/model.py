"""The VAE as a ``torch.nn.Module``: MLP or convolutional, optionally conditional on a label.

Parameter names equal :attr:`vaekit.config.ModelConfig.parameter_shapes`, so the state dict is a
vaekit checkpoint. The loss terms are :mod:`vaekit.objectives`' formulas, in nats per example.
Labels ``y`` are int64 class indices; a conditional model concatenates their one-hot code to the
encoder's dense input and to z.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from vaekit import objectives
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
    """p(x|z[, y]) p(z) with q(z|x[, y]) = N(mu, diag e^logvar); inputs are flat (N, D)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

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
        out = self.decoder(z, self.onehot(y))
        return torch.sigmoid(out) if self.config.likelihood == "bernoulli" else out

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
        if self.config.likelihood == "bernoulli":
            return objectives.bernoulli_nll_torch(out, x)
        return objectives.gaussian_nll_torch(out, x, self.log_sigma())

    def loss_terms(
        self, x: torch.Tensor, eps: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(recon, kl) per example in nats: recon = −log p(x|z), kl = KL(q(z|x) ‖ N(0, I))."""
        recon, kl_dims = self.loss_terms_per_dim(x, eps, y)
        return recon, kl_dims.sum(dim=1)

    def loss_terms_per_dim(
        self, x: torch.Tensor, eps: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(recon (N,), KL per latent dimension (N, K)), nats."""
        mu, logvar = self.encode(x, y)
        recon = self.reconstruction_nll(x, self.reparameterize(mu, logvar, eps), y)
        return recon, objectives.kl_per_dim_torch(mu, logvar)

    def loss_sums(
        self, x: torch.Tensor, eps: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(Σ recon, Σ KL per latent dimension (K,)) over the batch's rows, nats: the training
        step's terms, reduced inside the loss kernels."""
        mu, logvar = self.encode(x, y)
        z = self.reparameterize(mu, logvar, eps)
        out = self.decoder(z, self.onehot(y))
        if self.config.likelihood == "bernoulli":
            recon = F.binary_cross_entropy_with_logits(out, x, reduction="sum")
        else:
            recon = objectives.gaussian_nll_torch(out, x, self.log_sigma()).sum()
        return recon, objectives.kl_per_dim_torch(mu, logvar).sum(dim=0)

    def iwae_bound(
        self, x: torch.Tensor, eps: torch.Tensor, y: torch.Tensor | None = None, beta: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L_k per example, mean recon, closed-form KL) for eps of shape (k, N, K).

        L_k = logsumexp_i [log p(x|z_i) + β·(log p(z_i) − log q(z_i|x))] − log k, with
        log p(z) − log q(z|x) = −½Σz² + ½Σ(eps² + logvar); β = 1 is the IWAE bound.
        """
        k = eps.shape[0]
        mu, logvar = self.encode(x, y)
        z = self.reparameterize(mu, logvar, eps)  # (k, N, K)
        recon = self.reconstruction_nll(x, z, y)  # (k, N)
        prior_minus_q = 0.5 * ((eps * eps - z * z).sum(dim=2) + logvar.sum(dim=1))
        log_w = -recon + beta * prior_minus_q
        bound = torch.logsumexp(log_w, dim=0) - math.log(k)
        return bound, recon.mean(dim=0), objectives.kl_standard_normal_torch(mu, logvar)

    def forward(
        self, x: torch.Tensor, eps: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The per-example negative ELBO (beta = 1), nats."""
        recon, kl = self.loss_terms(x, eps, y)
        return recon + kl

    def sample(
        self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """n draws of the decoder mean at z ~ N(0, I) (for labels y if conditional)."""
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=self._device())
        return self.decode(z, y)

    def reconstruct(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encode, sample z ~ q(z|x), decode: the mean of p(x|z)."""
        mu, logvar = self.encode(x, y)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return self.decode(self.reparameterize(mu, logvar, eps), y)

    def _device(self) -> torch.device:
        return self.encoder.mu.weight.device


class TrainingObjective(nn.Module):
    """A batch's training sums as a module's forward, so that ``DistributedDataParallel`` can
    wrap it (its parameters are the VAE's). Sums run over the batch's rows, in nats:

    - ELBO: (Σ recon, Σ KL per latent dimension (K,));
    - IWAE: (Σ L_k, Σ recon, Σ KL), eps of shape (k, N, K).
    """

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(
        self, x: torch.Tensor, eps: torch.Tensor, y: torch.Tensor | None, beta: float
    ) -> tuple[torch.Tensor, ...]:
        if self.vae.config.objective == "iwae":
            bound, recon, kl = self.vae.iwae_bound(x, eps, y, beta)
            return bound.sum(), recon.sum(), kl.sum()
        return self.vae.loss_sums(x, eps, y)
