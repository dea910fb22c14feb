"""Preprocessing: crop to nonzero → normalize → resample, its inverse, and the stored case format.

numpy/scipy only (no torch). The same code runs at training and at prediction time; see
``docs/preprocessing.md``.
"""

from voxseg.fingerprint.cropping import CropBox, crop, crop_to_nonzero, fill_holes, nonzero_region, uncrop
from voxseg.preprocessing.batch import PreprocessReport, case_settings, preprocess_dataset
from voxseg.preprocessing.intensity import mean_std, normalize, normalize_channel
from voxseg.preprocessing.pipeline import (
    CaseProperties,
    PreprocessedCase,
    full_target_spacing,
    preprocess_case,
    restore_argmax,
    restore_probabilities,
    restore_to_original,
)
from voxseg.preprocessing.resampling import (
    axis_orders,
    lowres_axis,
    resample,
    resample_to_shape,
    resampled_shape,
    single_blas_thread,
)
from voxseg.preprocessing.snapshot import render_snapshot, snapshot_png
from voxseg.preprocessing.store import (
    MAX_LOCATIONS,
    SCHEMA_VERSION,
    case_paths,
    list_preprocessed,
    read_case_record,
    read_preprocessed,
    sample_class_locations,
    write_preprocessed,
)

__all__ = [
    "CropBox",
    "crop",
    "uncrop",
    "crop_to_nonzero",
    "nonzero_region",
    "fill_holes",
    "resample",
    "resample_to_shape",
    "resampled_shape",
    "lowres_axis",
    "axis_orders",
    "single_blas_thread",
    "normalize",
    "normalize_channel",
    "mean_std",
    "CaseProperties",
    "PreprocessedCase",
    "preprocess_case",
    "restore_to_original",
    "restore_argmax",
    "restore_probabilities",
    "full_target_spacing",
    "write_preprocessed",
    "read_preprocessed",
    "read_case_record",
    "list_preprocessed",
    "case_paths",
    "sample_class_locations",
    "SCHEMA_VERSION",
    "MAX_LOCATIONS",
    "preprocess_dataset",
    "PreprocessReport",
    "case_settings",
    "snapshot_png",
    "render_snapshot",
]
