"""A trained run's data, read the way the run was trained: one place for every front end (the
command line, the explorer).

A run knows its data set (``train.data``), where it was read from (``train.data_dir``), how
images were read (``image_size``, ``image_mode``), its scaling (``scaling.json``), its held-out
split (``val_fraction`` and ``seed``) and its binarization protocol; commands that read data for
a run default to all of them, so ``vaekit evaluate RUN`` measures the run on its own held-out
data, scaled and binarized as in training.

Splits of the run's own data (``source`` None):

- ``heldout`` (the default): the validation split when the run holds one out, else the test
  split of a named set, else (a file without a validation split, an older run) all of it;
- ``train``: the examples the run trained on (a named set's train split without its
  validation part);
- ``val``: the validation split (refused when the run has none);
- ``test``: a named set's test split (refused for a file, which has none);
- ``all``: every example of the file, or of a named set's train split.

Any other ``source`` (a file, a folder, an image, a named set) is read whole, every example in
order (a named set's ``test`` split unless ``split`` is ``train``), its images brought to the
model's size and colour mode, then scaled by the run's scaling.

Labels are given as the run's codes, named by the run's classes (``classes.json``): data that
name their classes (another folder, a CSV of names) are recoded by name
(:func:`vaekit.data.classes.recode`), so a folder holding only some of the run's classes gets
their codes in the run. Data whose classes the run does not know keep their own names for an
unconditional model (they only label its pictures and tables) and are refused for a
conditional one (its codes are inputs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.data import Dataset, binarize, classes, has_test_split, load_raw
from vaekit.data.dataset import RawData
from vaekit.data.datasets import run_data_dir
from vaekit.data.pipeline import (
    check_unit_range,
    fixed_binarization,
    held_out_fraction,
    split_rows,
)
from vaekit.data.scaling import Scaling, fit_array
from vaekit.data.sources import Subset, in_memory
from vaekit.errors import ConfigError, DataError
from vaekit.runs.config_file import read_config

#: The parts of a run's own data a command can ask for (see the module docstring).
SPLITS = ("heldout", "train", "val", "test", "all")


def run_data(
    run_dir: str | Path,
    source: str | None = None,
    split: str = "heldout",
    *,
    data_dir: str | Path | None = None,
    binarize_mode: str | None = None,
) -> tuple[Dataset, str]:
    """(the data set, the binarization applied) for the run in ``run_dir``: model inputs,
    float32, scaled by the run's stored scaling (``auto`` fitted on the data for a run from
    before scalings were stored).

    ``source`` (a data set name or a path) defaults to the run's own data, of which ``split``
    picks a part (see the module docstring); ``data_dir`` overrides where named sets are looked
    for (see :func:`vaekit.data.datasets.run_data_dir`); ``binarize_mode`` defaults to the run's
    protocol with ``dynamic`` fixed to ``static`` (data seen once). The examples must have the
    model's input shape, else :class:`ConfigError`; a Bernoulli model refuses inputs outside
    [0, 1] (after scaling, before binarization) in one line. The Dataset is named ``source``;
    its labels and classes are the run's (see the module docstring).
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    model, train, _ = read_config(run_dir)
    raw, name = _raw(model, train, source, split, data_dir)
    return model_inputs(run_dir, raw, name, binarize_mode)


def model_inputs(
    run_dir: str | Path, raw: RawData, name: str, binarize_mode: str | None = None
) -> tuple[Dataset, str]:
    """(the data set named ``name``, the binarization applied): the ``raw`` examples as inputs
    of the run in ``run_dir``, checked, scaled and binarized as :func:`run_data` says."""
    model, train, _ = read_config(run_dir)
    mode = binarize_mode or fixed_binarization(train.binarize)
    scaling = Scaling.load(run_dir) or fit_array(
        "auto", np.asarray(raw.x[:1]), pixels=raw.pixels, source=raw.name
    )
    if tuple(raw.x.shape[1:]) != model.input_shape:
        raise ConfigError(
            f"{name} has examples of shape {tuple(raw.x.shape[1:])}, the model expects "
            f"{model.input_shape}"
        )
    y, names = run_labels(run_dir, model, raw, name)
    x = scaling.apply(in_memory(raw.x), name)
    if model.likelihood == "bernoulli" and mode in ("none", "static") and x.size:
        check_unit_range(float(x.min()), float(x.max()), name, scaling)
    return Dataset(x=binarize(x, mode), y=y, name=name, classes=names), mode


