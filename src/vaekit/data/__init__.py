"""Data: named data sets, user files, IDX files, scaling and binarization."""

from vaekit.data.dataset import Dataset, RawData
from vaekit.data.datasets import (
    DATASET_NAMES,
    dataset_status,
    has_test_split,
    load_dataset,
    load_raw,
)
from vaekit.data.idx import read_idx, write_idx
from vaekit.data.transforms import binarize

__all__ = [
    "DATASET_NAMES",
    "Dataset",
    "RawData",
    "binarize",
    "dataset_status",
    "has_test_split",
    "load_dataset",
    "load_raw",
    "read_idx",
    "write_idx",
]
