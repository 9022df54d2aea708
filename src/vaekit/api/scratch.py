"""The from-scratch learner API: a VAE described by its layer sizes, trained by the NumPy engine.

>>> vae = VAE([784, 400, 20], activation="relu", loss="bce", epochs=5)   # doctest: +SKIP
>>> vae.fit(X)                        # X: (N, 784) or (N, 28, 28) images
>>> mu, logvar = vae.encode(X)
>>> images = vae.reconstruct(X)
>>> new = vae.generate()              # one image from z ~ p(z), the prior; or vae.generate(z)

It is :class:`vaekit.api.estimator.VAE` (``transform``, ``sample``, ``score_samples``, ``save``,
``load`` …, and a scikit-learn estimator) with ``engine="numpy"`` and a constructor in the
original from-scratch style.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from vaekit.api import estimator
from vaekit.errors import ConfigError

#: Reconstruction losses by their common names → vaekit likelihoods.
LOSSES = {"bce": "bernoulli", "bernoulli": "bernoulli", "mse": "gaussian", "gaussian": "gaussian"}


class VAE(estimator.VAE):
    """``layer_sizes`` = (D, hidden…, K): the encoder's sizes; the decoder mirrors them.

    ``loss`` is ``bce`` (Bernoulli, sigmoid cross-entropy) or ``mse`` (Gaussian with fixed
    ``sigma``: squared error / (2σ²) plus a constant). ``scale`` turns raw values into inputs
    (``auto``: uint8 / 255, other data as it is; ``standardize`` or ``minmax`` for tables), and
    ``contamination`` is the share of held-out rows that ``predict`` flags (see
    :class:`vaekit.api.estimator.VAE`). ``__init__`` stores its arguments as they are; ``fit``
    checks them and derives the configs' fields from them.
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
        contamination: float = estimator.CONTAMINATION,
        verbose: bool = False,
    ) -> None:
        self.layer_sizes = layer_sizes
        self.activation = activation
        self.loss = loss
        self.sigma = sigma
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.beta = beta
        self.seed = seed
        self.scale = scale
        self.contamination = contamination
        self.verbose = verbose

    def _hyperparameters(self, input_shape: tuple[int, ...]) -> dict[str, Any]:
        """The estimator's parameters: hidden sizes and latent size from ``layer_sizes`` (whose
        first size must be the number of values per example), the likelihood from ``loss``,
        the NumPy engine on the CPU, the rest at their defaults."""
        sizes = tuple(self.layer_sizes)
        if len(sizes) < 2:
            raise ConfigError("layer_sizes needs at least the input size and the latent size")
        if math.prod(input_shape) != sizes[0]:
            raise ConfigError(
                f"X has {math.prod(input_shape)} values per example, but layer_sizes starts "
                f"with {sizes[0]}"
            )
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        values = {parameter.name: parameter.default for parameter in estimator.PARAMETERS}
        own = ("activation", "sigma", "epochs", "batch_size", "lr", "optimizer", "beta", "seed")
        values.update({name: getattr(self, name) for name in own})
        values.update(scale=self.scale, contamination=self.contamination, verbose=self.verbose)
        values.update(
            hidden=sizes[1:-1],
            latent_dim=sizes[-1],
            likelihood=LOSSES[self.loss],
            engine="numpy",
            device="cpu",
        )
        return values
