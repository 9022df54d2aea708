"""The VAEModule as a ``torch.nn.Module``: MLP or convolutional, optionally conditional on a label.

Parameter names equal :func:`vaekit.model.parameters.shapes`, so the state
dict is a vaekit checkpoint. The loss terms are :mod:`vaekit.model.objectives`' formulas and the
prior's, in nats per example.
Labels ``y`` are int64 class indices; a conditional model concatenates their one-hot code to the
encoder's dense input and to z.

The parts, each its own module: the encoder and decoder (vaekit's below, or your own:
:mod:`vaekit.model.custom_networks`), the prior p(z) (:mod:`.priors`), an optional second stochastic
layer (:mod:`.hierarchy`) and an optional flow on the posterior (:mod:`.flows`).
:meth:`VAEModule.latents` puts them together: from eps ~ N(0, I) it draws z ~ q(z|x) and returns
log q(z|x) and log p(z) (over both layers, the flow's log-determinant included), so the ELBO and
the IWAE bound are written once for every model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.config.settings import ModelConfig
from vaekit.engines.torch import bernoulli_head, flows, hierarchy
from vaekit.engines.torch import prior_modules as learned_priors
from vaekit.engines.torch.dense import ACTIVATIONS, Dense, HiddenLayers
from vaekit.errors import ConfigError
from vaekit.model import custom_networks, objectives, parameters
from vaekit.model.objectives import reparameterize
from vaekit.model.priors import Prior


def _with_label(h: torch.Tensor, onehot: torch.Tensor | None) -> torch.Tensor:
    return h if onehot is None else torch.cat([h, onehot], dim=1)


class Encoder(nn.Module):
    """x → [convolutions] → hidden layers → (mu, logvar), each (N, K)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        shapes = parameters.shapes(config)
        if config.arch == "conv":
            self.conv = nn.ModuleList(
                nn.Conv2d(shapes[f"encoder.conv.{i}.weight"][1], out, 4, stride=2, padding=1)
                for i, out in enumerate(config.conv_channels)
            )
            self.act = ACTIVATIONS[config.activation]  # the convolutions'
        width = shapes["encoder.mu.weight"][1]
        first = shapes["encoder.hidden.0.weight"][1] if config.hidden else width
        self.hidden = HiddenLayers([first, *config.hidden], config.activation)
        self.mu = Dense(width, config.latent_dim)
        self.logvar = Dense(width, config.latent_dim)

    def forward(
        self, x: torch.Tensor, onehot: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x, onehot)
        return self.mu(h), self.logvar(h)

    def features(self, x: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        """h, the last hidden layer (N, ``config.encoder_width``): what the heads read."""
        if self.config.arch == "conv":
            h = x.reshape(len(x), *self.config.input_shape)
            for layer in self.conv:
                h = self.act(layer(h))
            h = h.flatten(1)
        else:
            h = x
        return self.hidden(_with_label(h, onehot))


class Decoder(nn.Module):
    """z → hidden layers → D outputs (MLP), or → projection → deconvolutions (conv); the outputs
    are Bernoulli logits or the Gaussian mean, flattened to (N, D)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        shapes = parameters.shapes(config)
        self.hidden = HiddenLayers(
            [config.latent_dim + config.n_classes, *config.decoder_sizes], config.activation
        )
        width = shapes["decoder.out.weight" if config.arch == "mlp" else "decoder.project.weight"][
            1
        ]
        if config.arch == "conv":
            self.project = Dense(width, shapes["decoder.project.weight"][0])
            self.act = ACTIVATIONS[config.activation]  # the projection's and deconvolutions'
            self.deconv = nn.ModuleList(
                nn.ConvTranspose2d(*shapes[f"decoder.deconv.{i}.weight"][:2], 4, 2, padding=1)
                for i in range(len(config.conv_channels))
            )
        else:
            self.out = Dense(width, config.input_dim)
        shape = shapes.get("decoder.log_sigma")
        if shape is not None:
            self.log_sigma = custom_networks.sigma_parameter(config, shape)

    def forward(self, z: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        h = self.hidden(_with_label(z, onehot))
        if self.config.arch != "conv":
            return self.out(h)
        h = self.act(self.project(h)).reshape(len(h), *self.config.conv_feature_shape)
        for i, layer in enumerate(self.deconv):
            h = layer(h)
            if i < len(self.deconv) - 1:
                h = self.act(h)
        return h.flatten(1)


class Latents(NamedTuple):
    """A draw z ~ q(z|x) and its log-densities, nats: ``z`` (…, N, K) is what the decoder reads;
    ``log_q`` = log q(z|x) and ``log_p`` = log p(z), (…, N), over every stochastic layer, the
    flow's log-determinant included."""

    z: torch.Tensor
    log_q: torch.Tensor
    log_p: torch.Tensor


class VAEModule(nn.Module):
    """p(x|z[, y]) p(z) with q(z|x[, y]) = N(mu, diag e^logvar), optionally followed by a flow or
    a second stochastic layer; inputs are flat (N, D).

    The likelihood p(x|z) is ``objectives.LIKELIHOODS[config.likelihood]`` and the prior p(z) is
    :func:`.priors.build`'s (over z2 with two stochastic layers): every loss term below is theirs.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = (
            custom_networks.build(config, "encoder") if config.encoder_module else Encoder(config)
        )
        self.decoder = (
            custom_networks.build(config, "decoder") if config.decoder_module else Decoder(config)
        )
        self.top = hierarchy.TopLayer(config) if config.top_latent_dim else None
        self.flow = flows.InverseAutoregressiveFlow(config) if config.flow == "iaf" else None
        self.prior = learned_priors.build(config, self.top_posterior)
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
        """(mu, logvar) of q(z|x[, y]) before any flow (of z1 with two stochastic layers)."""
        if self.config.encoder_module:
            return self.encoder(x)
        return self.encoder(x, self.onehot(y))

    def top_posterior(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of the posterior over the prior's latent layer for inputs x (and labels y
        in a conditional model): q(z|x[, y]), or with two stochastic layers q(z2|z1 = E[z1|x])
        (the VampPrior's components)."""
        mu, logvar = self.encode(x, y)
        return (mu, logvar) if self.top is None else self.top.posterior(mu)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The mean of p(x|z): sigmoid(logits) for Bernoulli, f(z) for Gaussian."""
        return self.likelihood.mean(self._decoder(z, y))

    def _decoder(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.config.decoder_module:
            return self.decoder(z)
        return self.decoder(z, self.onehot(y))

    def latents(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None,
        eps: torch.Tensor,
        posterior: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> Latents:
        """z ~ q(z|x[, y]) from eps (…, N, ``config.noise_dim``) and its log-densities.

        z0 = mu + σ·eps[:K], log q = log N(z0; mu, σ²); a flow maps z0 to z and subtracts its
        log-determinant; a second layer draws z2 ~ q(z2|z) from eps[K:] and adds log q(z2|z),
        and then log p = log p(z|z2) + log p(z2). Otherwise log p = log p(z[|y]).
        ``posterior``: (mu, logvar) = encode(x, y) already computed (a flow, which also reads
        the encoder's hidden layer, encodes x again).
        """
        k = self.config.latent_dim
        eps1 = eps[..., :k]
        if self.flow is None:
            mu, logvar = self.encode(x, y) if posterior is None else posterior
            z = reparameterize(mu, logvar, eps1)
            log_q = objectives.gaussian_log_density(eps1, logvar)
        else:
            h = self.encoder.features(x, self.onehot(y))
            mu, logvar = self.encoder.mu(h), self.encoder.logvar(h)
            z, log_det = self.flow(reparameterize(mu, logvar, eps1), h)
            log_q = objectives.gaussian_log_density(eps1, logvar) - log_det
        if self.top is None:
            return Latents(z, log_q, self.prior.log_prob(z, y))
        z2, log_q2, log_p1 = self.top(z, eps[..., k:])
        return Latents(z, log_q + log_q2, log_p1 + self.prior.log_prob(z2))

    def prior_snapshot(self) -> Prior:
        """p(z) as the rest of vaekit asks it (:class:`vaekit.model.priors.Prior`), with the current
        weights: the prior's own, or with two stochastic layers the marginal of z1."""
        top = self.prior.snapshot()
        return top if self.top is None else self.top.marginal(top)

    def log_sigma(self) -> torch.Tensor | float:
        """log σ of the Gaussian likelihood: the learned parameter, or log of the fixed σ."""
        learned = getattr(self.decoder, "log_sigma", None)
        return learned if learned is not None else math.log(self.config.sigma)

    def reconstruction_nll(
        self, x: torch.Tensor, z: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """−log p(x|z), nats: (N,) for z (N, K), or (S, N) for z (S, N, K) sharing x (N, D)."""
        samples, flat = z.shape[:-1], z.reshape(-1, z.shape[-1])
        y = None if y is None else y.expand(samples).reshape(-1)
        if self._bernoulli_head(z):
            h = self.decoder.hidden(_with_label(flat, self.onehot(y))).reshape(*samples, -1)
            head = self.decoder.out
            return bernoulli_head.bernoulli_nll(h, head.weight, head.bias, x)
        out = self._decoder(flat, y).reshape(*samples, -1)
        if self.training and self.config.learn_sigma == "calibrated":
            # Training weighs the batch by its best σ (no gradient flows into it); evaluation and
            # sampling use the running mean that each step updates.
            with torch.no_grad():
                best = objectives.calibrated_log_sigma(out, x)
                stored = self.decoder.log_sigma
                stored.copy_(objectives.running_log_sigma(stored, best))
            return self.likelihood.nll(out, x, best)
        return self.likelihood.nll(out, x, self.log_sigma())

    def _bernoulli_head(self, z: torch.Tensor) -> bool:
        """Whether the decoder's last layer and the likelihood go together for z (S, N, K)
        (:mod:`.bernoulli_head`): vaekit's MLP decoder and a Bernoulli likelihood."""
        return (
            self.config.likelihood == "bernoulli"
            and self.config.arch == "mlp"
            and not self.config.decoder_module
            and bernoulli_head.applies(z, self.decoder.out.weight)
        )

    def elbo_terms(
        self, x: torch.Tensor, eps: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(recon, KL) per example, (N,), nats, for one z ~ q(z|x) per example from eps (N, ·):
        the KL per latent dimension in closed form where the model has one
        (``config.closed_form_kl``: summed here), else the estimate log q(z|x) − log p(z)."""
        recon, kl = self._elbo_terms(x, eps, y)
        return recon, kl.sum(-1) if self.config.closed_form_kl else kl

    def _elbo_terms(
        self,
        x: torch.Tensor,
        eps: torch.Tensor,
        y: torch.Tensor | None,
        posterior: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(recon (N,), KL): per dimension (N, K) in closed form, else (N,) estimated;
        ``posterior``: (mu, logvar) = encode(x, y) already computed (closed form only)."""
        if self.config.closed_form_kl:
            mu, logvar = self.encode(x, y) if posterior is None else posterior
            recon = self.reconstruction_nll(x, reparameterize(mu, logvar, eps), y)
            return recon, self.prior.kl_per_dim(mu, logvar, y)
        z, log_q, log_p = self.latents(x, y, eps)
        return self.reconstruction_nll(x, z, y), log_q - log_p

    def log_weights(
        self,
        x: torch.Tensor,
        eps: torch.Tensor,
        y: torch.Tensor | None = None,
        beta: float = 1.0,
        posterior: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log w, recon), each (S, N), nats, for z ~ q(z|x) from eps (S, N, ``noise_dim``):
        log w = log p(x|z) + β·(log p(z) − log q(z|x)) and recon = −log p(x|z)."""
        z, log_q, log_p = self.latents(x, y, eps, posterior)
        recon = self.reconstruction_nll(x, z, y)
        return objectives.log_weights(recon, log_p, log_q, beta), recon

    def training_sums(
        self,
        x: torch.Tensor,
        eps: torch.Tensor,
        y: torch.Tensor | None,
        beta: float,
        minibatch: Minibatch | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """A batch's training sums over its rows, in nats, for the model's objective:

        - ELBO (eps (N, ·)): (Σ recon, Σ KL per latent dimension (K,)) with the KL in closed
          form, or (Σ recon, (Σ KL estimate,)) for a model without one;
        - IWAE (eps (k, N, ·)): (Σ L_k, Σ mean recon, Σ KL estimate), with
          L_k = logsumexp_i log w_i − log k and log w = log p(x|z) + β·(log p(z) − log q(z|x));
        - β-TCVAE (eps (N, K)): the ELBO's two sums and Σ TC_i, the minibatch-weighted estimate
          of :func:`vaekit.model.objectives.total_correlation` against the posteriors of the whole
          batch (``minibatch``: the data set's size and how to gather them).
        """
        if self.config.objective == "tcvae":
            if minibatch is None:
                raise ConfigError("the tcvae objective needs the training set's size")
            mu, logvar = self.encode(x, y)
            recon, kl = self._elbo_terms(x, eps, y, (mu, logvar))
            z = reparameterize(mu, logvar, eps)
            whole_mu, whole_logvar = minibatch.gather(mu), minibatch.gather(logvar)
            tc = objectives.total_correlation(z, whole_mu, whole_logvar, minibatch.dataset_size)
            return recon.sum(), kl.sum(dim=0), tc.sum()
        if self.config.objective == "iwae":
            z, log_q, log_p = self.latents(x, y, eps)
            recon = self.reconstruction_nll(x, z, y)
            log_w = objectives.log_weights(recon, log_p, log_q, beta)
            bound = torch.logsumexp(log_w, dim=0) - math.log(eps.shape[0])
            kl = (log_q - log_p).mean(dim=0)
            return bound.sum(), recon.mean(dim=0).sum(), kl.sum()
        recon, kl = self._elbo_terms(x, eps, y)
        return recon.sum(), kl.sum(dim=0).reshape(-1)


class Minibatch(NamedTuple):
    """What minibatch-weighted sampling (β-TCVAE) needs beyond this process's rows: N, the
    training set's size, and ``gather``, which gives a tensor's rows for the whole batch (the
    identity alone; under torchrun every rank's share, with gradients back to their owners)."""

    dataset_size: int
    gather: Callable[[torch.Tensor], torch.Tensor]


class TrainingObjective(nn.Module):
    """:meth:`VAEModule.training_sums` as a module's forward, so that ``DistributedDataParallel``
    can wrap it (its parameters are the VAE's)."""

    def __init__(self, vae: VAEModule) -> None:
        super().__init__()
        self.vae = vae

    def forward(
        self,
        x: torch.Tensor,
        eps: torch.Tensor,
        y: torch.Tensor | None,
        beta: float,
        minibatch: Minibatch | None = None,
    ) -> tuple[torch.Tensor, ...]:
        return self.vae.training_sums(x, eps, y, beta, minibatch)
