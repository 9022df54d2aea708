"""The prior p(z) over the latent space, as an object every part of vaekit asks.

The engines take the KL term of the ELBO and log p(z) of the importance weights from it; sampling,
the run's figures, the latent manifold and the explorer draw from it. A prior offers:

- ``log_prob(z, labels=None)``: log p(z), nats, summed over the last axis (NumPy arrays and torch
  tensors); ``labels`` (the class prior's) give log p(z|y), None the marginal;
- ``sample(n, rng, labels=None)``: n draws, (n, K) float64, from a ``numpy.random.Generator``;
  ``labels`` pick the class of each draw (class prior), None draws from the marginal;
- ``quantile(p)``: the inverse CDF of each coordinate's marginal, (*p.shape, K) (the manifold's
  grid, the explorer's slider range);
- only where a closed form exists (:func:`has_closed_form_kl`: standard, class):
  ``kl_per_dim(mu, logvar, labels=None)`` = KL(q(z_k|x) ‖ p(z_k[|y])) per example and dimension
  for q = N(mu, diag e^logvar) (free bits), ``kl`` its sum and, for the NumPy engine's backward
  pass, ``kl_grad`` (with the gradients of the prior's own parameters).

Learned priors (VampPrior, mixture of Gaussians, the class prior) are :class:`GaussianMixture`\\s
of their current weights: the torch engine's ``prior`` is such a snapshot.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Protocol

import numpy as np

from vaekit.config.settings import ModelConfig
from vaekit.errors import ConfigError
from vaekit.model import objectives
from vaekit.model.objectives import Array

#: Halvings of the bracket in :meth:`GaussianMixture.quantile`: (bracket width)·2⁻⁶⁰.
BISECTIONS = 60
#: c_0 … c_9 of erfc(a) ≈ t·exp(−a² + Σ_i c_i tⁱ), t = 1/(1 + a/2), a ≥ 0 (Press et al.,
#: Numerical Recipes, §6.2: fractional error below 1.2e-7 everywhere).
ERFC_COEFFICIENTS = (
    -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806,
    0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277,
)  # fmt: skip


class Prior(Protocol):
    """What the engines, sampling and figures ask of a prior (see the module docstring)."""

    latent_dim: int

    def log_prob(self, z: Array, labels: Array | None = None) -> Array: ...

    def sample(
        self, n: int, rng: np.random.Generator, labels: np.ndarray | None = None
    ) -> np.ndarray: ...

    def quantile(self, p: np.ndarray) -> np.ndarray: ...


def has_closed_form_kl(prior: Prior) -> bool:
    """Whether ``prior`` offers ``kl_per_dim`` (a KL to a diagonal Gaussian in closed form)."""
    return callable(getattr(prior, "kl_per_dim", None))


def standard_normal_quantile(p: np.ndarray) -> np.ndarray:
    """Φ⁻¹(p) elementwise, float64, shape of p."""
    inv_cdf = NormalDist().inv_cdf
    return np.array([inv_cdf(float(q)) for q in np.ravel(p)]).reshape(np.shape(p))


def standard_normal_cdf(x: np.ndarray) -> np.ndarray:
    """Φ(x) = ½ erfc(−x/√2) elementwise, absolute error below 1e-7 (:data:`ERFC_COEFFICIENTS`)."""
    a = np.abs(x) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.5 * a)
    poly = np.polynomial.polynomial.polyval(t, ERFC_COEFFICIENTS)
    upper = 0.5 * t * np.exp(-a * a + poly)  # ½ erfc(|x|/√2) = 1 − Φ(|x|)
    return np.where(x >= 0, 1.0 - upper, upper)


class StandardNormal:
    """p(z) = N(0, I) in K dimensions: log p(z) = −½ Σ_k (z_k² + log 2π)."""

    def __init__(self, latent_dim: int) -> None:
        self.latent_dim = latent_dim

    def log_prob(self, z: Array, labels: Array | None = None) -> Array:
        """log N(z; 0, I), nats, for z (…, K): −½ Σ_k (z_k² + log 2π); labels change nothing."""
        return -0.5 * (z * z + objectives.LOG_2PI).sum(-1)

    def sample(
        self, n: int, rng: np.random.Generator, labels: np.ndarray | None = None
    ) -> np.ndarray:
        """n draws z ~ N(0, I), (n, K), float64; labels change nothing."""
        return rng.standard_normal((n, self.latent_dim))

    def quantile(self, p: np.ndarray) -> np.ndarray:
        """Φ⁻¹(p) for every coordinate, (*p.shape, K): the value below which z_k falls with
        probability p."""
        q = standard_normal_quantile(p)
        return np.broadcast_to(q[..., None], (*np.shape(p), self.latent_dim)).copy()

    def kl_per_dim(self, mu: Array, logvar: Array, labels: Array | None = None) -> Array:
        """KL(N(mu, e^logvar) ‖ N(0, 1)) per example and dimension, (N, K), nats."""
        return objectives.kl_per_dim(mu, logvar)

    def kl(self, mu: Array, logvar: Array, labels: Array | None = None) -> Array:
        """KL(N(mu, diag e^logvar) ‖ N(0, I)) per example, (N,), nats."""
        return self.kl_per_dim(mu, logvar).sum(-1)

    def kl_grad(
        self, mu: np.ndarray, logvar: np.ndarray, labels: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """(∂/∂mu, ∂/∂logvar) of :meth:`kl_per_dim`, elementwise, and the gradients of the
        prior's parameters summed over examples (none)."""
        d_mu, d_logvar = objectives.kl_per_dim_grad(mu, logvar)
        return d_mu, d_logvar, {}


