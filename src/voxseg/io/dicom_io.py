"""DICOM reading: a series folder (GDCM through SimpleITK) or a single file."""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from voxseg.errors import InputImageError
from voxseg.io.sitk_io import _itk_message, split_sitk_channels
from voxseg.io.volume import Volume

__all__ = ["read_dicom_series", "read_dicom_file"]


def read_dicom_series(folder: Path, series_uid: str | None = None) -> list[Volume]:
    """Read the DICOM series in ``folder`` (or the one with ``series_uid``) as a 3D Volume."""
    try:
        uids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    except RuntimeError as exc:
        raise InputImageError(folder, f"cannot scan folder for DICOM ({_itk_message(exc)})") from None
    if not uids:
        raise InputImageError(folder, "folder holds no DICOM series", "point at a folder of .dcm files or at an image file")
    if series_uid is None:
        if len(uids) > 1:
            raise InputImageError(
                folder, f"folder holds {len(uids)} DICOM series ({', '.join(uids[:4])}{', ...' if len(uids) > 4 else ''})",
                "pass series_uid=... (CLI: --series UID) or move each series into its own folder",
            )
        series_uid = uids[0]
    elif series_uid not in uids:
        raise InputImageError(folder, f"no DICOM series {series_uid!r} here (found: {', '.join(uids)})")
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputImageError(folder, f"cannot read DICOM series ({_itk_message(exc)})", "a slice may be corrupt or missing") from None
    return split_sitk_channels(image, folder)


def read_dicom_file(path: Path) -> list[Volume]:
    """Read one DICOM file; a single-frame image becomes a 2D Volume."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputImageError(path, f"cannot read DICOM ({_itk_message(exc)})", "the file may be truncated or not DICOM") from None
    if image.GetDimension() == 3 and image.GetSize()[2] == 1 and image.GetNumberOfComponentsPerPixel() == 1:
        image = image[:, :, 0]
    return split_sitk_channels(image, path)
