"""The prior p(z) as a ``torch.nn.Module``: fixed, or learned with the rest of the model.

Each prior offers ``log_prob(z, y=None)`` (nats, summed over the last axis of z (…, N, K)),
``snapshot()`` (the prior with its current weights as a :class:`vaekit.model.priors.Prior`,
detached, float64, which sampling, figures and the explorer ask), and, where the KL to a diagonal
Gaussian posterior has a closed form (``config.closed_form_kl``), ``kl_per_dim(mu, logvar,
y=None)`` (N, K). The formulas are :mod:`vaekit.model.objectives`' (shared with the NumPy engine);
a mixture's density is computed as matrix products
(:func:`vaekit.model.objectives.mixture_log_density`), so z (S, N, K) against C components forms
(S, N, C) arrays, never (S, N, C, K).

Parameter names (``prior.*`` in the state dict) follow :func:`vaekit.model.parameters.shapes`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vaekit.config.settings import ModelConfig
from vaekit.errors import ConfigError
from vaekit.model import objectives, priors

#: (mu, logvar) of the posterior over the prior's latent layer, for inputs x and, in a conditional
#: model, their labels y (the VampPrior's components).
TopPosterior = Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]

#: Mean and standard deviation of the VampPrior's initial pseudo-inputs (Tomczak & Welling, 2018,
#: on MNIST): every value drawn from N(0.05, 0.01²), near the background of the images.
PSEUDO_INPUT_INIT = (0.05, 0.01)


def _numpy(t: torch.Tensor) -> np.ndarray:
    """A detached float64 NumPy copy of t."""
    return t.detach().to("cpu", torch.float64).numpy().copy()


class StandardNormalModule(nn.Module):
    """p(z) = N(0, I): :class:`vaekit.model.priors.StandardNormal`'s formulas, nothing learned."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.fixed = priors.StandardNormal(latent_dim)

    def log_prob(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.fixed.log_prob(z)

    def kl_per_dim(
        self, mu: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.fixed.kl_per_dim(mu, logvar)

    def snapshot(self) -> priors.Prior:
        return self.fixed


class VampPriorModule(nn.Module):
    """p(z) = (1/C) Σ_c q(z|u_c) (Tomczak & Welling, 2018): the posterior of C learned
    pseudo-inputs u_c (``pseudo_inputs``, (C, D); a conv encoder reads each as an image of
    ``input_shape``), through ``top_posterior`` (the encoder; with two stochastic layers
    q(z2|E[z1|u])). For the Bernoulli likelihood the encoder reads hardtanh(u) ∈ [0, 1], as the
    data it was trained on. Init: :data:`PSEUDO_INPUT_INIT`.

    In a conditional model the pseudo-inputs are dealt to the classes in turn (u_c belongs to
    class c mod n_classes) and each is encoded with its class's label, so that
    p(z|y) = (1/C_y) Σ_{c of class y} q(z|u_c, y): a prior per class that can follow the shape
    of that class's aggregate posterior, correlations included. Within a class the components'
    weights are learned (``logits`` (C,), init 0: uniform), so that pseudo-inputs the class's
    codes do not use lose weight instead of being drawn as often as the others."""

    def __init__(self, config: ModelConfig, top_posterior: TopPosterior) -> None:
        super().__init__()
        mean, sd = PSEUDO_INPUT_INIT
        count = config.prior_components
        self.pseudo_inputs = nn.Parameter(mean + sd * torch.randn(count, config.input_dim))
        self.clamp = config.likelihood == "bernoulli"
        self.top_posterior = top_posterior  # the VAE's encoder (a method: not a submodule)
        self.n_classes = config.n_classes
        self.classes = np.arange(count) % config.n_classes if config.n_classes else None
        # per class, learned weights w_c ∝ e^logits_c within the class (init 0: uniform)
        self.logits = nn.Parameter(torch.zeros(count)) if config.n_classes else None
        self.register_buffer(
            "component_labels",
            None if self.classes is None else torch.from_numpy(self.classes),
            persistent=False,
        )

    def log_weights_of_class(self) -> torch.Tensor:
        """(n_classes, C): row y the log-weights of p(z|y)
        (:func:`vaekit.model.priors.class_log_weights` of the learned logits)."""
        return priors.class_log_weights(self.logits, self.classes, self.n_classes)

    def components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu_c, logvar_c), each (C, K): the posterior of each pseudo-input (and its class)."""
        u = F.hardtanh(self.pseudo_inputs, 0.0, 1.0) if self.clamp else self.pseudo_inputs
        return self.top_posterior(u, self.component_labels)

    def log_prob(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log (1/C) Σ_c N(z; mu_c, diag e^logvar_c), nats, (…) for z (…, K); in a conditional
        model log p(z|y) over the components of each example's class, (…, N) for z (…, N, K)."""
        mu, logvar = self.components()
        if self.classes is None:
            log_weights = torch.full_like(mu[:, 0], -math.log(len(mu)))
        elif y is None:
            raise ConfigError("this VampPrior is per class: it needs a class label for each input")
        else:
            log_weights = self.log_weights_of_class()[y].to(mu.dtype)
        return objectives.mixture_log_density(z, log_weights, mu, logvar)

    def snapshot(self) -> priors.Prior:
        with torch.no_grad():
            mu, logvar = self.components()
            if self.classes is None:
                weights = np.full(len(mu), 1.0 / len(mu))
            else:  # each class weighs 1/n_classes in the marginal
                within = torch.exp(self.log_weights_of_class().double()).sum(0)
                weights = _numpy(within) / self.n_classes
        return priors.GaussianMixture(weights, _numpy(mu), _numpy(logvar), self.classes)


class MixtureModule(nn.Module):
    """p(z) = Σ_c softmax(logits)_c N(z; m_c, diag e^lv_c), learned: ``means`` and ``logvars``
    (C, K), ``logits`` (C,). Init: means ~ N(0, 1) (the components spread over the region of
    N(0, I)), logvars 0 (unit variances), logits 0 (equal weights)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        shape = (config.prior_components, config.prior_dim)
        self.means = nn.Parameter(torch.randn(shape))
        self.logvars = nn.Parameter(torch.zeros(shape))
        self.logits = nn.Parameter(torch.zeros(config.prior_components))

    def log_prob(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log Σ_c w_c N(z; m_c, diag e^lv_c), nats, (…) for z (…, K)."""
        log_weights = torch.log_softmax(self.logits, dim=0)
        return objectives.mixture_log_density(z, log_weights, self.means, self.logvars)

    def snapshot(self) -> priors.Prior:
        weights = _numpy(torch.softmax(self.logits.detach().double(), dim=0))
        return priors.GaussianMixture(weights, _numpy(self.means), _numpy(self.logvars))


class ClassPriorModule(nn.Module):
    """p(z|y) = N(z; m_y, diag e^lv_y) for a conditional model: ``means`` and ``logvars``
    (n_classes, K), init 0 (it starts as N(0, I) for every class). Its KL to q(z|x, y) has a
    closed form (:func:`vaekit.model.objectives.kl_per_dim_to`)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        shape = (config.n_classes, config.prior_dim)
        self.means = nn.Parameter(torch.zeros(shape))
        self.logvars = nn.Parameter(torch.zeros(shape))

    def of(self, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(m_y, lv_y), each (N, K), for labels y (N,)."""
        if y is None:
            raise ConfigError("the class prior p(z|y) needs a class label for each input")
        return self.means[y], self.logvars[y]

    def log_prob(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log N(z; m_y, diag e^lv_y), nats, (…, N) for z (…, N, K) and labels y (N,)."""
        return objectives.gaussian_log_density_at(z, *self.of(y))

    def kl_per_dim(
        self, mu: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """KL(N(mu, e^logvar) ‖ N(m_y, e^lv_y)) per example and dimension, (N, K), nats."""
        return objectives.kl_per_dim_to(mu, logvar, *self.of(y))

    def snapshot(self) -> priors.Prior:
        return priors.ClassConditional(_numpy(self.means), _numpy(self.logvars))


def build(config: ModelConfig, top_posterior: TopPosterior) -> nn.Module:
    """The prior of ``config.prior`` over ``config.prior_dim`` dimensions; ``top_posterior``
    gives the VampPrior its components."""
    if config.prior == "vamp":
        return VampPriorModule(config, top_posterior)
    if config.prior == "mog":
        return MixtureModule(config)
    if config.prior == "class":
        return ClassPriorModule(config)
    return StandardNormalModule(config.prior_dim)
