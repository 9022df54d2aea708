"""The VAE as a scikit-learn estimator (``BaseEstimator``, ``TransformerMixin``,
``OutlierMixin``): hyperparameters in ``__init__``, ``fit`` returns ``self``, learned state in
attributes ending in ``_``, ``transform`` to posterior means, the density-model methods
``score_samples``/``score``/``sample``, and the outlier-detector surface of scikit-learn's
``IsolationForest`` (``decision_function``, ``predict`` → +1 inlier / −1 outlier,
``threshold_`` = ``offset_``). It clones, sits in a ``Pipeline`` and is tuned by
``GridSearchCV`` (``score`` is the mean log-likelihood). It needs scikit-learn (the ``sklearn``
extra); ``import vaekit`` and the command line do not.

>>> vae = VAE(hidden=(256,), latent_dim=2, epochs=5).fit(images)     # doctest: +SKIP
>>> z = vae.transform(images)              # posterior means, (N, 2)
>>> log_px = vae.score_samples(images)     # importance-weighted log p(x), nats per example
>>> flags = vae.predict(images)            # −1 where log p(x) < threshold_, else +1
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable
from dataclasses import fields, replace
from difflib import get_close_matches
from inspect import Parameter, Signature
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.data import RawData
from vaekit.data import classes as class_names
from vaekit.data.pipeline import (
    TrainingData,
    check_compatible,
    check_unit_range,
    model_config,
)
from vaekit.data.readers import as_examples
from vaekit.data.scaling import Scaling, fit_array
from vaekit.disk import parse_json, read_regular, write_atomic
from vaekit.engines import Engine
from vaekit.engines.sampling import check_labels, reconstruct, sample_prior
from vaekit.errors import CheckpointError, ConfigError, DataError, MissingExtra
from vaekit.measure.evaluation import iwae_log_likelihood, outlier_threshold
from vaekit.model.custom_networks import import_path
from vaekit.runs.checkpoint import save_weights
from vaekit.runs.config_file import read_config, write_config
from vaekit.runs.layout import FEATURES_FILE, MAX_RECORD_BYTES, OUTLIERS_FILE
from vaekit.runs.loading import open_run
from vaekit.runs.metrics import read_metrics, write_metrics
from vaekit.train.loop import LoopState, fit, stop_sentence
from vaekit.train.start import engine_for
from vaekit.train.writer import format_epoch

try:
    from sklearn.base import (
        BaseEstimator,
        ClassNamePrefixFeaturesOutMixin,
        OutlierMixin,
        TransformerMixin,
    )
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError:
    raise MissingExtra("vaekit.api.estimator (the scikit-learn interface)", "sklearn") from None

ARRAY_SOURCE = "<array>"  # TrainConfig.data of a model fitted on an in-memory array
#: The config fields that are not hyperparameters: the data decide ``input_shape`` and
#: ``n_classes`` (set ``conditional`` instead); ``data`` is always ``ARRAY_SOURCE`` and
#: ``data_dir`` unused; ``sample_every``, ``sample_every_steps`` and ``sample_count`` set the
#: sample grids of a run directory, which ``fit`` does not write; ``image_size`` and
#: ``image_mode`` say how image files are read, and arrays are no files; ``logger`` feeds a run
#: directory's TensorBoard files.
EXCLUDED_FIELDS = (
    "input_shape",
    "n_classes",
    "data",
    "data_dir",
    "sample_every",
    "sample_every_steps",
    "sample_count",
    "image_size",
    "image_mode",
    "logger",
)
#: The default share of held-out examples that :meth:`VAE.predict` flags as outliers.
CONTAMINATION = 0.01
#: The hyperparameters that are no config field: a model conditional on ``y`` (its classes
#: counted from ``y``), printing one line per epoch, and the outlier share ``contamination``.
ESTIMATOR_PARAMS = (
    Parameter("conditional", Parameter.KEYWORD_ONLY, default=False, annotation="bool"),
    Parameter("verbose", Parameter.KEYWORD_ONLY, default=False, annotation="bool"),
    Parameter("contamination", Parameter.KEYWORD_ONLY, default=CONTAMINATION, annotation="float"),
)
#: The checks of scikit-learn's ``check_estimator`` (≥ 1.6) that this estimator fails, with
#: why: pass it as ``expected_failed_checks``; every other check passes.
EXPECTED_FAILED_CHECKS = {
    name: (
        "fit sets threshold_ to the contamination-quantile of log p(x) over held-out rows (the "
        "lower quantile: at most that share of them scores below it), not over the training "
        "rows, which a density model fits better than new ones; so the share of the training "
        "rows that predict flags is not exactly contamination, as this check requires"
    )
    for name in ("check_outliers_fit_predict", "check_outliers_train")
}
#: Importance samples and noise seed of :meth:`VAE.score_samples` by default, and of the
#: scores that ``threshold_`` is calibrated on and ``decision_function`` compares with it.
SCORE_K = 100
SCORE_SEED = 0


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
#: The hyperparameters that may be a class (your own networks), recorded by import path.
NETWORKS = ("encoder_module", "decoder_module")
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


def batch_kernel(function: Any, x: np.ndarray, labels: np.ndarray | None) -> Any:
    """``function(x, labels)`` (an array or a tuple of arrays, one row per row of x), a lone row
    passed twice: a single row is multiplied by another kernel (matrix × vector), whose float32
    rounding differs, and from two rows on a row's result does not depend on the batch."""
    if len(x) != 1:
        return function(x, labels)
    pair = None if labels is None else np.concatenate([labels, labels])
    out = function(np.concatenate([x, x]), pair)
    return tuple(a[:1] for a in out) if isinstance(out, tuple) else out[:1]


