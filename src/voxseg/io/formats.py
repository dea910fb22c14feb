"""Reading and writing images by suffix: the only place that dispatches on file formats.

| suffix                         | read | write | geometry                                   |
|--------------------------------|------|-------|--------------------------------------------|
| .nii, .nii.gz                  | yes  | yes   | header (qform/sform via ITK)               |
| .nrrd, .nhdr, .mha, .mhd       | yes  | yes   | header                                     |
| .tif, .tiff (2D/3D, OME, ImageJ)| yes | yes   | sidecar JSON > OME > ImageJ/resolution tags|
| .png, .jpg, .jpeg (2D)         | yes  | yes   | sidecar JSON (default 1 mm)                |
| DICOM folder, .dcm             | yes  | no    | DICOM tags                                 |
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from voxseg.errors import InputImageError
from voxseg.io.atomic import atomic_dir, disk_full_error, full_suffix, is_disk_full, nearly_full
from voxseg.io.sidecar import write_sidecar
from voxseg.io.volume import Volume

__all__ = [
    "read_image",
    "read_channels",
    "write_image",
    "image_suffix",
    "READ_SUFFIXES",
    "WRITE_SUFFIXES",
    "NonFinitePolicy",
    "is_image_file",
]

log = logging.getLogger(__name__)

NonFinitePolicy = Literal["warn", "error", "allow"]
Reader = Callable[[Path], list[Volume]]
Writer = Callable[..., None]

_SITK = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
_TIFF = (".tif", ".tiff", ".ome.tif", ".ome.tiff")
_PIL = (".png", ".jpg", ".jpeg")
READ_SUFFIXES = (*_SITK, *_TIFF, *_PIL, ".dcm")
WRITE_SUFFIXES = (*_SITK, *_TIFF, *_PIL)
_SIDECAR_SUFFIXES = (*_TIFF, *_PIL)


def image_suffix(path: str | Path) -> str:
    """The image suffix of ``path`` (``.nii.gz`` kept whole), lower-case."""
    return full_suffix(path)


def is_image_file(path: Path) -> bool:
    """Whether ``path`` is a file with a suffix voxseg reads."""
    return path.is_file() and image_suffix(path) in READ_SUFFIXES and not path.name.startswith(".")


def _reader_for(path: Path) -> Reader:
    suffix = image_suffix(path)
    if suffix in _SITK:
        from voxseg.io.sitk_io import read_sitk

        return read_sitk
    if suffix in _TIFF:
        from voxseg.io.tiff_io import read_tiff

        return read_tiff
    if suffix in _PIL:
        from voxseg.io.png_io import read_pil

        return read_pil
    if suffix == ".dcm":
        from voxseg.io.dicom_io import read_dicom_file

        return read_dicom_file
    raise InputImageError(
        path,
        f"unsupported file type {suffix or '(no suffix)'!r}",
        f"voxseg reads {', '.join(READ_SUFFIXES)} and DICOM folders",
    )


def _canonical_dtype(dtype: np.dtype) -> np.dtype | None:
    """The native numpy dtype voxseg uses for ``dtype``, or None if unsupported.

    Integers of 8-64 bits and float32/64 are kept (big-endian -> native, ``np.longlong`` ->
    ``np.int64``: equal in size but a different type), bool -> uint8, float16 -> float32.
    """
    if dtype.kind == "b":
        return np.dtype(np.uint8)
    if dtype.kind == "f" and dtype.itemsize == 2:
        return np.dtype(np.float32)
    if (dtype.kind in "iu" and dtype.itemsize in (1, 2, 4, 8)) or (dtype.kind == "f" and dtype.itemsize in (4, 8)):
        return np.dtype(f"{dtype.kind}{dtype.itemsize}")
    return None


def _normalized(vol: Volume, path: Path, action: str) -> Volume:
    """``vol`` with its array in the canonical dtype; refuse unsupported dtypes and empty arrays."""
    if vol.array.size == 0:
        raise InputImageError(
            path,
            f"image has a zero-size axis (shape {vol.shape})",
            "the file is empty or its header is wrong" if action == "read" else "check the array you pass",
        )
    canonical = _canonical_dtype(vol.dtype)
    if canonical is None:
        raise InputImageError(path, f"cannot {action} voxel type {vol.dtype}", "convert to an integer or float32 image")
    if vol.dtype.type is canonical.type and vol.dtype.isnative:
        return vol
    if vol.dtype.isnative and vol.dtype.itemsize == canonical.itemsize and vol.dtype.kind == canonical.kind:
        return vol.with_array(vol.array.view(canonical))  # same bytes, canonical type
    return vol.with_array(vol.array.astype(canonical))


def _check_volume(vol: Volume, path: Path, nonfinite: NonFinitePolicy) -> Volume:
    vol = _normalized(vol, path, "read")
    if np.issubdtype(vol.dtype, np.floating) and nonfinite != "allow":
        bad = int(np.count_nonzero(~np.isfinite(vol.array)))
        if bad == vol.array.size:  # nothing to segment, whatever the policy says about some NaN
            raise InputImageError(path, "every voxel is NaN or infinite", "the image holds no data: export it again")
        if bad:
            what = f"{bad} NaN/Inf voxel{'s' if bad > 1 else ''} of {vol.array.size}"
            if nonfinite == "error":
                raise InputImageError(path, f"image has {what}", "fix the image, or read it with nonfinite='warn'")
            log.warning("%s: image has %s", path, what)
    return vol


def read_channels(
    path: str | Path, *, nonfinite: NonFinitePolicy = "warn", series_uid: str | None = None
) -> list[Volume]:
    """Read an image file (or DICOM folder) as a list of single-channel Volumes.

    A scalar image gives one Volume; RGB, vector-pixel and 4D images give one per channel.

    Parameters
    ----------
    path
        Image file or DICOM series folder.
    nonfinite
        What to do with NaN/Inf voxels: ``"warn"`` (log and keep), ``"error"`` (refuse) or
        ``"allow"`` (do not check).
    series_uid
        For a DICOM folder holding several series, the one to read.

    Raises
    ------
    InputImageError
        Missing, empty, truncated or corrupt file, unsupported type, zero-size axis, NaN/Inf
        voxels with ``nonfinite="error"``.
    """
    path = Path(path)
    try:
        if path.is_dir():
            from voxseg.io.dicom_io import read_dicom_series

            channels = read_dicom_series(path, series_uid)
        else:
            if not path.exists():
                raise InputImageError(path, "file not found", "check the path")
            if path.stat().st_size == 0:
                raise InputImageError(path, "file is empty (0 bytes)", "copy or download it again")
            channels = _reader_for(path)(path)
    except InputImageError as exc:  # e.g. a Volume refusing the header's spacing: name the file
        if exc.path is None:
            raise exc.naming(path) from None
        raise
    return [_check_volume(v, path, nonfinite) for v in channels]


def read_image(path: str | Path, *, nonfinite: NonFinitePolicy = "warn", series_uid: str | None = None) -> Volume:
    """Read a single-channel 2D or 3D image as a :class:`Volume`.

    Multi-channel files (4D NIfTI, RGB, vector images) are refused with a hint; use
    :func:`read_channels` for them. See :func:`read_channels` for the parameters.
    """
    channels = read_channels(path, nonfinite=nonfinite, series_uid=series_uid)
    if len(channels) != 1:
        raise InputImageError(
            path,
            f"image has {len(channels)} channels (4D or multi-channel) where one 2D/3D image was expected",
            "split it into one file per channel (voxseg dataset convert does this for MSD tasks) or use read_channels",
        )
    return channels[0]


def _writer_for(path: Path) -> Writer:
    suffix = image_suffix(path)
    if suffix in _SITK:
        from voxseg.io.sitk_io import write_sitk

        return write_sitk
    if suffix in _TIFF:
        from voxseg.io.tiff_io import write_tiff

        return write_tiff
    if suffix in _PIL:
        from voxseg.io.png_io import write_pil

        return write_pil
    raise InputImageError(
        path, f"cannot write {suffix or '(no suffix)'!r} files", f"use one of {', '.join(WRITE_SUFFIXES)}"
    )


def _check_not_cut_short(tmp: Path, target: Path) -> None:
    """ITK's NIfTI writer only prints a message when the disk fills up mid-write and reports
    success: on a (nearly) full filesystem, read the new file back before it replaces anything."""
    if not nearly_full(tmp.parent):
        return
    try:
        _reader_for(tmp)(tmp)
    except (InputImageError, RuntimeError, OSError, ValueError):
        raise disk_full_error(target) from None


def _write_error(path: Path, exc: OSError) -> InputImageError:
    if isinstance(exc, PermissionError):
        return InputImageError(path, "permission denied", "choose a folder you can write to")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        return InputImageError(path, f"cannot create the output folder: {blocker} is a file", "choose another folder")
    return InputImageError(path, f"cannot write file ({exc.strerror or exc})", "check the folder and free disk space")


def write_image(volume: Volume, path: str | Path, *, compress: bool = True) -> Path:
    """Write ``volume`` to ``path`` atomically (temporary file + rename); return the path.

    The format follows the suffix. TIFF, PNG and JPEG also get a geometry sidecar
    (``path + ".json"``) so spacing, origin and direction survive the round trip.
    ``bool`` arrays are stored as uint8 and ``float16`` as float32.

    Raises
    ------
    InputImageError
        Unknown suffix, unsupported voxel type, empty array, data the format cannot hold
        (3D or float PNG, ...), or an output path that cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise InputImageError(path, "output path is a folder", "give a file name with an image suffix")
    writer = _writer_for(path)
    volume = _normalized(volume, path, "write")
    suffix = image_suffix(path)
    try:
        with atomic_dir(path) as tmp:  # the writer sees the real name (format by suffix) in a .part folder
            writer(volume, tmp, compress=compress)
            _check_not_cut_short(tmp, path)
        if suffix in _SIDECAR_SUFFIXES:
            write_sidecar(path, volume.geometry)
    except InputImageError as exc:  # raised about the temporary file: name the target instead
        raise exc.naming(path) from None
    except OSError as exc:
        raise _write_error(path, exc) from None
    except RuntimeError as exc:  # ITK writer errors
        if is_disk_full(exc):
            raise disk_full_error(path) from None
        raise InputImageError(path, f"cannot write image ({str(exc).strip().splitlines()[-1]})") from None
    if suffix in (".jpg", ".jpeg"):
        log.warning("%s: JPEG is lossy; use PNG or NIfTI for labels and exact values", path)
    return path
