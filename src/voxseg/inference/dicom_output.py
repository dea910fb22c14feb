"""DICOM SEG output for a predicted case (``-o NAME.dcm`` or ``--output-format dicom-seg``)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from voxseg.errors import ConfigError, InputImageError
from voxseg.inference.inputs import CaseInput
from voxseg.io import Volume, image_suffix

if TYPE_CHECKING:
    from voxseg.inference.predictor import Predictor

__all__ = ["OUTPUT_FORMATS", "is_seg_output", "check_seg_case", "write_seg_output", "source_files", "series_sha256"]

OUTPUT_FORMATS = ("dicom-seg",)


def is_seg_output(output: Path) -> bool:
    return image_suffix(output) == ".dcm"


def check_output_format(output_format: str | None) -> None:
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"--output-format {output_format!r}: choose {', '.join(OUTPUT_FORMATS)} (or leave it out)")


def check_seg_case(case: CaseInput, output: Path, *, instances: bool) -> None:
    """Refuse a DICOM SEG output for a non-DICOM input or an instance map (one line each)."""
    if not case.is_dicom:
        raise InputImageError(
            output,
            f"a DICOM SEG output needs a DICOM series input ({case.images[0].name} is not DICOM)",
            "write .nii.gz instead, or give a DICOM series folder",
        )
    if instances:
        raise ConfigError("DICOM SEG output holds the model's classes; --instances writes object ids: use .nii.gz")


def source_files(case: CaseInput) -> tuple[Path, ...]:
    """The DICOM files a case was read from (its series' files, or its one file)."""
    if case.series_uid is None:
        return (case.images[0],)
    from voxseg.io.dicom_scan import series_files

    return series_files(case.images[0], case.series_uid)


def series_sha256(case: CaseInput) -> str:
    """One digest over the names and bytes of a series' files (for the manifest and resume)."""
    h = hashlib.sha256()
    for f in source_files(case):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def _algorithm(predictor: Predictor):
    from voxseg._version import __version__ as ours
    from voxseg.io.dicom_seg import SegAlgorithm

    model_id = str(predictor.model_id)
    if "@" in model_id and not model_id.startswith("work:"):
        name, version = model_id.rsplit("@", 1)
    else:
        name, version = predictor.plan.dataset_name, "work folder"
    return SegAlgorithm(name, version, f"voxseg {ours}")


def write_seg_output(labels: Volume, output: Path, case: CaseInput, predictor: Predictor) -> Path:
    """Write ``labels`` as a DICOM SEG referencing the case's source series, atomically."""
    from voxseg.io.dicom_seg import write_dicom_seg

    names = {v: n for v, n in predictor.plan.label_names.items() if v != 0}
    return write_dicom_seg(
        labels, output, source_files=source_files(case), label_names=names, algorithm=_algorithm(predictor)
    )