def class_log_weights(log_weights: Array, classes: np.ndarray, n_classes: int) -> Array:
    """log w_c − log Σ_{c' of class y} w_c' for each class y (row) and component c (column) of
    class y, −inf for the components of other classes: (n_classes, C), from ``log_weights`` (C,)
    (NumPy or torch: a learned tensor keeps its gradient). Row y as the log-weights of a mixture
    gives p(z|y), the mixture of class y's components alone."""
    member = np.arange(n_classes)[:, None] == np.asarray(classes)[None, :]
    if not member.any(axis=1).all():
        raise ValueError("every class needs at least one component")
    xp = objectives.namespace(log_weights)
    if xp is not np:
        member = xp.as_tensor(member, device=log_weights.device)
    masked = xp.where(member, log_weights, -np.inf)
    return masked - objectives.logsumexp(masked, axis=-1)[:, None]


class GaussianMixture:
    """p(z) = Σ_c w_c N(z; m_c, diag e^lv_c): ``weights`` (C,) summing to 1, ``means`` and
    ``logvars`` (C, K), float64 arrays. The VampPrior (C pseudo-inputs' posteriors, w_c = 1/C), the
    learned mixture of Gaussians and the class prior are mixtures of their current weights.

    ``classes`` (C,) makes it a conditional model's prior: component c belongs to class
    ``classes[c]``, and given a label y, p(z|y) = Σ_{c: class c = y} w_c N(z; m_c, diag e^lv_c) /
    Σ_{c: class c = y} w_c (:func:`class_log_weights`); without labels it is the whole mixture
    (the marginal over classes weighted by their components' total weight)."""

    def __init__(
        self,
        weights: np.ndarray,
        means: np.ndarray,
        logvars: np.ndarray,
        classes: np.ndarray | None = None,
    ) -> None:
        self.weights = np.asarray(weights)
        self.means = np.asarray(means)
        self.logvars = np.asarray(logvars)
        components, self.latent_dim = self.means.shape
        if self.weights.shape != (components,) or self.logvars.shape != self.means.shape:
            raise ValueError("a mixture needs weights (C,), means and logvars (C, K)")
        self.classes = None if classes is None else np.asarray(classes)
        if self.classes is not None:
            if self.classes.shape != (components,):
                raise ValueError("a mixture's classes are one per component, (C,)")
            self.n_classes = int(self.classes.max()) + 1
            with np.errstate(divide="ignore"):
                log_weights = np.log(self.weights)
            self.log_weights_of_class = class_log_weights(log_weights, self.classes, self.n_classes)

    @property
    def n_components(self) -> int:
        return len(self.weights)

    def _class_of(self, labels: Array) -> np.ndarray:
        """``labels`` as an int array, checked against the prior's classes."""
        if self.classes is None:
            raise ConfigError("this prior has no classes: sample or score it without labels")
        labels = np.asarray(labels)
        if labels.min(initial=0) < 0 or labels.max(initial=0) >= self.n_classes:
            raise ConfigError(f"labels must lie in 0..{self.n_classes - 1}")
        return labels

    def log_prob(self, z: Array, labels: Array | None = None) -> Array:
        """log p(z), nats, for z (…, K): the mixture's log-density
        (:func:`vaekit.model.objectives.mixture_log_density`), or with ``labels`` (N,) for z (…, N,
        K) log p(z|y) of each example's class (the same density with that class's log-weights)."""
        means, logvars = (objectives.as_array(a, z) for a in (self.means, self.logvars))
        if labels is None:
            log_weights = np.log(self.weights)
        else:
            log_weights = self.log_weights_of_class[self._class_of(labels)]
        return objectives.mixture_log_density(
            z, objectives.as_array(log_weights, z), means, logvars
        )

    def sample(
        self, n: int, rng: np.random.Generator, labels: np.ndarray | None = None
    ) -> np.ndarray:
        """n draws, (n, K), float64: a component c per draw, from w (or, for ``labels``, from the
        weights within each label's class, by inverting their cumulative sum at u ~ U(0, 1); no
        draw where each class has one component), then z = m_c + e^(lv_c/2)·eps with
        eps ~ N(0, I) (drawn after the components)."""
        if labels is None:
            c = rng.choice(self.n_components, size=n, p=self.weights)
        else:
            y = self._class_of(np.broadcast_to(labels, (n,)))
            within = np.exp(self.log_weights_of_class[y])
            if self.n_classes == self.n_components:  # one component a class: nothing to draw
                c = within.argmax(axis=1)
            else:
                cumulative = np.cumsum(within, axis=1)
                u = rng.random((n, 1)) * cumulative[:, -1:]  # below each row's total, never at it
                c = (cumulative <= u).sum(axis=1)
        eps = rng.standard_normal((n, self.latent_dim))
        return objectives.reparameterize(self.means[c], self.logvars[c], eps)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Each coordinate's marginal CDF, Σ_c w_c Φ((x_k − m_ck)/s_ck), for x (…, K)."""
        standardised = (x[..., None, :] - self.means) * np.exp(-0.5 * self.logvars)
        return np.einsum("c,...ck->...k", self.weights, standard_normal_cdf(standardised))

    def quantile(self, p: np.ndarray) -> np.ndarray:
        """Each coordinate's marginal quantile, (*p.shape, K): the x with
        Σ_c w_c Φ((x − m_ck)/s_ck) = p, by bisection between the least and the greatest of the
        components' own quantiles m_ck + s_ck·Φ⁻¹(p) (the mixture's lies between them)."""
        p = np.asarray(p, dtype=np.float64)
        own = objectives.reparameterize(
            self.means, self.logvars, standard_normal_quantile(p)[..., None, None]
        )
        low, high = own.min(axis=-2), own.max(axis=-2)  # (*p.shape, K)
        target = p[..., None]
        for _ in range(BISECTIONS):
            middle = 0.5 * (low + high)
            below = self.cdf(middle) < target
            low, high = np.where(below, middle, low), np.where(below, high, middle)
        return 0.5 * (low + high)


