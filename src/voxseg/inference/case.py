"""One case to predict (:class:`CaseInput`): what :mod:`voxseg.inference.inputs` and
:mod:`voxseg.inference.dicom_inputs` find and the batch engine predicts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from voxseg.io import image_suffix

__all__ = ["CaseInput"]


@dataclass(frozen=True)
class CaseInput:
    """One case to predict: its channel files in channel order and an optional mask file."""

    case_id: str
    images: tuple[Path, ...]
    mask: Path | None = None
    series_uid: str | None = None  # a DICOM series: images is its folder

    @property
    def is_dicom(self) -> bool:
        """Whether the case is a DICOM series folder or a DICOM file (it can get a DICOM SEG output)."""
        return self.series_uid is not None or image_suffix(self.images[0]) == ".dcm"
