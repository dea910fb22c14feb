"""DICOM reading: a series folder (GDCM through SimpleITK) or a single file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from voxseg.errors import InputImageError
from voxseg.io.dicom_scan import SEG_SOP_CLASS, _itk_warnings_off, uneven_gaps
from voxseg.io.sitk_io import _itk_message, split_sitk_channels
from voxseg.io.volume import Volume

__all__ = ["read_dicom_series", "read_dicom_file"]


def read_dicom_series(folder: Path, series_uid: str | None = None) -> list[Volume]:
    """Read the DICOM series in ``folder`` (or the one with ``series_uid``) as a 3D Volume."""
    try:
        with _itk_warnings_off():
            uids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    except RuntimeError as exc:
        raise InputImageError(folder, f"cannot scan folder for DICOM ({_itk_message(exc)})") from None
    if not uids:
        raise InputImageError(
            folder, "folder holds no DICOM series", "point at a folder of .dcm files or at an image file"
        )
    if series_uid is None:
        uids = _image_series(folder, uids)
        if len(uids) > 1:
            listed = ", ".join(uids[:4]) + (", ..." if len(uids) > 4 else "")
            raise InputImageError(
                folder,
                f"folder holds {len(uids)} DICOM series ({listed})",
                "pass series_uid=... (CLI: --series UID) or move each series into its own folder",
            )
        series_uid = uids[0]
    elif series_uid not in uids:
        raise InputImageError(folder, f"no DICOM series {series_uid!r} here (found: {', '.join(uids)})")
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        with _itk_warnings_off():  # ITK only warns about missing slices; voxseg checks below
            image = reader.Execute()
    except RuntimeError as exc:
        raise InputImageError(
            folder, f"cannot read DICOM series ({_itk_message(exc)})", "a slice may be corrupt or missing"
        ) from None
    _check_slice_positions(reader, len(files), folder)
    require_pixel_spacing(lambda key: reader.HasMetaDataKey(0, key), folder)
    return split_sitk_channels(image, folder)


def _image_series(folder: Path, uids: list[str]) -> list[str]:
    """``uids`` without the series that hold no image (a DICOM SEG, RTSTRUCT, SR... next to the images)."""
    if len(uids) < 2:
        return uids
    from voxseg.io.dicom_scan import NON_IMAGE_MODALITIES, scan_folder

    images = [s.uid for s in scan_folder(folder) if s.modality.upper() not in NON_IMAGE_MODALITIES]
    return images or uids


def _slice_offsets(reader: sitk.ImageSeriesReader, n: int) -> np.ndarray | None:
    """Position of each slice along the slice normal (mm), or None if the tags are missing."""
    try:
        cosines = np.array([float(v) for v in reader.GetMetaData(0, "0020|0037").split("\\")])
        positions = np.array([[float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")] for i in range(n)])
    except (RuntimeError, ValueError):
        return None
    if cosines.shape != (6,) or positions.shape != (n, 3):
        return None
    return positions @ np.cross(cosines[:3], cosines[3:])


def _check_slice_positions(reader: sitk.ImageSeriesReader, n: int, folder: Path) -> None:
    """Refuse a series with a gap or a repeated position: GDCM skips unreadable slice files and ITK
    then spreads the remaining slices evenly, giving a wrong spacing with only a console warning."""
    offsets = _slice_offsets(reader, n) if n > 2 else None
    if offsets is None:
        return
    problem = uneven_gaps(offsets)
    if problem is None:
        return
    raise InputImageError(
        folder, problem, "a slice is missing or unreadable, or several series share one UID: check the folder"
    )


def require_pixel_spacing(has_key: Callable[[str], bool], path: Path) -> None:
    """Refuse DICOM without PixelSpacing (0028,0030) or ImagerPixelSpacing (0018,1164): ITK would
    read it as 1 mm voxels and voxseg would segment at the wrong scale."""
    if not (has_key("0028|0030") or has_key("0018|1164")):
        raise InputImageError(
            path,
            "DICOM has no PixelSpacing (0028,0030): its voxel size is unknown",
            "add the tag, or convert the image to NIfTI with the right spacing",
        )


def read_dicom_file(path: Path) -> list[Volume]:
    """Read one DICOM file; a single-frame image becomes a 2D Volume, a DICOM SEG its label map."""
    if _is_seg(path):
        from voxseg.io.dicom_seg import read_dicom_seg

        return read_dicom_seg(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputImageError(
            path, f"cannot read DICOM ({_itk_message(exc)})", "the file may be truncated or not DICOM"
        ) from None
    require_pixel_spacing(image.HasMetaDataKey, path)
    if image.GetDimension() == 3 and image.GetSize()[2] == 1 and image.GetNumberOfComponentsPerPixel() == 1:
        image = image[:, :, 0]
    return split_sitk_channels(image, path)


def _is_seg(path: Path) -> bool:
    """Whether ``path`` is a DICOM Segmentation object (SOP class from the file meta header)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with _itk_warnings_off():
            reader.ReadImageInformation()
    except RuntimeError:
        return _seg_by_pydicom(path)
    return reader.HasMetaDataKey("0008|0016") and reader.GetMetaData("0008|0016").strip("\x00 ") == SEG_SOP_CLASS


def _seg_by_pydicom(path: Path) -> bool:
    try:
        import pydicom
    except ImportError:
        return False
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # not readable by pydicom either: let SimpleITK's reader report it
        return False
    return str(ds.get("SOPClassUID", "")) == SEG_SOP_CLASS
