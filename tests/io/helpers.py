"""Shared helpers for the voxseg.io tests: geometries, arrays and DICOM series on disk."""

from __future__ import annotations

import hashlib
import locale
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from voxseg.errors import InputImageError

SPACING_3D = (2.5, 0.7, 0.3)  # (z, y, x) mm, anisotropic
ORIGIN_3D = (-10.5, 20.25, 3.125)
SPACING_2D = (0.7, 0.3)
ORIGIN_2D = (20.25, 3.125)


def rotation(axis: int, degrees: float) -> np.ndarray:
    """3x3 rotation about one axis (an oblique direction when the angle is not a multiple of 90)."""
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def oblique_direction_3d() -> np.ndarray:
    """A permutation with a flip (det -1 part) times an oblique rotation: nothing is symmetric."""
    perm_flip = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return perm_flip @ rotation(0, 20.0) @ rotation(2, -35.0)


def oblique_direction_2d() -> np.ndarray:
    t = np.deg2rad(30.0)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) @ np.diag([1.0, -1.0])


def random_array(dtype, shape, seed: int = 0) -> np.ndarray:
    """Values spanning the dtype's range (within +-30000 / 60000), never all equal."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) > 0.5
    if dtype.kind == "f":
        return rng.normal(0.0, 100.0, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -30000), min(info.max, 60000), shape, endpoint=True).astype(dtype)


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_one_line_error(exc: InputImageError, path: Path, *fragments: str) -> None:
    """An InputImageError names the file, is one line, and says what is wrong."""
    message = str(exc)
    assert isinstance(exc, InputImageError)
    assert str(path) in message, message
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment.lower() in message.lower(), f"{fragment!r} not in {message!r}"


def write_dicom_series(*args, **kwargs) -> list[Path]:
    """Write a DICOM series (see :func:`_write_dicom_series`). GDCM's writer sets the process
    locale to "C" (after which ``subprocess.run(text=True)`` decodes as ASCII in later tests):
    the locale is put back afterwards."""
    saved = locale.setlocale(locale.LC_ALL, None)
    try:
        return _write_dicom_series(*args, **kwargs)
    finally:
        if locale.setlocale(locale.LC_ALL, None) != saved:
            locale.setlocale(locale.LC_ALL, saved)


def _write_dicom_series(
    folder: Path,
    array: np.ndarray,
    *,
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    series_uid: str,
    prefix: str = "slice",
    reverse_names: bool = False,
) -> list[Path]:
    """Write an int16 ``(z, y, x)`` array as one DICOM file per slice (SimpleITK's "DICOM series
    from array" recipe). ``spacing``/``origin`` are in voxseg's (z, y, x) order; axial orientation."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array.astype(np.int16))
    image.SetSpacing(spacing[::-1])
    image.SetOrigin(origin[::-1])
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    tags = {
        "0008|0060": "CT",
        "0008|0008": "DERIVED\\SECONDARY",
        "0008|103e": "voxseg test series",
        "0010|0010": "Test^Patient",
        "0020|000d": "1.2.826.0.1.3680043.2.1125.1",  # StudyInstanceUID
        "0020|000e": series_uid,  # SeriesInstanceUID
        "0020|0037": "1\\0\\0\\0\\1\\0",  # ImageOrientationPatient
        "0018|0050": str(spacing[0]),  # SliceThickness
    }
    paths = []
    n = array.shape[0]
    for k in range(n):
        sl = image[:, :, k]
        for tag, value in tags.items():
            sl.SetMetaData(tag, value)
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        sl.SetMetaData("0020|0032", "\\".join(f"{v:.6f}" for v in position))  # ImagePositionPatient
        sl.SetMetaData("0020|0013", str(k + 1))  # InstanceNumber
        sl.SetMetaData("0008|0018", f"{series_uid}.{k + 1}")  # SOPInstanceUID
        name_index = n - 1 - k if reverse_names else k
        path = folder / f"{prefix}{name_index:03d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(sl)
        paths.append(path)
    return paths
