"""DICOM series as cases: every series under a folder is one case, picked with ``--series``.

- a folder holding one series is one case named after the folder;
- a folder holding several series (a study), or a folder of series folders, is a batch: one case
  per series, named ``FOLDER`` (or ``FOLDER_NUMBER_DESCRIPTION`` when a folder holds several);
  nested folders join their path: ``patient1_CT``;
- a single-file series (a 2D image, or one multi-frame file) is a case named after the file;
- left out, with the reason recorded: non-image series (SEG, RTSTRUCT, SR...), localizers, series
  of 2 slices beside other series (scouts), unevenly spaced slices, and series not matching ``series`` (a modality such
  as ``CT``, a SeriesDescription substring, or a SeriesInstanceUID).
"""

from __future__ import annotations

import logging
from pathlib import Path

from voxseg.inference.case import CaseInput
from voxseg.io.dicom_scan import MIN_SLICES, NON_IMAGE_MODALITIES, DicomSeries, find_series, safe_name

__all__ = ["dicom_cases", "series_matches"]

log = logging.getLogger(__name__)


def series_matches(found: DicomSeries, series: str, modalities: set[str]) -> bool:
    """Whether ``found`` is picked by ``series``: its modality (when ``series`` names a modality present),
    else its SeriesInstanceUID or a case-insensitive substring of its SeriesDescription."""
    text = series.strip()
    if text.upper() in modalities:
        return found.modality.upper() == text.upper()
    return text == found.uid or text.lower() in found.description.lower()


def _skip(found: DicomSeries, reason: str) -> dict[str, object]:
    log.warning("%s: skipped DICOM series %s: %s", found.folder, found.label(), reason)
    return {**found.as_dict(), "reason": reason}


def _base_name(root: Path, folder: Path) -> str:
    rel = folder.relative_to(root).parts
    return safe_name("_".join(rel) if rel else root.resolve().name)


def _case(root: Path, found: DicomSeries, several: bool) -> CaseInput:
    if len(found.files) == 1 and found.files[0].suffix.lower() == ".dcm":  # a 2D image or a multi-frame file
        return CaseInput(safe_name(found.files[0].stem), (found.files[0],))
    name = _base_name(root, found.folder)
    if several:
        name = safe_name(f"{name}_{found.series_number or 'series'}_{found.description or found.modality}")
    return CaseInput(name, (found.folder,), series_uid=found.uid)


def dicom_cases(root: Path, *, series: str | None = None, skipped: list[dict[str, object]]) -> list[CaseInput]:
    """One case per predictable DICOM series under ``root``; the others are appended to ``skipped``."""
    found = find_series(root)
    modalities = {s.modality.upper() for s in found if s.modality}
    per_folder: dict[Path, int] = {}
    for s in found:  # image series per folder (a SEG next to its series does not rename the case)
        if s.modality.upper() not in NON_IMAGE_MODALITIES:
            per_folder[s.folder] = per_folder.get(s.folder, 0) + 1
    cases: list[CaseInput] = []
    names: set[str] = set()
    several = sum(per_folder.values()) > 1
    for s in found:
        if s.problem is not None:
            skipped.append(_skip(s, s.problem))
            continue
        if several and 1 < len(s.files) < MIN_SLICES:
            skipped.append(_skip(s, f"{len(s.files)} slices: too few for a volume (a scout or localizer?)"))
            continue
        if series is not None and not series_matches(s, series, modalities):
            skipped.append(_skip(s, f"not selected by --series {series!r}"))
            continue
        case = _case(root, s, per_folder.get(s.folder, 0) > 1)
        name, k = case.case_id, 2
        while name in names:
            name, k = f"{case.case_id}_{k}", k + 1
        names.add(name)
        cases.append(CaseInput(name, case.images, series_uid=case.series_uid))
    return cases
