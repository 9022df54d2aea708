"""The from-scratch VAE of the NumPy tutorial vaekit began from: a class described by its layer
sizes, with the tutorial's verbs, trained by the NumPy engine's hand-written forward and
backward passes (:mod:`vaekit.engines.handwritten`).

>>> vae = ScratchVAE([784, 400, 20], activation="relu", loss="bce", epochs=5)  # doctest: +SKIP
>>> vae.train(X)                      # X: (N, 784) or (N, 28, 28) images
>>> mu, logvar = vae.encode(X)        # q(z|x) = N(mu, diag e^logvar)
>>> images = vae.predict(X)           # reconstructions: decoder means at z ~ q(z|x)
>>> new = vae.generate()              # one image from z ~ p(z), the prior; or vae.generate(z)

It wraps the scikit-learn estimator :class:`vaekit.VAE` (``engine="numpy"``), kept as
``estimator`` for everything else it offers (scores, outlier flags, ``transform``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.api.estimator import VAE
from vaekit.errors import ConfigError, DataError

#: Reconstruction losses by their common names → vaekit likelihoods.
LOSSES = {"bce": "bernoulli", "bernoulli": "bernoulli", "mse": "gaussian", "gaussian": "gaussian"}


class ScratchVAE:
    """``layer_sizes`` = (D, hidden…, K): the encoder's sizes; the decoder mirrors them.

    ``loss`` is ``bce`` (Bernoulli, sigmoid cross-entropy) or ``mse`` (Gaussian with fixed
    ``sigma``: squared error / (2σ²) plus a constant, nats). ``scale`` turns raw values into
    inputs (``auto``: uint8 / 255, other data as it is; ``standardize`` or ``minmax`` for
    tables). The other keywords are the training settings of :class:`vaekit.VAE`.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int] = (784, 400, 20),
        activation: str = "relu",
        loss: str = "bce",
        sigma: float = 1.0,
        *,
        epochs: int = 10,
        batch_size: int = 128,
        lr: float = 1e-3,
        optimizer: str = "adam",
        beta: float = 1.0,
        seed: int = 0,
        scale: str = "auto",
        verbose: bool = False,
    ) -> None:
        sizes = tuple(layer_sizes)
        if len(sizes) < 2:
            raise ConfigError("layer_sizes needs at least the input size and the latent size")
        if loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
        self.layer_sizes = sizes
        self.estimator = VAE(
            hidden=sizes[1:-1],
            latent_dim=sizes[-1],
            activation=activation,
            likelihood=LOSSES[loss],
            sigma=sigma,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            beta=beta,
            seed=seed,
            scale=scale,
            verbose=verbose,
            engine="numpy",
            device="cpu",
        )

    def train(self, X: Any) -> ScratchVAE:
        """Fit the weights to ``X`` (raw values, D = ``layer_sizes[0]`` per example) by
        minimising the negative ELBO, nats per example; returns ``self``."""
        values = math.prod(np.shape(X)[1:])
        if values != self.layer_sizes[0]:
            raise DataError(
                f"X has {values} values per example, but layer_sizes starts with "
                f"{self.layer_sizes[0]}"
            )
        self.estimator.fit(X)
        return self

    def encode(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """(mu, logvar) of q(z|x) for each example, each (N, K)."""
        return self.estimator.encode(self._as_trained(X))

    def predict(self, X: Any, seed: int = 0) -> np.ndarray:
        """The reconstruction of each example: the decoder's mean at z ~ q(z|x) (noise from
        ``seed``), in X's shape and units."""
        x = self._as_trained(X)
        return self.estimator.reconstruct(x, seed=seed).reshape(np.shape(X))

    def _as_trained(self, X: Any) -> np.ndarray:
        """``X`` with its examples in the shape of those trained on (flat rows and images of
        the same number of values are the same examples)."""
        x, config = np.asarray(X), getattr(self.estimator, "model_config_", None)
        if config is None or x.ndim < 2 or math.prod(x.shape[1:]) != math.prod(config.input_shape):
            return x  # the estimator says what is wrong
        return x.reshape(len(x), *config.input_shape)

    def generate(self, z: np.ndarray | None = None, n: int = 1, seed: int = 0) -> np.ndarray:
        """Decode the latents ``z`` (M, K), or ``n`` draws z ~ p(z) when ``z`` is None."""
        return self.estimator.generate(z, n, seed)

    def save(self, path: str | Path) -> None:
        """Write a run directory (any vaekit command opens it)."""
        self.estimator.save(path)

    @classmethod
    def load(cls, path: str | Path) -> ScratchVAE:
        """A ScratchVAE holding the weights of the run ``path``: a multilayer-perceptron VAE
        with a standard normal prior, as :meth:`save` writes."""
        estimator = VAE.load(path, engine="numpy", device="cpu")
        config = estimator.model_config_
        if config.arch != "mlp" or config.prior != "standard" or config.conditional:
            raise ConfigError(f"{path} is not a from-scratch VAE: open it with vaekit.VAE.load")
        vae = cls.__new__(cls)
        vae.layer_sizes = (math.prod(config.input_shape), *config.hidden, config.latent_dim)
        vae.estimator = estimator
        return vae
