"""The data pipeline: raw examples become model inputs the same way for training, every command,
the estimator and the explorer: hold out the validation split, scale, view, binarize, check.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vaekit.config.defaults import colour_image_defaults
from vaekit.config.settings import ModelConfig, TrainConfig, default_prior
from vaekit.data import RawData, binarize, load_raw
from vaekit.data.scaling import Scaling
from vaekit.data.scaling import fit as fit_scaling
from vaekit.data.sources import Scaled, Subset, chunks, in_memory
from vaekit.data.splits import validation_split
from vaekit.errors import ConfigError, DataError

#: Training data read from a lazy source (not a NumPy array) whose float32 size exceeds this many
#: bytes is read batch by batch as the loop needs it; smaller data is held in memory.
STREAM_BYTES = 2**30


#: The held-out share of data without a test split when ``val_fraction`` is not given.
DEFAULT_VAL_FRACTION = 0.1


@dataclass(frozen=True)
class TrainingData:
    """Model inputs: training examples, optional validation (held out of the training data) and
    test examples, each scaled by ``scaling`` and binarized as the protocol says (except
    ``dynamic`` training data, sampled afresh per batch, and streamed training data, binarized
    per batch). Each set is a NumPy array, or an array-like read on demand when ``streamed``.
    ``classes`` names the labels' codes when the training data names them (None: numbers)."""

    train: Any
    test: Any | None
    train_labels: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    val: Any | None = None
    val_labels: np.ndarray | None = None
    scaling: Scaling | None = None
    streamed: bool = False
    #: A fixed binarization the loop applies to each batch of streamed training data.
    per_batch: str = "none"
    #: The rows of the raw training data held out for validation (empty: none).
    val_rows: np.ndarray = dataclasses.field(default_factory=lambda: np.arange(0))
    classes: tuple[str, ...] | None = None

    @classmethod
    def load(
        cls, config: TrainConfig, *, stream: bool | None = None, scaling: Scaling | None = None
    ) -> TrainingData:
        """:meth:`prepare` of the raw training and test data that ``config`` names."""
        size, mode = config.image_size, config.image_mode
        train, test = (
            load_raw(config.data, split, config.data_dir, image_size=size, image_mode=mode)
            for split in ("train", "test")
        )
        return cls.prepare(config, train, test, scaling=scaling, stream=stream)

    @classmethod
    def prepare(
        cls,
        config: TrainConfig,
        train: RawData,
        test: RawData | None,
        *,
        scaling: Scaling | None = None,
        stream: bool | None = None,
    ) -> TrainingData:
        """Hold out the validation split (:func:`split_rows`), fit
        ``config.scale`` on the training part alone (unless a stored ``scaling`` is given),
        scale every set, and apply the binarization protocol: fixed samples for static, and
        for dynamic's held-out data. ``stream`` None: stream training data from a lazy source
        larger than :data:`STREAM_BYTES`."""
        train_idx, val_idx = split_rows(config, len(train.x), test is not None)
        if scaling is None:
            scaling = fit_scaling(
                config.scale,
                chunks(Subset(train.x, train_idx)),
                train.x.dtype,
                pixels=train.pixels,
                source=train.name,
                rows=train_idx,
            )
        if stream is None:
            stream = (
                not isinstance(train.x, np.ndarray) and 4 * math.prod(train.x.shape) > STREAM_BYTES
            )
        if stream and config.binarize == "static":
            raise ConfigError(
                "--binarize static draws one sample of the whole data set, which is read in "
                "batches here (it is larger than memory allows); use --binarize dynamic or "
                "threshold"
            )
        fixed = fixed_binarization(config.binarize)

        def inputs(raw: Any, index: np.ndarray | None, name: str, held_out: bool) -> Any:
            view = raw if index is None else Subset(raw, index)
            view = Scaled(view, scaling, name)
            if stream:
                return Binarized(view, fixed) if held_out and fixed != "none" else view
            x = in_memory(view)
            return x if not held_out and config.binarize == "dynamic" else binarize(x, fixed)

        def labels(y: np.ndarray | None, index: np.ndarray) -> np.ndarray | None:
            return None if y is None else y[index]

        has_val = len(val_idx) > 0
        return cls(
            train=inputs(train.x, train_idx, train.name, held_out=False),
            test=None if test is None else inputs(test.x, None, test.name, held_out=True),
            train_labels=labels(train.y, train_idx),
            test_labels=None if test is None else test.y,
            val=inputs(train.x, val_idx, train.name, held_out=True) if has_val else None,
            val_labels=labels(train.y, val_idx) if has_val else None,
            scaling=scaling,
            streamed=stream,
            per_batch="threshold" if stream and config.binarize == "threshold" else "none",
            val_rows=val_idx,
            classes=train.classes,
        )

    def held_out(self) -> tuple[Any, np.ndarray | None, str] | None:
        """(examples, labels, name) of the held-out data that scores every epoch: the
        validation split when there is one, else the test split; None without either."""
        if self.val is not None:
            return self.val, self.val_labels, "validation"
        if self.test is not None:
            return self.test, self.test_labels, "test"
        return None