class ClassConditional(GaussianMixture):
    """The class prior p(z|y) = N(z; m_y, diag e^lv_y) of a conditional model, ``means`` and
    ``logvars`` (n_classes, K); its marginal (no labels) is the mixture over classes with equal
    weights. The KL to a diagonal Gaussian posterior has a closed form given the labels."""

    def __init__(self, means: np.ndarray, logvars: np.ndarray) -> None:
        classes = len(means)
        super().__init__(np.full(classes, 1.0 / classes), means, logvars, np.arange(classes))

    def _prior_of(self, labels: Array | None) -> tuple[np.ndarray, np.ndarray]:
        if labels is None:
            raise ConfigError("the class prior's KL needs the class label of each example")
        y = self._class_of(labels)
        return self.means[y], self.logvars[y]

    def kl_per_dim(self, mu: Array, logvar: Array, labels: Array | None = None) -> Array:
        """KL(N(mu, e^logvar) ‖ N(m_y, e^lv_y)) per example and dimension, (N, K), nats
        (:func:`vaekit.model.objectives.kl_per_dim_to`)."""
        means, logvars = (objectives.as_array(a, logvar) for a in self._prior_of(labels))
        return objectives.kl_per_dim_to(mu, logvar, means, logvars)

    def kl(self, mu: Array, logvar: Array, labels: Array | None = None) -> Array:
        """KL(q(z|x, y) ‖ p(z|y)) per example, (N,), nats."""
        return self.kl_per_dim(mu, logvar, labels).sum(-1)

    def kl_grad(
        self, mu: np.ndarray, logvar: np.ndarray, labels: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """(∂/∂mu, ∂/∂logvar) of :meth:`kl_per_dim`, elementwise (N, K), and
        {prior.means, prior.logvars}: ∂/∂m_c and ∂/∂lv_c of the per-dimension KLs summed over
        the examples of class c, (n_classes, K) (a scatter-add by label)."""
        means, logvars = self._prior_of(labels)
        d_mu, d_logvar, d_means, d_logvars = objectives.kl_per_dim_to_grad(
            mu, logvar, means, logvars
        )
        sums = {}
        for name, per_example in (("prior.means", d_means), ("prior.logvars", d_logvars)):
            total = np.zeros_like(self.means, dtype=per_example.dtype)
            np.add.at(total, np.asarray(labels), per_example)
            sums[name] = total
        return d_mu, d_logvar, sums


def for_config(config: ModelConfig, weights: dict[str, np.ndarray] | None = None) -> Prior:
    """The prior of a model without a network in it (standard or class), from ``weights``
    (the class prior's ``prior.means`` and ``prior.logvars``, used as given, not copied)."""
    if config.prior == "standard":
        return StandardNormal(config.prior_dim)
    if config.prior == "class":
        if weights is None:
            raise ValueError("the class prior is built from its weights")
        return ClassConditional(weights["prior.means"], weights["prior.logvars"])
    raise ConfigError(f"the {config.prior} prior is built by the torch engine")
