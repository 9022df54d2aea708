"""The from-scratch learner API: a VAE described by its layer sizes, trained by the NumPy engine.

>>> vae = VAE([784, 400, 20], activation="relu", loss="bce", epochs=5)   # doctest: +SKIP
>>> vae.fit(X)                        # X: (N, 784) or (N, 28, 28) images
>>> mu, logvar = vae.encode(X)
>>> images = vae.reconstruct(X)
>>> new = vae.generate()              # one image from z ~ p(z), the prior; or vae.generate(z)

It is :class:`vaekit.estimator.VAE` (``transform``, ``sample``, ``score_samples``, ``save``,
``load`` …) with ``engine="numpy"`` and a constructor in the original from-scratch style.
"""

from __future__ import annotations

from collections.abc import Sequence

from vaekit import estimator
from vaekit.errors import ConfigError

#: Reconstruction losses by their common names → vaekit likelihoods.
LOSSES = {"bce": "bernoulli", "bernoulli": "bernoulli", "mse": "gaussian", "gaussian": "gaussian"}


class VAE(estimator.VAE):
    """``layer_sizes`` = (D, hidden…, K): the encoder's sizes; the decoder mirrors them.

    ``loss`` is ``bce`` (Bernoulli, sigmoid cross-entropy) or ``mse`` (Gaussian with fixed
    ``sigma``: squared error / (2σ²) plus a constant).
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
        verbose: bool = False,
    ) -> None:
        if len(layer_sizes) < 2:
            raise ConfigError("layer_sizes needs at least the input size and the latent size")
        if loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
        self.layer_sizes = tuple(layer_sizes)
        self.loss = loss
        super().__init__(
            hidden=self.layer_sizes[1:-1],
            latent_dim=self.layer_sizes[-1],
            activation=activation,
            likelihood=LOSSES[loss],
            sigma=sigma,
            beta=beta,
            engine="numpy",
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            seed=seed,
            device="cpu",
            verbose=verbose,
        )

    def fit(self, X, y=None) -> VAE:
        """Train on X; each example must have ``layer_sizes[0]`` values."""
        features = int(X[0].size) if len(X) else 0
        if features != self.layer_sizes[0]:
            raise ConfigError(
                f"X has {features} values per example, "
                f"but layer_sizes starts with {self.layer_sizes[0]}"
            )
        return super().fit(X, y)
