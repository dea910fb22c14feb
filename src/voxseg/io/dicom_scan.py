"""Finding DICOM series under a folder: which files form which series, and which can be a case.

A file is DICOM when it ends in ``.dcm`` or carries the 128-byte preamble + ``DICM`` magic (so
files without a suffix count too). Files are grouped into series by GDCM (through SimpleITK,
by SeriesInstanceUID); only headers are read here. A series that cannot be predicted gets a
``problem`` (not an image, a localizer, uneven slice gaps) and is reported as
skipped instead of failing later.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from voxseg.errors import InputImageError
from voxseg.io.atomic import full_suffix

__all__ = [
    "DicomSeries",
    "is_dicom_file",
    "scan_folder",
    "find_series",
    "series_files",
    "uneven_gaps",
    "NON_IMAGE_MODALITIES",
    "SEG_SOP_CLASS",
    "MIN_SLICES",
    "safe_name",
]

#: Modalities whose series hold no image to segment (segmentations, structures, reports, ...).
NON_IMAGE_MODALITIES = frozenset({"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "SR", "PR", "KO", "REG", "ECG"})
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
#: Beside other series, one of 2..MIN_SLICES-1 single-frame files is taken for a scout (batch inputs).
MIN_SLICES = 3
GAP_TOLERANCE = 0.05  # relative deviation of a slice gap from the median gap
_MAX_DEPTH = 6
_NOT_DICOM = frozenset(
    {".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".tif", ".tiff", ".ome.tif", ".ome.tiff", ".png", ".jpg"}
    | {".jpeg", ".json", ".txt", ".csv", ".md", ".zip", ".npz", ".npy", ".py", ".raw", ".xml", ".html", ".pdf"}
)


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series found in a folder (header facts only)."""

    folder: Path
    uid: str
    files: tuple[Path, ...]
    modality: str = ""
    description: str = ""
    patient_id: str = ""
    series_number: str = ""
    frames: int = 1
    problem: str | None = None

    def label(self) -> str:
        """A short human description: ``CT 'Chest 1mm' (12 slices)``."""
        desc = f" {self.description!r}" if self.description else ""
        return f"{self.modality or '?'}{desc} ({self.frames} slice{'s' if self.frames != 1 else ''})"

    def as_dict(self) -> dict[str, object]:
        return {
            "folder": str(self.folder),
            "series_uid": self.uid,
            "modality": self.modality,
            "description": self.description,
            "slices": self.frames,
        }


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` is a DICOM file: a ``.dcm`` suffix, or the ``DICM`` magic after the preamble."""
    if path.name.startswith(".") or not path.is_file():
        return False
    suffix = full_suffix(path)
    if suffix == ".dcm":
        return True
    if suffix in _NOT_DICOM:
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _header(path: Path) -> sitk.ImageFileReader | None:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO("GDCMImageIO")
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    return reader


def _tag(reader: sitk.ImageFileReader | None, key: str) -> str:
    if reader is None or not reader.HasMetaDataKey(key):
        return ""
    return reader.GetMetaData(key).strip().strip("\x00").strip()


def uneven_gaps(offsets: np.ndarray) -> str | None:
    """A one-line problem if slice offsets (mm along the normal) are not evenly spaced, else None."""
    if len(offsets) < 3:
        return None
    gaps = np.abs(np.diff(np.sort(offsets)))
    typical = float(np.median(gaps))
    if typical > 0 and np.all(np.abs(gaps - typical) <= GAP_TOLERANCE * typical):
        return None
    return f"slices are not evenly spaced (gaps from {gaps.min():.4g} to {gaps.max():.4g} mm)"


def _offsets(files: tuple[Path, ...], first: sitk.ImageFileReader) -> np.ndarray | None:
    try:
        cosines = np.array([float(v) for v in _tag(first, "0020|0037").split("\\")])
        positions = []
        for f in files:
            positions.append([float(v) for v in _tag(_header(f), "0020|0032").split("\\")])
        positions_arr = np.array(positions)
    except ValueError:
        return None
    if cosines.shape != (6,) or positions_arr.shape != (len(files), 3):
        return None
    return positions_arr @ np.cross(cosines[:3], cosines[3:])


def _problem(files: tuple[Path, ...], first: sitk.ImageFileReader | None, modality: str, frames: int) -> str | None:
    if first is None:
        return "unreadable DICOM header"
    if modality.upper() in NON_IMAGE_MODALITIES or _tag(first, "0008|0016") == SEG_SOP_CLASS:
        return f"not an image series (modality {modality or '?'})"
    if "LOCALIZER" in _tag(first, "0008|0008").upper():
        return "a localizer/scout image (ImageType LOCALIZER)"
    offsets = _offsets(files, first) if len(files) >= MIN_SLICES else None
    return uneven_gaps(offsets) if offsets is not None else None


def series_files(folder: Path, uid: str) -> tuple[Path, ...]:
    """The files of series ``uid`` in ``folder``, in GDCM's slice order."""
    return tuple(Path(f) for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))


def scan_folder(folder: Path) -> list[DicomSeries]:
    """The DICOM series directly in ``folder`` (not its subfolders), ordered by series number."""
    try:
        with _itk_warnings_off():
            uids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
            found = [_describe(folder, uid, series_files(folder, uid)) for uid in uids]
    except RuntimeError as exc:
        raise InputImageError(folder, f"cannot scan folder for DICOM ({' '.join(str(exc).split())[-200:]})") from None
    return sorted(found, key=lambda s: (_number(s.series_number), s.uid))


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("inf")


def _describe(folder: Path, uid: str, files: tuple[Path, ...]) -> DicomSeries:
    first = _header(files[0]) if files else None
    modality = _tag(first, "0008|0060")
    frames = len(files)
    if frames == 1 and _tag(first, "0028|0008").isdigit():
        frames = int(_tag(first, "0028|0008"))  # one multi-frame file
    return DicomSeries(
        folder=folder,
        uid=uid,
        files=files,
        modality=modality,
        description=_tag(first, "0008|103e"),
        patient_id=_tag(first, "0010|0020"),
        series_number=_tag(first, "0020|0011"),
        frames=frames,
        problem=_problem(files, first, modality, frames),
    )


def find_series(root: Path) -> list[DicomSeries]:
    """Every DICOM series in ``root`` and its subfolders (hidden folders skipped, 6 levels deep)."""
    found: list[DicomSeries] = []
    base_depth = len(root.parts)
    for here, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if len(Path(here).parts) - base_depth >= _MAX_DEPTH:
            dirs[:] = []
        if any(is_dicom_file(Path(here) / n) for n in names):
            found.extend(scan_folder(Path(here)))
    return found


def safe_name(text: str) -> str:
    """``text`` reduced to characters safe in a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "series"


@contextlib.contextmanager
def _itk_warnings_off() -> Iterator[None]:
    """Silence ITK's stderr warnings (e.g. "No Series were found") while scanning a folder."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
