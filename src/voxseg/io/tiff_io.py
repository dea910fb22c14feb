"""2D/3D TIFF (incl. ImageJ hyperstacks and OME-TIFF) through tifffile.

Spacing comes, in order of preference, from a geometry sidecar (``x.tif.json``), OME metadata,
ImageJ metadata (``spacing`` + ``unit``) with the X/Y resolution tags, or the resolution tags in
centimetres. Without any of these, spacing is 1 mm (and a warning says so).
"""

from __future__ import annotations

import logging
import math
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import tifffile

from voxseg.errors import GeometryError, InputImageError
from voxseg.io.sidecar import read_sidecar
from voxseg.io.volume import Geometry, Volume

__all__ = ["read_tiff", "write_tiff"]

log = logging.getLogger(__name__)

_UNIT_TO_MM = {
    "mm": 1.0,
    "millimeter": 1.0,
    "millimetre": 1.0,
    "um": 1e-3,
    "\u00b5m": 1e-3,
    "\u03bcm": 1e-3,
    "micron": 1e-3,
    "microns": 1e-3,
    "micrometer": 1e-3,
    "nm": 1e-6,
    "nanometer": 1e-6,
    "cm": 10.0,
    "centimeter": 10.0,
    "m": 1000.0,
    "meter": 1000.0,
}
_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)


def _unit_scale(unit: object) -> float | None:
    """Millimetres per ``unit``, or None if unknown. ImageJ writes micro as the text ``\\u00B5``."""
    text = str(unit).strip().lower().replace("\\u00b5", "\u00b5")
    return _UNIT_TO_MM.get(text)


def _split_axes(data: np.ndarray, axes: str, path: Path) -> list[np.ndarray]:
    """Reorder a tifffile series to channels of (Z)YX arrays."""
    axes = axes.upper().replace("Q", "Z").replace("I", "Z")
    for ax in list(axes):
        if ax not in "ZYXCS" and data.shape[axes.index(ax)] == 1:
            data = np.take(data, 0, axis=axes.index(ax))
            axes = axes.replace(ax, "")
    unknown = [a for a in axes if a not in "ZYXCS"]
    if unknown or axes.count("Z") > 1:
        raise InputImageError(
            path, f"TIFF axes {axes!r} are not supported", "save a 2D or 3D stack (axes YX or ZYX), channels as C"
        )
    chan_axes = [a for a in axes if a in "CS"]
    if len(chan_axes) > 1:
        raise InputImageError(path, f"TIFF has both C and S channel axes ({axes})", "save one channel axis")
    order = [axes.index(a) for a in chan_axes + [a for a in "ZYX" if a in axes]]
    data = np.transpose(data, order)
    if not chan_axes:
        return [data]
    return [np.ascontiguousarray(c) for c in data]


def _ome_pixels(ome: str) -> ET.Element | None:
    """The ``Pixels`` element of the first image in OME-XML, or None."""
    try:
        root = ET.fromstring(ome)
    except ET.ParseError:
        return None
    return next((el for el in root.iter() if el.tag.endswith("Pixels")), None)


def _ome_spacing(ome: str, ndim: int) -> tuple[float, ...] | None:
    pixels = _ome_pixels(ome)
    if pixels is None:
        return None
    out = []
    for ax in "ZYX"[3 - ndim :]:
        value = pixels.get(f"PhysicalSize{ax}")
        scale = _unit_scale(pixels.get(f"PhysicalSize{ax}Unit", "\u00b5m"))
        if value is None or scale is None:
            return None
        out.append(float(value) * scale)
    return tuple(out)


def _tag_spacing(tif: tifffile.TiffFile, ndim: int) -> tuple[float, ...] | None:
    page = tif.pages[0]
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    xr, yr = (tags[n].value for n in ("XResolution", "YResolution"))
    xres, yres = _ratio(xr), _ratio(yr)
    if xres is None or yres is None:
        raise GeometryError(
            tif.filehandle.path,
            f"TIFF resolution tags {tuple(xr)} / {tuple(yr)} give no voxel size (zero or invalid)",
            "fix the resolution tags or give the spacing in a sidecar JSON (voxseg writes one)",
        )
    ij = tif.imagej_metadata or {}
    scale = _unit_scale(ij.get("unit", ""))
    if scale is None and "ResolutionUnit" in tags and int(tags["ResolutionUnit"].value) == 3:
        scale = 10.0  # centimetre
    if scale is None:
        return None  # inches / no unit: a scanner DPI, not a physical voxel size
    yx = (scale / yres, scale / xres)
    if ndim == 2:
        return yx
    z = float(ij.get("spacing", 1.0)) * scale if "spacing" in ij else yx[0]
    return (z, *yx)


