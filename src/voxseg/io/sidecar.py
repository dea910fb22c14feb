"""Geometry sidecar files for formats without a reliable geometry header (TIFF, PNG, JPEG).

``image.tif`` gets ``image.tif.json`` (``image.json`` is read too when present)::

    {"spacing": [0.05, 0.05, 0.05], "origin": [0, 0, 0], "direction": [[1,0,0],[0,1,0],[0,0,1]],
     "axis_order": "array (z, y, x)", "units": "mm"}

Values are in voxseg's array axis order (see :mod:`voxseg.io.volume`).
"""

from __future__ import annotations

from pathlib import Path

from voxseg.errors import InputImageError
from voxseg.io.atomic import write_json_atomic
from voxseg.io.safe_json import read_json
from voxseg.io.volume import Geometry

__all__ = ["sidecar_path", "find_sidecar", "read_sidecar", "write_sidecar"]


def sidecar_path(image_path: Path) -> Path:
    return image_path.with_name(image_path.name + ".json")


def find_sidecar(image_path: Path) -> Path | None:
    """The sidecar of ``image_path`` if one exists (``x.tif.json`` first, then ``x.json``)."""
    for candidate in (sidecar_path(image_path), image_path.with_suffix(".json")):
        if candidate.is_file():
            return candidate
    return None


def read_sidecar(image_path: Path, ndim: int) -> Geometry | None:
    """Geometry from the sidecar of ``image_path``, or None if there is none."""
    path = find_sidecar(image_path)
    if path is None:
        return None
    try:
        data = read_json(path)
        spacing = [float(v) for v in data["spacing"]]
        origin = [float(v) for v in data.get("origin", [0.0] * ndim)]
        direction = data.get("direction")
        geo = (
            Geometry.identity(ndim, spacing)
            if direction is None
            else Geometry(tuple(spacing), tuple(origin), tuple(tuple(float(v) for v in r) for r in direction))
        )
        if direction is None:
            geo = Geometry(geo.spacing, tuple(origin), geo.direction)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputImageError(
            path,
            f"invalid geometry sidecar ({exc})",
            'it must be JSON like {"spacing": [..], "origin": [..], "direction": [[..]]}',
        ) from None
    if len(geo.spacing) != ndim or len(geo.origin) != ndim or len(geo.direction) != ndim:
        raise InputImageError(
            path,
            f"geometry sidecar describes {len(geo.spacing)} axes but the image has {ndim}",
            "give one spacing/origin value per image axis, in (z, y, x) order",
        )
    return geo


def write_sidecar(image_path: Path, geometry: Geometry) -> Path:
    data = {
        "spacing": list(geometry.spacing),
        "origin": list(geometry.origin),
        "direction": [list(r) for r in geometry.direction],
        "axis_order": "array (z, y, x)" if geometry.ndim == 3 else "array (y, x)",
        "units": "mm",
    }
    return write_json_atomic(sidecar_path(image_path), data)
