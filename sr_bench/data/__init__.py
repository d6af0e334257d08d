"""Datasets: the registry of benchmark and training sets, and reading HR / LR images."""

from sr_bench.data.dataset import Dataset, DatasetNotFound, ImageRef, cache_dir, data_root, open_dataset
from sr_bench.data.registry import DATASETS, DatasetSpec, get_spec

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetNotFound",
    "DatasetSpec",
    "ImageRef",
    "cache_dir",
    "data_root",
    "get_spec",
    "open_dataset",
]