def check_held_out(train: TrainConfig, data: TrainingData) -> None:
    """``epochs='auto'`` and ``keep='best'`` follow the held-out score: refuse them, in one
    line, where ``val_fraction=0`` holds nothing out."""
    if data.held_out() is not None:
        return
    if train.auto:
        raise ConfigError(
            "epochs='auto' trains until the held-out score stops improving, and val_fraction=0 "
            "holds nothing out; give val_fraction > 0 or a number of epochs"
        )
    if train.keep == "best":
        raise ConfigError(
            "keep='best' keeps the epoch with the best held-out score, and val_fraction=0 "
            "holds nothing out; give val_fraction > 0 or keep='last'"
        )


def check_contamination(value: Any) -> float:
    """``contamination`` as a float in (0, 0.5], else one ConfigError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 0.5:
        raise ConfigError(f"contamination must be a number in (0, 0.5], got {value!r}")
    return float(value)


class VAE(ClassNamePrefixFeaturesOutMixin, OutlierMixin, TransformerMixin, BaseEstimator):
    """A variational autoencoder over arrays of shape (N, D), (N, H, W) or (N, C, H, W).

    Hyperparameters, all keywords: every field of :class:`~vaekit.config.settings.ModelConfig` and
    :class:`~vaekit.config.settings.TrainConfig` but ``EXCLUDED_FIELDS``, with the config's default
    (``SIGNATURE``), and ``conditional``, ``verbose`` and ``contamination``. ``__init__`` only
    stores them (an unknown keyword is a TypeError); ``fit`` validates them, as scikit-learn
    requires. ``encoder_module`` and ``decoder_module`` take your own ``torch.nn.Module`` class
    or its import path "package.module:ClassName" (:mod:`vaekit.model.custom_networks`); ``fit``
    records a class by its import path, so it must be importable by it.

    ``fit(X)`` holds out ``val_fraction`` of X (default None: 0.1, a draw seeded by ``seed``;
    0 trains on all of X) to score every epoch (``history_``'s ``val_loss``), for
    ``keep="best"`` (the estimator ends with the weights of the best epoch), for ``patience``
    (stop after that many epochs without a better held-out score) and to calibrate
    ``threshold_``. It fits ``scale`` on the training part once (``scaling_``: ``auto`` divides
    uint8 data by 255 and leaves other data as it is; ``standardize``, ``minmax``; see
    :mod:`vaekit.data.scaling`), and every method applies ``scaling_`` to its X, so a row gets
    the same answer in any batch. Methods that return data (``inverse_transform``,
    ``reconstruct``, ``sample``, ``generate``) return it in X's raw units; log-densities are of
    the scaled values (nats per example).

    After :meth:`fit`: ``engine_`` (the trained engine), ``model_config_``, ``train_config_``,
    ``history_`` (one metrics dict per epoch), ``scaling_``, ``n_features_in_`` (values per
    example: D, or C·H·W), ``feature_names_in_`` (for a DataFrame's columns), and
    ``classes_`` (a conditional model: its classes, the sorted unique values of ``y`` as
    ``numpy.unique`` gives them, scikit-learn's convention; code c inside the model is
    ``classes_[c]``, and every method that takes labels takes these values) and
    ``threshold_`` (also ``offset_``, scikit-learn's name): the ``contamination``-quantile
    (the ⌊c·(n−1)⌋-th smallest) of log p(x) over the n held-out rows (the training rows when
    ``val_fraction=0``), in nats, scored with ``threshold_k_`` importance samples and noise
    seed ``threshold_seed_``; ``threshold_size_`` is n. Before ``fit`` (or :meth:`load`),
    every method raises scikit-learn's ``NotFittedError``.
    """

    def __init__(self, **params: Any) -> None:
        check_names(params)
        for parameter in PARAMETERS:
            setattr(self, parameter.name, params.get(parameter.name, parameter.default))

    __init__.__signature__ = SIGNATURE  # type: ignore[attr-defined]

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags: ``transform`` returns the engine's float type (float32, or
        float64 for a float64 NumPy engine), whatever X's is; X may be an image array."""
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []
        return tags

    def __getstate__(self) -> dict[str, Any]:
        """The estimator's state for pickle (and joblib, ``copy.deepcopy``): a fitted engine
        goes as its weights (``get_weights``), engine-neutral arrays, not as the engine object."""
        state = super().__getstate__()
        if "engine_" in state:
            state = {**state, "engine_": state["engine_"].get_weights()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled estimator: a fitted one gets a fresh engine of its configs holding
        the pickled weights."""
        super().__setstate__(state)
        if "engine_" in state:
            self.engine_ = engine_for(self.model_config_, self.train_config_)
            self.engine_.set_weights(state["engine_"])

    # --- fitting ---------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None) -> VAE:
        """Train on ``X`` (raw values, at least 2 rows) for ``epochs`` epochs, holding out
        ``val_fraction`` of it; returns ``self``. ``y`` (class labels of any kind: numbers,
        strings, a pandas Series; ``classes_`` are their unique values) is required by, and
        used only by, a conditional model."""
        x = self._validated(X, reset=True)
        values = {parameter.name: getattr(self, parameter.name) for parameter in PARAMETERS}
        contamination = check_contamination(values["contamination"])
        labels, found = None, None
        if values["conditional"]:
            if y is None:
                raise ConfigError("a conditional VAE needs the labels: fit(X, y)")
            found, labels = class_names.class_codes(y, len(x))
        train = TrainConfig(data=ARRAY_SOURCE, **{name: values[name] for name in TRAIN_PARAMS})
        names = None if found is None else class_names.check_names(map(str, found.tolist()), "y")
        raw = RawData(x=x, y=labels, name="X", classes=names)
        data = TrainingData.prepare(train, raw, None)
        networks = {name: import_path(values[name], name) for name in NETWORKS}
        settings = {**{name: values[name] for name in MODEL_PARAMS}, **networks}
        model = model_config(settings, train, data, values["conditional"])
        check_compatible(model, data)
        check_held_out(train, data)
        engine = engine_for(model, train)
        best: dict[str, np.ndarray] = {}

        def on_epoch(engine: Engine, record: dict[str, Any], state: LoopState) -> None:
            if values["verbose"]:
                print(format_epoch(record, train.epochs))
                why = (
                    stop_sentence(train, record["stopped"], state) if "stopped" in record else None
                )
                if why is not None:
                    print(why)
            if train.keep == "best" and state.best_epoch == state.epoch:
                best.update((k, v.copy()) for k, v in engine.get_weights().items())

        self.history_ = fit(engine, train, data, on_epoch=on_epoch, progress=values["verbose"])
        if best:
            engine.set_weights(best)
        self.engine_, self.model_config_, self.train_config_ = engine, model, train
        self.scaling_: Scaling | None = data.scaling
        if found is not None:
            self.classes_ = found
        rows = data.val_rows if len(data.val_rows) else slice(None)
        self._calibrate(x[rows], None if labels is None else labels[rows], contamination)
        return self

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """``fit(X, y)``, then the posterior means of X (``y``: a conditional model's labels)."""
        return self.fit(X, y).transform(X, y)

    def _calibrate(self, x: np.ndarray, y: np.ndarray | None, contamination: float) -> None:
        """Set ``threshold_``: the ``contamination``-quantile of log p(x) over the raw rows x
        (checked by ``fit`` already), scored as :meth:`score_samples` scores."""
        scores = self._scores(self._scaled(x), y, SCORE_K, SCORE_SEED)
        self.threshold_ = outlier_threshold(scores, contamination)
        self.threshold_k_, self.threshold_seed_, self.threshold_size_ = (
            SCORE_K,
            SCORE_SEED,
            len(scores),
        )

    @property
    def offset_(self) -> float:
        """``threshold_`` under scikit-learn's name: ``decision_function`` = ``score_samples``
        − ``offset_``, as for ``IsolationForest``."""
        return self.threshold_

    @property
    def _n_features_out(self) -> int:
        """``transform``'s columns, named vae0, vae1, … by ``get_feature_names_out``."""
        return self.model_config_.latent_dim

    def _engine(self) -> Engine:
        check_is_fitted(self, "engine_")
        return self.engine_

    def _validated(self, X: Any, *, reset: bool) -> np.ndarray:
        """``X`` as an array of examples, (N, D) or (N, C, H, W), checked by scikit-learn (finite
        numbers, at least 2 rows to fit; a DataFrame's column names, ``feature_names_in_``);
        ``reset`` (in ``fit``) sets ``n_features_in_``, otherwise X's examples must have the
        model's shape. A bad X raises DataError."""
        try:
            x = validate_data(
                self,
                X,
                reset=reset,
                ensure_2d=False,
                allow_nd=True,
                dtype="numeric",
                ensure_min_samples=2 if reset else 1,
            )
        except ValueError as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(str(exc)) from None
        if x.ndim < 2:
            raise DataError(
                f"X is an array of shape {x.shape}, expected (N, D), (N, H, W) or (N, C, H, W). "
                "Reshape your data with X.reshape(-1, 1) for one feature or X.reshape(1, -1) "
                "for one example"
            )
        x = as_examples(x, "X")
        if reset:
            self.n_features_in_ = math.prod(x.shape[1:])
            return x
        expected = self._engine().config.input_shape
        if x.shape[1:] == expected:
            return x
        if x.ndim == 2 and len(expected) == 1:  # scikit-learn's words for a table
            raise DataError(
                f"X has {x.shape[1]} features, but {type(self).__name__} is expecting "
                f"{expected[0]} features as input"
            )
        raise DataError(f"X has examples of shape {x.shape[1:]}, the model expects {expected}")

    def _inputs(self, X: Any) -> np.ndarray:
        """Model inputs: ``X``'s raw values, of the model's example shape, scaled by
        ``scaling_`` (a run saved before scalings were stored: by ``auto``, per call)."""
        self._engine()
        return self._scaled(self._validated(X, reset=False))

    def _scaled(self, x: np.ndarray) -> np.ndarray:
        """Raw rows x as model inputs: scaled by ``scaling_`` (a run saved before scalings were
        stored: by ``auto``, per call)."""
        scaling = self.scaling_ if self.scaling_ is not None else fit_array("auto", x, source="X")
        return scaling.apply(x, "X")

    def _raw_units(self, x: np.ndarray) -> np.ndarray:
        """Model outputs in X's raw units (``scaling_.invert``)."""
        return x if self.scaling_ is None else self.scaling_.invert(x)

    # --- using the model -------------------------------------------------------------------

    def _labels(self, y: Any, n: int) -> np.ndarray | None:
        """A conditional model's codes of the labels ``y`` (values of ``classes_``, one, or one
        per example; None: the classes in turn); None for an unconditional model, which
        takes no labels."""
        engine = self._engine()
        if not engine.config.conditional or y is None:
            return check_labels(engine, y, n) if engine.config.conditional else None
        return check_labels(engine, class_names.codes_of(y, self.classes_), n)

    def encode(self, X: Any, y: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """(mu, logvar) of q(z|x[, y]), each (N, latent_dim)."""
        x = self._inputs(X)
        return batch_kernel(self._engine().encode, x, self._labels(y, len(x)))

    def transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Posterior means E[z|x], (N, latent_dim)."""
        return self.encode(X, y)[0]

    def inverse_transform(self, Z: Any, y: Any = None) -> np.ndarray:
        """The mean of p(x|z[, y]) for latents Z (N, latent_dim), in X's raw units, shape
        (N, *input_shape)."""
        latent = self._engine().config.latent_dim
        z = np.asarray(Z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != latent:
            raise DataError(f"Z must have shape (N, {latent})")
        decoded = batch_kernel(self._engine().decode, z, self._labels(y, len(z)))
        return self._raw_units(decoded)

    def reconstruct(self, X: Any, y: Any = None, seed: int = 0) -> np.ndarray:
        """Encode, draw z ~ q(z|x), decode: the mean of p(x|z) for each input, in X's units."""
        x = self._inputs(X)
        labels = self._labels(y, len(x))
        return self._raw_units(reconstruct(self._engine(), x, seed=seed, labels=labels))

    def sample(
        self, n_samples: int = 1, seed: int | None = None, labels: np.ndarray | int | None = None
    ) -> np.ndarray:
        """``n_samples`` draws of the decoder mean at z ~ p(z), the model's prior (of class
        ``labels``, values of ``classes_``, for a conditional model; default: the classes in
        turn), in X's units;
        ``seed`` defaults to the training seed."""
        engine = self._engine()
        seed = self.train_config_.seed if seed is None else seed
        codes = None if labels is None else class_names.codes_of(labels, self.classes_)
        return self._raw_units(sample_prior(engine, n_samples, seed=seed, labels=codes))

    def generate(
        self, z: np.ndarray | None = None, n: int = 1, seed: int = 0, labels: Any = None
    ) -> np.ndarray:
        """Decode the given latents ``z``, or ``n`` draws from the prior when ``z`` is None."""
        return self.sample(n, seed, labels) if z is None else self.inverse_transform(z, labels)

    def score_samples(
        self, X: Any, y: Any = None, k: int = SCORE_K, seed: int = SCORE_SEED
    ) -> np.ndarray:
        """Per-example log p(x) estimates of the scaled X in nats (float64): the k-sample
        importance-weighted bound L_k (higher is more normal, as scikit-learn's detectors). Each
        row's k samples come from a generator seeded by (``seed``, a hash of the row's scaled
        values), so a row gets the same score in any batch, at any position, alone or not."""
        x = self._inputs(X)
        return self._scores(x, self._labels(y, len(x)), k, seed)

    def _scores(self, x: np.ndarray, labels: np.ndarray | None, k: int, seed: int) -> np.ndarray:
        """:meth:`score_samples` of model inputs ``x`` (scaled)."""
        engine = self._engine()
        if engine.config.likelihood == "bernoulli":
            check_unit_range(float(x.min()), float(x.max()), "X", self.scaling_)
        return iwae_log_likelihood(engine, x, k, y=labels, seed=seed)

    def score(self, X: Any, y: Any = None, k: int = SCORE_K) -> float:
        """The mean of ``score_samples``: the average log p(x) estimate over X, nats per example
        (higher is better), so that ``GridSearchCV`` and ``cross_val_score`` choose by held-out
        likelihood. ``y``: a conditional model's labels, ignored otherwise."""
        return float(self.score_samples(X, y, k).mean())

    # --- outliers ----------------------------------------------------------------------------

    def decision_function(self, X: Any, y: Any = None) -> np.ndarray:
        """log p(x) − ``threshold_`` per example, nats, scored as ``threshold_`` was (k =
        ``threshold_k_``, seed ``threshold_seed_``): negative for outliers."""
        if not hasattr(self, "threshold_"):
            self._engine()
            raise ConfigError(
                "this VAE has no outlier threshold (its run was not saved by VAE.save); fit "
                "it, or use `vaekit score RUN INPUT --threshold-fpr P`"
            )
        scores = self.score_samples(X, y, k=self.threshold_k_, seed=self.threshold_seed_)
        return scores - self.threshold_

    def predict(self, X: Any, y: Any = None) -> np.ndarray:
        """+1 for inliers, −1 for outliers (``decision_function`` < 0), int64 (N,)."""
        return np.where(self.decision_function(X, y) < 0, -1, 1)

    def _outliers_record(self) -> dict[str, Any]:
        return {
            "contamination": self.contamination,
            "threshold": self.threshold_,
            "k": self.threshold_k_,
            "seed": self.threshold_seed_,
            "held_out": self.threshold_size_,
        }

    def _restore_outliers(self, run_dir: Path) -> None:
        """``threshold_`` and its settings from ``run_dir``'s outliers.json, when it has one."""
        path = run_dir / OUTLIERS_FILE
        if not path.exists() and not path.is_symlink():
            return
        try:
            record = parse_json(read_regular(path, MAX_RECORD_BYTES, CheckpointError))
            contamination = check_contamination(record["contamination"])
            threshold, k, seed, size = (
                record[key] for key in ("threshold", "k", "seed", "held_out")
            )
            if not (
                isinstance(threshold, float)
                and math.isfinite(threshold)
                and all(type(v) is int and v >= 0 for v in (k, seed, size))
                and k >= 1
            ):
                raise ValueError("a threshold, k, seed or held_out that is out of range")
        except (OSError, ValueError, KeyError, TypeError, ConfigError) as exc:
            raise CheckpointError(f"{path} is not a vaekit outlier record ({exc})") from None
        self.contamination, self.threshold_ = contamination, threshold
        self.threshold_k_, self.threshold_seed_, self.threshold_size_ = k, seed, size

    # --- persistence -------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the model as a run directory (config.json, model.safetensors, metrics.jsonl,
        scaling.json, outliers.json and, for a conditional model, classes.json) that
        :meth:`load` and the command line (``vaekit sample PATH``) read. It holds no optimizer
        state, so it cannot be resumed. Refuses a non-empty directory, and a symbolic link (it
        is not followed)."""
        engine = self._engine()
        run_dir = Path(path)
        if run_dir.is_symlink():
            raise ConfigError(f"{run_dir} is a symbolic link; save to a directory path")
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise ConfigError(f"{run_dir} exists and is not an empty directory")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, self.model_config_, self.train_config_, "estimator")
        save_weights(run_dir, engine)
        write_metrics(run_dir, self.history_)
        if self.scaling_ is not None:
            self.scaling_.save(run_dir)
        if hasattr(self, "classes_"):
            numbers = self.classes_.dtype.kind in "iuf"
            names = [str(value) for value in self.classes_]
            class_names.save(run_dir, names, self.classes_.tolist() if numbers else None)
        if hasattr(self, "threshold_"):
            write_atomic(run_dir / OUTLIERS_FILE, json.dumps(self._outliers_record()).encode())
        if hasattr(self, "feature_names_in_"):
            names = {"feature_names": [str(name) for name in self.feature_names_in_]}
            write_atomic(run_dir / FEATURES_FILE, json.dumps(names).encode())

    @classmethod
    def load(
        cls,
        path: str | Path,
        engine: str | None = None,
        device: str = "auto",
        checkpoint: str | None = None,
        *,
        trust_code: bool = False,
    ) -> VAE:
        """A :class:`VAE` holding the weights of the run directory ``path`` (any vaekit run):
        its ``checkpoint`` ``last`` or ``best`` (default: the run's own choice, best where it
        kept them: ``--epochs auto``, ``--keep best``; see
        :func:`vaekit.runs.loading.weights_of`), its
        stored scaling and, for a run :meth:`save` wrote, its outlier threshold. A run that
        names its own networks by import path needs ``trust_code=True`` (importing a module
        runs its code), unless your code has imported their modules already."""
        run_dir = Path(path)
        model, train, _ = read_config(run_dir, trust_code=trust_code)
        vae = VAE(
            conditional=model.conditional,
            **{name: getattr(model, name) for name in MODEL_PARAMS},
            **{name: getattr(train, name) for name in TRAIN_PARAMS},
        )
        vae.engine, vae.device = engine or train.engine, device
        vae.engine_ = open_run(run_dir, engine, device, which=checkpoint)
        vae.model_config_, vae.train_config_ = (
            model,
            replace(train, engine=vae.engine, device=device),
        )
        vae.history_ = read_metrics(run_dir)
        vae.n_features_in_ = math.prod(model.input_shape)
        vae.scaling_ = Scaling.load(run_dir)
        if model.conditional:
            vae.classes_ = class_names.stored_classes(run_dir, model.n_classes)
        vae._restore_outliers(run_dir)
        vae._restore_feature_names(run_dir)
        return vae

    def _restore_feature_names(self, run_dir: Path) -> None:
        """``feature_names_in_`` from ``run_dir``'s features.json, when it has one: the column
        names that every later X (a DataFrame) must have, in order."""
        path = run_dir / FEATURES_FILE
        if not path.exists() and not path.is_symlink():
            return
        try:
            names = parse_json(read_regular(path, MAX_RECORD_BYTES, CheckpointError))
            names = names["feature_names"]
            if not (
                isinstance(names, list)
                and len(names) == self.n_features_in_
                and all(isinstance(name, str) for name in names)
            ):
                raise ValueError(f"not {self.n_features_in_} column names")
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise CheckpointError(
                f"{path} is not a vaekit record of column names ({exc})"
            ) from None
        self.feature_names_in_ = np.asarray(names, dtype=object)
