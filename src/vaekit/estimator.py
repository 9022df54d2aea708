"""A scikit-learn-style VAE: hyperparameters in ``__init__``, ``fit`` returns ``self``, learned
state in attributes ending in ``_``, and the density-model methods ``score_samples``/``sample``.

>>> vae = VAE(hidden=(256,), latent_dim=2, epochs=5).fit(images)     # doctest: +SKIP
>>> z = vae.transform(images)              # posterior means, (N, 2)
>>> log_px = vae.score_samples(images)     # importance-weighted log p(x), nats per example
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import fields, replace
from difflib import get_close_matches
from inspect import Parameter, Signature
from pathlib import Path
from typing import Any

import numpy as np

from vaekit import checkpoint
from vaekit.config import ModelConfig, TrainConfig
from vaekit.data import Dataset
from vaekit.data.files import as_examples
from vaekit.data.labels import class_labels
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
#: The config fields that are not hyperparameters: the data decide ``input_shape`` and
#: ``n_classes`` (set ``conditional`` instead); ``data`` is always ``ARRAY_SOURCE`` and
#: ``data_dir`` unused; ``sample_every``, ``sample_every_steps`` and ``sample_count`` set the
#: sample grids of a run directory, which ``fit`` does not write.
EXCLUDED_FIELDS = (
    "input_shape",
    "n_classes",
    "data",
    "data_dir",
    "sample_every",
    "sample_every_steps",
    "sample_count",
)
#: The hyperparameters that are no config field: a model conditional on ``y`` (its classes
#: counted from ``y``), and printing one line per epoch.
ESTIMATOR_PARAMS = (
    Parameter("conditional", Parameter.KEYWORD_ONLY, default=False, annotation="bool"),
    Parameter("verbose", Parameter.KEYWORD_ONLY, default=False, annotation="bool"),
)


def config_parameters(*configs: type) -> tuple[Parameter, ...]:
    """Keyword parameters named after the fields of the dataclasses ``configs`` (but
    ``EXCLUDED_FIELDS``), with each field's default and annotation, in field order."""
    return tuple(
        Parameter(f.name, Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
        for config in configs
        for f in fields(config)
        if f.name not in EXCLUDED_FIELDS
    )


MODEL_PARAMS = tuple(p.name for p in config_parameters(ModelConfig))
TRAIN_PARAMS = tuple(p.name for p in config_parameters(TrainConfig))
#: Every hyperparameter, keyword-only, with its default, and ``VAE.__init__``'s signature.
PARAMETERS = (*config_parameters(ModelConfig, TrainConfig), *ESTIMATOR_PARAMS)
SIGNATURE = Signature([Parameter("self", Parameter.POSITIONAL_OR_KEYWORD), *PARAMETERS])


class UnknownParameter(ConfigError, TypeError):
    """A keyword that is no hyperparameter of the estimator (a TypeError, as Python's own)."""


def check_names(names: Iterable[str]) -> None:
    """Refuse the first of ``names`` that is no hyperparameter, naming the nearest one."""
    known = [parameter.name for parameter in PARAMETERS]
    for name in names:
        if name not in known:
            nearest = get_close_matches(name, known, n=1, cutoff=0.0)
            raise UnknownParameter(f"VAE has no parameter {name!r}; did you mean {nearest[0]!r}?")


class VAE:
    """A variational autoencoder over arrays of shape (N, D), (N, H, W) or (N, C, H, W).

    Hyperparameters, all keywords: every field of :class:`~vaekit.config.ModelConfig` and
    :class:`~vaekit.config.TrainConfig` but ``EXCLUDED_FIELDS``, with the config's default
    (``SIGNATURE``), and ``conditional`` and ``verbose``. After :meth:`fit`: ``engine_`` (the
    trained engine), ``model_config_``, ``train_config_`` and ``history_`` (one metrics dict per
    epoch). uint8 data and data in 0..255 are scaled to [0, 1], as the command line does.
    """

    def __init__(self, **params: Any) -> None:
        check_names(params)
        for parameter in PARAMETERS:
            setattr(self, parameter.name, params.get(parameter.name, parameter.default))

    __init__.__signature__ = SIGNATURE  # type: ignore[attr-defined]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The hyperparameters by name, as ``__init__``'s signature lists them (``deep`` is
        scikit-learn's flag; a VAE holds no nested estimators)."""
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

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
            labels = class_labels(y, "y", len(x))
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
        """``n_samples`` draws of the decoder mean at z ~ p(z), the model's prior (of class
        ``labels`` for a conditional model; default: the classes in turn)."""
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