def _ratio(value: tuple[int, int]) -> float | None:
    """A positive, finite TIFF RATIONAL value, or None (zero numerator or denominator, garbage)."""
    try:
        num, den = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if den == 0 or not math.isfinite(num / den) or num / den <= 0:
        return None
    return num / den


def _declared_planes(tif: tifffile.TiffFile) -> int | None:
    """Number of 2D planes the ImageJ or OME metadata promise, or None if neither says."""
    if tif.is_imagej:
        return int((tif.imagej_metadata or {}).get("images", 0)) or None
    pixels = _ome_pixels(tif.ome_metadata) if tif.is_ome and tif.ome_metadata else None
    if pixels is None:
        return None
    try:
        sizes = [int(pixels.get(f"Size{ax}", 1)) for ax in "ZCT"]
    except ValueError:
        return None
    return int(np.prod(sizes)) // max(int(tif.pages.first.samplesperpixel), 1)


def _ifd_chain_ends(tif: tifffile.TiffFile) -> bool:
    """Whether the last image directory's "next" offset is 0, as in a complete file.

    In a truncated file it points past the end (tifffile then logs and keeps the pages it found).
    """
    len(tif.pages)  # index every page
    position = tif.pages.next_page_offset
    if position is None:
        return True
    tif.filehandle.seek(position)
    raw = tif.filehandle.read(tif.tiff.offsetsize)
    return len(raw) == tif.tiff.offsetsize and struct.unpack(tif.tiff.offsetformat, raw)[0] == 0


def _check_complete(tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, path: Path) -> None:
    """tifffile quietly reads what is left of a truncated stack (often one plane): refuse it."""
    if not _ifd_chain_ends(tif):
        raise InputImageError(
            path,
            "truncated or corrupt TIFF: its list of image planes breaks off",
            "the file is incomplete: copy or download it again",
        )
    declared = _declared_planes(tif)
    per_plane = int(np.prod(tif.pages.first.shape))
    found = int(np.prod(series.shape)) // max(per_plane, 1)
    if declared is not None and found < declared:
        raise InputImageError(
            path,
            f"truncated TIFF: {found} of the {declared} planes its metadata promise",
            "the file is incomplete: copy or download it again",
        )


def read_tiff(path: Path) -> list[Volume]:
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            _check_complete(tif, series, path)
            data = series.asarray()
            channels = _split_axes(data, series.axes, path)
            ndim = channels[0].ndim
            spacing = None
            if tif.is_ome and tif.ome_metadata:
                spacing = _ome_spacing(tif.ome_metadata, ndim)
            if spacing is None:
                spacing = _tag_spacing(tif, ndim)
    except InputImageError:
        raise
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise InputImageError(path, f"cannot read TIFF ({exc})", "the file may be truncated or not a TIFF") from None
    if ndim not in (2, 3):
        raise InputImageError(path, f"TIFF holds a {ndim}D image", "voxseg reads 2D and 3D TIFF")
    geometry = read_sidecar(path, ndim)
    if geometry is None:
        if spacing is None:
            log.warning("%s: no spacing in the TIFF or a sidecar; assuming 1 mm voxels", path)
        geometry = Geometry.identity(ndim, spacing)
    return [Volume.like(c, geometry) for c in channels]


def write_tiff(volume: Volume, path: Path, *, compress: bool = True) -> None:
    arr = volume.array
    sp = volume.spacing
    kwargs: dict = {"compression": "zlib" if compress else None, "photometric": "minisblack"}
    if arr.dtype.type in _IMAGEJ_DTYPES:
        meta = {"unit": "mm", "axes": "ZYX" if arr.ndim == 3 else "YX"}
        if arr.ndim == 3:
            meta["spacing"] = sp[0]
        kwargs.update(imagej=True, metadata=meta, resolution=(1.0 / sp[-1], 1.0 / sp[-2]))
    else:
        kwargs.update(resolution=(10.0 / sp[-1], 10.0 / sp[-2]), resolutionunit="CENTIMETER")
    tifffile.imwrite(path, arr, **kwargs)
