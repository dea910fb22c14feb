"""Real multi-slice DICOM series made from the real CT / MR slices shipped in pydicom's test data.

No wheel ships a multi-slice series, so :func:`write_series` copies one real slice N times with
the tags a series needs updated (ImagePositionPatient, SliceLocation, InstanceNumber,
SOPInstanceUID; one SeriesInstanceUID and FrameOfReferenceUID for all) and a known pixel pattern
(a bright block) so a threshold model's answer is known.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

CT = "CT_small.dcm"  # 128 x 128, int16 CT, 0.66 mm pixels
MR = "MR_small.dcm"  # 64 x 64 MR


def bright_block(rows: int, cols: int, k: int, n: int) -> np.ndarray:
    """Boolean mask of the bright block in slice ``k`` of ``n`` (absent from the first and last slice)."""
    mask = np.zeros((rows, cols), bool)
    if 0 < k < n - 1:
        mask[rows // 4 : rows // 2, cols // 3 : (2 * cols) // 3] = True
    return mask


def write_series(
    folder: Path,
    *,
    source: str = CT,
    slices: int = 5,
    thickness: float = 2.5,
    series_uid: str | None = None,
    frame_uid: str | None = None,
    description: str | None = None,
    modality: str | None = None,
    prefix: str = "slice",
    suffix: str = ".dcm",
    bright: bool = True,
    positions: list[float] | None = None,
) -> list[Path]:
    """Write ``slices`` copies of the real slice ``source`` as one series in ``folder``; return the files.

    With ``bright`` the raw pixels are 0 outside :func:`bright_block` and 1000 inside (so the
    rescaled values are ``intercept`` and ``intercept + 1000 * slope``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    offsets = positions if positions is not None else [k * thickness for k in range(slices)]
    paths = []
    for k, z in enumerate(offsets):
        ds = pydicom.dcmread(get_testdata_file(source))
        if bright:
            pixels = bright_block(ds.Rows, ds.Columns, k, len(offsets)).astype(ds.pixel_array.dtype) * 1000
            ds.PixelData = pixels.tobytes()
        x, y, _ = (float(v) for v in ds.ImagePositionPatient)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [x, y, float(z)]
        ds.SliceLocation = float(z)
        ds.SliceThickness = thickness
        ds.InstanceNumber = k + 1
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        if description is not None:
            ds.SeriesDescription = description
        if modality is not None:
            ds.Modality = modality
        path = folder / f"{prefix}{k:03d}{suffix}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def zip_folder(folder: Path, *, inside: str = "") -> bytes:
    """The files of ``folder`` as zip bytes (under the subfolder ``inside`` if given)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"{inside}/{f.name}" if inside else f.name)
    return buffer.getvalue()
