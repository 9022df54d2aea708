"""Data: named data sets, user files, IDX files, scaling and binarization."""

from vaekit.data.dataset import Dataset
from vaekit.data.datasets import (
    DATASET_NAMES,
    dataset_status,
    has_test_split,
    load_dataset,
)
from vaekit.data.idx import read_idx, write_idx
from vaekit.data.transforms import binarize, to_unit_range

__all__ = [
    "DATASET_NAMES",
    "Dataset",
    "binarize",
    "dataset_status",
    "has_test_split",
    "load_dataset",
    "read_idx",
    "to_unit_range",
    "write_idx",
]
