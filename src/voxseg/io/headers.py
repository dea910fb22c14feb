"""Image headers without the voxels: shape, spacing and channel count of a file, read cheaply.

Used by the pre-flight check (:mod:`voxseg.inference.preflight`) to state and validate the work
before any image or model is loaded. NIfTI / NRRD / MetaImage / DICOM go through SimpleITK's
``ReadImageInformation``; TIFF through tifffile's page index; PNG/JPEG through Pillow's lazy open.
Geometry sidecars (``x.png.json``) are honoured as by the readers. All values in voxseg's array
axis order ``(z, y, x)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxseg.errors import InputImageError
from voxseg.io.formats import _PIL, _SITK, _TIFF, image_suffix
from voxseg.io.sidecar import read_sidecar

__all__ = ["ImageHeader", "read_header"]


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says.

    Attributes
    ----------
    path
        The file (or DICOM folder).
    shape
        Spatial shape, array order.
    spacing
        Voxel size in mm, array order (1 mm per axis when the file records none).
    channels
        Channels the reader will return, or None when only the voxels can tell (an RGB PNG that
        may be grey stored as RGB).
    spacing_known
        False when the file and its sidecar record no spacing (the reader takes 1 mm).
    """

    path: Path
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    channels: int | None = 1
    spacing_known: bool = True

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @classmethod
    def of_volume(cls, volume: Any, name: str, *, spacing_known: bool = True) -> ImageHeader:
        """The header of an in-memory :class:`~voxseg.io.Volume` (``name`` stands for the path)."""
        return cls(Path(name), tuple(volume.shape), tuple(volume.spacing), 1, spacing_known)


def read_header(path: str | Path, *, series_uid: str | None = None) -> ImageHeader:
    """The header of an image file or DICOM folder (no voxel data is read).

    ``series_uid`` picks one series of a folder holding several (default: the first one).

    Raises
    ------
    InputImageError
        Missing, empty or unreadable file, unsupported type or dimensionality.
    """
    path = Path(path)
    if path.is_dir():
        return _sitk_header(path, dicom_folder=True, series_uid=series_uid)
    if not path.exists():
        raise InputImageError(path, "file not found", "check the path")
    if path.stat().st_size == 0:
        raise InputImageError(path, "file is empty (0 bytes)", "copy or download it again")
    suffix = image_suffix(path)
    if suffix in _SITK or suffix == ".dcm":
        header = _sitk_header(path)
    elif suffix in _TIFF:
        header = _tiff_header(path)
    elif suffix in _PIL:
        header = _pil_header(path)
    else:
        raise InputImageError(path, f"unsupported file type {suffix or '(no suffix)'!r}", "give an image file")
    if header.ndim not in (2, 3) or min(header.shape) < 1:
        raise InputImageError(path, f"image of shape {header.shape} is not a 2D or 3D image", "give a 2D or 3D image")
    return header


def _sitk_header(path: Path, *, dicom_folder: bool = False, series_uid: str | None = None) -> ImageHeader:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    files: tuple[str, ...] = ()
    if dicom_folder:
        reader_args = (str(path), series_uid) if series_uid else (str(path),)
        files = tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(*reader_args))
        if not files:
            raise InputImageError(path, "folder holds no DICOM series", "give an image file or a DICOM series folder")
    reader.SetFileName(files[0] if files else str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputImageError(
            path, "not a readable image (unknown or corrupt header)", "check the file is the type its suffix says"
        ) from None
    size = [int(s) for s in reader.GetSize()]
    spacing = [float(s) for s in reader.GetSpacing()]
    channels = int(reader.GetNumberOfComponents())
    if len(size) == 4:  # channel-last in ITK order: the reader splits it into channels
        channels *= size.pop()
        spacing.pop()
    if len(files) > 1:  # one file per slice
        size = [*size[:2], len(files)]
        spacing = [*spacing[:2], spacing[2] if len(spacing) > 2 else 1.0]
    elif len(size) == 3 and size[2] == 1 and image_suffix(path) == ".dcm":
        size, spacing = size[:2], spacing[:2]
    return ImageHeader(path, tuple(size[::-1]), tuple(spacing[::-1]), channels)


def _tiff_header(path: Path) -> ImageHeader:
    import tifffile

    from voxseg.io.tiff_io import _ome_spacing, _tag_spacing

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes.upper().replace("Q", "Z").replace("I", "Z")
            dims = dict(zip(axes, series.shape, strict=True))
            shape = tuple(int(dims[a]) for a in "ZYX" if a in dims and (a != "Z" or dims[a] > 1))
            channels = int(dims.get("C", 1)) * int(dims.get("S", 1))
            spacing = _ome_spacing(tif.ome_metadata, len(shape)) if tif.is_ome and tif.ome_metadata else None
            if spacing is None:
                spacing = _tag_spacing(tif, len(shape))
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise InputImageError(path, f"cannot read TIFF ({exc})", "the file may be truncated or not a TIFF") from None
    return _with_sidecar(path, shape, spacing, channels)


def _pil_header(path: Path) -> ImageHeader:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            width, height, mode = img.size[0], img.size[1], img.mode
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputImageError(path, f"cannot read image ({exc})", "the file may be truncated or not an image") from None
    grey = mode in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L", "F", "LA")
    return _with_sidecar(path, (height, width), None, 1 if grey else None)


def _with_sidecar(path: Path, shape: tuple[int, ...], spacing, channels: int | None) -> ImageHeader:
    geometry = read_sidecar(path, len(shape))
    if geometry is not None:
        return ImageHeader(path, shape, tuple(geometry.spacing), channels)
    if spacing is None:
        return ImageHeader(path, shape, (1.0,) * len(shape), channels, spacing_known=False)
    return ImageHeader(path, shape, tuple(float(s) for s in spacing), channels)
