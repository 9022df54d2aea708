"""A trained run's data, read the way the run was trained: one place for every front end (the
command line, the explorer).

A run knows its data set (``train.data``), where it was read from (``train.data_dir``) and its
binarization protocol; commands that read data for a run default to all three, so
``vaekit evaluate RUN`` measures the run on its own test split, binarized as in training.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from vaekit import checkpoint
from vaekit.data import Dataset, binarize, has_test_split, load_dataset
from vaekit.data.datasets import run_data_dir
from vaekit.errors import ConfigError
from vaekit.training import fixed_binarization


def run_data(
    run_dir: str | Path,
    source: str | None = None,
    split: str = "test",
    *,
    data_dir: str | Path | None = None,
    binarize_mode: str | None = None,
) -> tuple[Dataset, str]:
    """(the data set, the binarization applied) for the run in ``run_dir``.

    ``source`` (a data set name or a path) defaults to the run's own; ``split`` applies to named
    sets (a file is one set); ``data_dir`` overrides where named sets are looked for (see
    :func:`vaekit.data.datasets.run_data_dir`); ``binarize_mode`` defaults to the run's protocol
    with ``dynamic`` fixed to ``static`` (data seen once). The examples must have the model's
    input shape, else :class:`ConfigError`. The returned Dataset is named ``source``.
    """
    model, train, _ = checkpoint.read_config(run_dir)
    source = source or train.data
    mode = binarize_mode or fixed_binarization(train.binarize)
    split = split if has_test_split(source) else "train"
    data = load_dataset(source, split, run_data_dir(source, train.data_dir, data_dir))
    if tuple(data.x.shape[1:]) != model.input_shape:
        raise ConfigError(
            f"{source} has examples of shape {data.x.shape[1:]}, the model expects "
            f"{model.input_shape}"
        )
    return replace(data, x=binarize(data.x, mode), name=source), mode
