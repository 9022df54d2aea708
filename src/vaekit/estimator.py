"""A scikit-learn-style VAE: hyperparameters in ``__init__``, ``fit`` returns ``self``, learned
state in attributes ending in ``_``, and the density-model methods ``score_samples``/``sample``.

>>> vae = VAE(hidden=(256,), latent_dim=2, epochs=5).fit(images)     # doctest: +SKIP
>>> z = vae.transform(images)              # posterior means, (N, 2)
>>> log_px = vae.score_samples(images)     # importance-weighted log p(x), nats per example
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from vaekit import checkpoint
from vaekit.config import ModelConfig, TrainConfig
from vaekit.data import Dataset
from vaekit.data.files import as_examples
from vaekit.engines import Engine
from vaekit.errors import ConfigError
from vaekit.evaluation import iwae_log_likelihood
from vaekit.sampling import check_labels, reconstruct, sample_prior
from vaekit.training import (
    LoopState,
    TrainingData,
    check_compatible,
    engine_for,
    fit,
    format_epoch,
)

ARRAY_SOURCE = "<array>"  # TrainConfig.data of a model fitted on an in-memory array
#: The estimator's hyperparameters that are ModelConfig / TrainConfig settings of the same name.
MODEL_PARAMS = (
    "hidden",
    "latent_dim",
    "decoder_hidden",
    "activation",
    "likelihood",
    "sigma",
    "learn_sigma",
    "beta",
    "arch",
    "free_bits",
    "objective",
    "iw_samples",
)
TRAIN_PARAMS = (
    "engine",
    "device",
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "momentum",
    "kl_warmup",
    "binarize",
    "seed",
)


class VAE:
    """A variational autoencoder over arrays of shape (N, D), (N, H, W) or (N, C, H, W).

    Hyperparameters are those of :class:`~vaekit.config.ModelConfig` and
    :class:`~vaekit.config.TrainConfig`. After :meth:`fit`: ``engine_`` (the trained engine),
    ``model_config_``, ``train_config_`` and ``history_`` (one metrics dict per epoch).
    uint8 data and data in 0..255 are scaled to [0, 1], as the command line does.
    """

    def __init__(
        self,
        hidden: tuple[int, ...] = (400,),
        latent_dim: int = 20,
        *,
        decoder_hidden: tuple[int, ...] | None = None,
        activation: str = "relu",
        likelihood: str = "bernoulli",
        sigma: float = 1.0,
        learn_sigma: str = "fixed",
        beta: float = 1.0,
        arch: str = "mlp",
        conditional: bool = False,
        free_bits: float = 0.0,
        objective: str = "elbo",
        iw_samples: int = 1,
        engine: str = "torch",
        epochs: int = 10,
        batch_size: int = 128,
        lr: float = 1e-3,
        optimizer: str = "adam",
        momentum: float = 0.0,
        kl_warmup: float = 0.0,
        binarize: str = "none",
        seed: int = 0,
        device: str = "auto",
        verbose: bool = False,
    ) -> None:
        self.hidden = hidden
        self.latent_dim = latent_dim
        self.decoder_hidden = decoder_hidden
        self.activation = activation
        self.likelihood = likelihood
        self.sigma = sigma
        self.learn_sigma = learn_sigma
        self.beta = beta
        self.arch = arch
        self.conditional = conditional
        self.free_bits = free_bits
        self.objective = objective
        self.iw_samples = iw_samples
        self.engine = engine
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.momentum = momentum
        self.kl_warmup = kl_warmup
        self.binarize = binarize
        self.seed = seed
        self.device = device
        self.verbose = verbose

    # --- fitting ---------------------------------------------------------------------------

    def _configs(
        self, input_shape: tuple[int, ...], n_classes: int = 0
    ) -> tuple[ModelConfig, TrainConfig]:
        model = ModelConfig(
            input_shape=input_shape,
            n_classes=n_classes,
            **{name: getattr(self, name) for name in MODEL_PARAMS},
        )
        train = TrainConfig(
            data=ARRAY_SOURCE, **{name: getattr(self, name) for name in TRAIN_PARAMS}
        )
        return model, train

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> VAE:
        """Train on ``X`` for ``epochs`` epochs; returns ``self``. ``y`` (int class labels) is
        required by, and used only by, a conditional model."""
        x = as_examples(np.asarray(X), "X")
        labels = None
        if self.conditional:
            if y is None:
                raise ConfigError("a conditional VAE needs the labels: fit(X, y)")
            labels = np.asarray(y, dtype=np.int64)
            if labels.shape != (len(x),) or labels.min() < 0:
                raise ConfigError("y must hold one class index (0, 1, …) per example")
        n_classes = int(labels.max()) + 1 if labels is not None else 0
        model, train = self._configs(tuple(x.shape[1:]), n_classes)
        data = TrainingData.prepare(train, Dataset(x=x, y=labels, name=ARRAY_SOURCE), None)
        check_compatible(model, data)
        engine = engine_for(model, train)

        def report(engine: Engine, record: dict[str, Any], state: LoopState) -> None:
            print(format_epoch(record, train.epochs))

        hook = report if self.verbose else None
        self.history_ = fit(engine, train, data, on_epoch=hook, progress=self.verbose)
        self.engine_, self.model_config_, self.train_config_ = engine, model, train
        return self

    def _engine(self) -> Engine:
        if not hasattr(self, "engine_"):
            raise ConfigError("this VAE is not fitted yet; call fit(X) or VAE.load(path) first")
        return self.engine_

    def _inputs(self, X: np.ndarray) -> np.ndarray:
        x = as_examples(np.asarray(X), "X")
        expected = self._engine().config.input_shape
        if x.shape[1:] != expected:
            raise ConfigError(
                f"X has examples of shape {x.shape[1:]}, the model expects {expected}"
            )
        return x

    # --- using the model -------------------------------------------------------------------

    def _labels(self, y: np.ndarray | None, n: int) -> np.ndarray | None:
        return check_labels(self._engine(), y, n) if self._engine().config.conditional else None

    def encode(self, X: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mu, logvar) of q(z|x[, y]), each (N, latent_dim)."""
        x = self._inputs(X)
        return self._engine().encode(x, self._labels(y, len(x)))

    def transform(self, X: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        """Posterior means E[z|x], (N, latent_dim)."""
        return self.encode(X, y)[0]

    def inverse_transform(self, Z: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        """The mean of p(x|z[, y]) for latents Z (N, latent_dim), shape (N, *input_shape)."""
        z = np.asarray(Z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self._engine().config.latent_dim:
            raise ConfigError(f"Z must have shape (N, {self._engine().config.latent_dim})")
        return self._engine().decode(z, self._labels(y, len(z)))

    def reconstruct(self, X: np.ndarray, y: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
        """Encode, draw z ~ q(z|x), decode: the mean of p(x|z) for each input."""
        x = self._inputs(X)
        return reconstruct(self._engine(), x, seed=seed, labels=self._labels(y, len(x)))

    def sample(
        self, n_samples: int = 1, seed: int | None = None, labels: np.ndarray | int | None = None
    ) -> np.ndarray:
        """``n_samples`` draws of the decoder mean at z ~ N(0, I) (of class ``labels`` for a
        conditional model; default: the classes in turn)."""
        seed = self.seed if seed is None else seed
        return sample_prior(self._engine(), n_samples, seed=seed, labels=labels)

    def generate(
        self, z: np.ndarray | None = None, n: int = 1, seed: int = 0, labels: Any = None
    ) -> np.ndarray:
        """Decode the given latents ``z``, or ``n`` draws from the prior when ``z`` is None."""
        return self.sample(n, seed, labels) if z is None else self.inverse_transform(z, labels)

    def score_samples(
        self, X: np.ndarray, y: np.ndarray | None = None, k: int = 100, seed: int = 0
    ) -> np.ndarray:
        """Per-example log p(x) estimates in nats: the k-sample importance-weighted bound."""
        x = self._inputs(X)
        return iwae_log_likelihood(self._engine(), x, k, y=self._labels(y, len(x)), seed=seed)

    def score(self, X: np.ndarray, y: np.ndarray | None = None, k: int = 100) -> float:
        """Mean log p(x) estimate over ``X``, nats per example (higher is better)."""
        return float(self.score_samples(X, y, k).mean())

    # --- persistence -------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the model as a run directory (config.json, model.safetensors, metrics.jsonl)
        that :meth:`load` and the command line (``vaekit sample PATH``) read. It holds no
        optimizer state, so it cannot be resumed. Refuses a non-empty directory."""
        engine = self._engine()
        run_dir = Path(path)
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise ConfigError(f"{run_dir} exists and is not an empty directory")
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.write_config(run_dir, self.model_config_, self.train_config_, "estimator")
        checkpoint.save_weights(run_dir, engine)
        checkpoint.write_metrics(run_dir, self.history_)

    @classmethod
    def load(cls, path: str | Path, engine: str | None = None, device: str = "auto") -> VAE:
        """A :class:`VAE` holding the weights of the run directory ``path`` (any vaekit run)."""
        model, train, _ = checkpoint.read_config(path)
        vae = VAE(
            conditional=model.conditional,
            **{name: getattr(model, name) for name in MODEL_PARAMS},
            **{name: getattr(train, name) for name in TRAIN_PARAMS},
        )
        vae.engine, vae.device = engine or train.engine, device
        vae.engine_ = checkpoint.open_run(path, engine, device)
        vae.model_config_, vae.train_config_ = model, replace(train, engine=vae.engine)
        vae.history_ = checkpoint.read_metrics(path)
        return vae