class Binarized:
    """``base``'s examples binarized by a fixed ``mode`` (threshold or static) as they are read;
    ``static`` draws from its fixed seed at every read, so it gives the same values to the same
    reads (evaluation reads in fixed batches)."""

    def __init__(self, base: Any, mode: str) -> None:
        self.base, self.mode = base, mode
        self.shape, self.dtype, self.ndim = base.shape, np.dtype(np.float32), base.ndim

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        return binarize(self.base[key], self.mode)


def held_out_fraction(config: TrainConfig, has_test: bool) -> float:
    """The share of the training examples held out for validation: ``config.val_fraction``,
    else :data:`DEFAULT_VAL_FRACTION` for data without a test split and 0 for data with one."""
    if config.val_fraction is not None:
        return config.val_fraction
    return 0.0 if has_test else DEFAULT_VAL_FRACTION


def split_rows(config: TrainConfig, n: int, has_test: bool) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows) of ``n`` training examples: a seeded draw of
    :func:`held_out_fraction` of them (:func:`vaekit.data.splits.validation_split`), the same
    for a run, its resumption, every later command and the estimator."""
    return validation_split(n, held_out_fraction(config, has_test), config.seed)


def model_config(
    settings: dict[str, Any], train: TrainConfig, data: TrainingData, conditional: bool
) -> ModelConfig:
    """The model a run trains, for the command line and the estimator alike: the ``settings``
    given (flags, a preset, a settings file, keywords) on ``data``'s example shape, with, for a
    ``conditional`` model, as many classes as the data name (a class without an example
    counts), else as the largest label of the training data (its held-out part included)
    says, and when no prior is named the one that suits
    ``train.engine`` (:func:`vaekit.config.settings.default_prior`); for colour images, the
    settings that suit them where none are named
    (:func:`vaekit.config.defaults.colour_image_defaults`)."""
    n_classes = 0
    if conditional:
        parts = [y for y in (data.train_labels, data.val_labels) if y is not None and len(y)]
        if not parts:
            raise ConfigError(f"a conditional model needs labels, and {train.data} has none")
        n_classes = len(data.classes) if data.classes else int(max(y.max() for y in parts)) + 1
    prior = settings.get("prior") or default_prior(n_classes, train.engine)
    shape = tuple(data.train.shape[1:])
    given = {name: value for name, value in settings.items() if value is not None}
    settings = {**given, **colour_image_defaults(shape, train.engine, given)}
    return ModelConfig(**{**settings, "input_shape": shape, "n_classes": n_classes, "prior": prior})


def fixed_binarization(mode: str) -> str:
    """The binarization for data seen once per run (test sets, figures): dynamic → static."""
    return "static" if mode == "dynamic" else mode


def check_compatible(model: ModelConfig, data: TrainingData) -> None:
    """The data must have the model's input shape, labels for a conditional model, and lie in
    [0, 1] for a Bernoulli likelihood (the training data by the range its scaling recorded, so
    streamed data is not read again; held-out data held in memory by its values)."""
    shape = tuple(data.train.shape[1:])
    if shape != model.input_shape:
        raise ConfigError(
            f"the data have shape {shape} per example, the model expects {model.input_shape}"
        )
    sets = (
        ("training", data.train, data.train_labels),
        ("validation", data.val, data.val_labels),
        ("test", data.test, data.test_labels),
    )
    if model.conditional:
        for split, x, y in sets:
            if x is not None and y is None:
                raise DataError(f"a conditional model needs labels, and the {split} data have none")
            if y is not None and len(y) and y.max() >= model.n_classes:
                raise DataError(
                    f"the {split} data have label {int(y.max())}, outside the model's "
                    f"{model.n_classes} classes"
                )
    if model.likelihood != "bernoulli":
        return
    for split, x, _ in sets:
        if x is None:
            continue
        if split == "training" and data.streamed:
            if data.per_batch == "threshold":
                continue
            low, high = data.scaling.low, data.scaling.high
        elif isinstance(x, np.ndarray) and x.size:
            low, high = float(x.min()), float(x.max())
        else:
            continue
        check_unit_range(low, high, f"the {split} data", data.scaling)


def check_unit_range(low: float, high: float, what: str, scaling: Scaling | None) -> None:
    """Refuse data from ``low`` to ``high`` outside [0, 1] for a Bernoulli likelihood, in one
    line that names the fix."""
    if not (low < 0 or high > 1):
        return
    scaled = "" if scaling is None else f" after --scale {scaling.method}"
    raise DataError(
        f"{what} have values from {low:.4g} to {high:.4g}{scaled}, outside [0, 1], which a "
        "Bernoulli likelihood cannot model; use --scale minmax or --likelihood gaussian"
    )
