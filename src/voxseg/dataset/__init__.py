"""Datasets: the nnU-Net v2 raw layout, verification, MSD import, k-fold splits, phantoms."""

from voxseg.dataset.convert import convert_dataset, detect_layout, import_msd
from voxseg.dataset.layout import Case, Dataset, DatasetSpec, DatasetWriter, read_dataset
from voxseg.dataset.splits import Fold, load_or_create_splits, make_splits, read_splits, write_splits
from voxseg.dataset.verify import Problem, errors_only, verify_dataset

__all__ = [
    "Case",
    "Dataset",
    "DatasetSpec",
    "DatasetWriter",
    "read_dataset",
    "verify_dataset",
    "Problem",
    "errors_only",
    "convert_dataset",
    "import_msd",
    "detect_layout",
    "Fold",
    "make_splits",
    "read_splits",
    "write_splits",
    "load_or_create_splits",
]
