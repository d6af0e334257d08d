"""Datasets: the registry of benchmark and training sets, and reading HR / LR images."""

from sr_bench.data.dataset import (
    Dataset,
    DatasetImageError,
    DatasetNotFound,
    ImageRef,
    ImageTooSmall,
    LRSizeError,
    cache_dir,
    data_root,
    open_dataset,
)
from sr_bench.data.registry import (
    DATASETS,
    DatasetSpec,
    UnknownDatasetError,
    benchmark_names,
    dataset_order,
    evaluation_sets,
    get_spec,
    register,
    table3_datasets,
    training_sets,
)

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetImageError",
    "DatasetNotFound",
    "DatasetSpec",
    "ImageRef",
    "ImageTooSmall",
    "LRSizeError",
    "UnknownDatasetError",
    "benchmark_names",
    "cache_dir",
    "data_root",
    "dataset_order",
    "evaluation_sets",
    "get_spec",
    "open_dataset",
    "register",
    "table3_datasets",
    "training_sets",
]