def run_labels(
    run_dir: str | Path, model: ModelConfig, raw: RawData, name: str
) -> tuple[np.ndarray | None, tuple[str, ...] | None]:
    """(labels, class names) of ``raw`` for the run: the run's codes and names where the run
    keeps names, else the data's own (see the module docstring)."""
    run_names = classes.load(run_dir)
    if raw.y is None:
        return None, run_names
    if raw.classes and run_names:
        try:
            return classes.recode(raw.y, raw.classes, run_names, name), run_names
        except DataError:
            if model.conditional:
                raise
            return raw.y, raw.classes
    names = run_names or raw.classes
    if names and len(raw.y) and int(raw.y.max()) >= len(names):
        return raw.y, None  # numbers beyond the run's classes: shown as numbers (or refused)
    return raw.y, names


def part_read(train: TrainConfig, source: str | None, split: str) -> str:
    """The part of the data that :func:`run_data` reads for ``source`` and ``split``: ``test``,
    ``train``, ``val`` or ``all`` (``heldout`` resolved as the module docstring says)."""
    if source is not None:
        if not has_test_split(source):
            return "all"
        return "train" if split == "train" else "test"
    named = has_test_split(train.data)
    if split != "heldout":
        return split
    if named and not train.val_fraction:
        return "test"
    return "val" if held_out_fraction(train, named) else "all"


def _raw(
    model: ModelConfig,
    train: TrainConfig,
    source: str | None,
    split: str,
    data_dir: str | Path | None,
) -> tuple[RawData, str]:
    """(raw examples, a name for them) of the run's own data's ``split``, or of ``source``."""
    part = part_read(train, source, split)
    if source is not None:
        size, mode = _image_reading(model, train)
        where = run_data_dir(source, train.data_dir, data_dir)
        named_part = "test" if part == "test" else "train"
        return load_raw(source, named_part, where, image_size=size, image_mode=mode), source
    own = train.data
    named = has_test_split(own)
    where = run_data_dir(own, train.data_dir, data_dir)

    def load(named_part: str) -> RawData:
        return load_raw(
            own, named_part, where, image_size=train.image_size, image_mode=train.image_mode
        )

    if part == "test":
        if not named:
            raise DataError(f"{own} has no test split; use --split val, train or all")
        return load("test"), own
    whole = load("train")
    if part == "all":
        return whole, own
    train_idx, val_idx = split_rows(train, len(whole.x), named)
    if part == "val" and not len(val_idx):
        raise DataError(f"the run holds out no validation split of {own}; use --split train or all")
    index = train_idx if part == "train" else val_idx
    y = None if whole.y is None else whole.y[index]
    return RawData(Subset(whole.x, index), y, whole.name, whole.pixels, whole.classes), own


def _image_reading(model: ModelConfig, train: TrainConfig) -> tuple[tuple[int, int] | None, str]:
    """(image size, colour mode) to read a new image input with, so that it becomes an input
    of the model's shape: the run's own settings, else the model's height, width and channels."""
    shape = model.input_shape
    if len(shape) != 3 or shape[0] not in (1, 3):
        return train.image_size, train.image_mode
    mode = train.image_mode if train.image_mode != "auto" else ("rgb" if shape[0] == 3 else "grey")
    return train.image_size or (shape[1], shape[2]), mode


def held_out(
    run_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    binarize_mode: str | None = None,
) -> tuple[Dataset, str]:
    """The run's held-out data, as :func:`run_data` gives it, and its name: ``validation`` or
    ``test``; a run without held-out data raises :class:`DataError`."""
    _, train, _ = read_config(run_dir)
    part = part_read(train, None, "heldout")
    if part == "all":
        raise DataError(
            f"{run_dir} holds out no data (it trained on all of {train.data}, which has no test "
            "split); train with --val-fraction F to have held-out data to compare with"
        )
    data = run_data(run_dir, split=part, data_dir=data_dir, binarize_mode=binarize_mode)[0]
    return data, "validation" if part == "val" else "test"
