"""Shared input handling: arrays or Volumes in, the same type out; connectivity; size thresholds."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from voxseg.errors import ConfigError, InputImageError
from voxseg.io.volume import Volume

__all__ = [
    "as_array",
    "rewrap",
    "resolve_spacing",
    "cc3d_connectivity",
    "min_voxels",
    "smallest_uint",
    "normalize_classes",
]

_CONNECTIVITY_3D = (6, 18, 26)
_CONNECTIVITY_2D = {4: 4, 8: 8, 6: 4, 18: 8, 26: 8}  # a 2D image is a one-slice 3D image


def as_array(data: Any, name: str = "mask") -> tuple[np.ndarray, Volume | None]:
    """The array of ``data`` (an ndarray, array-like or :class:`Volume`) and the Volume, if any."""
    volume = data if isinstance(data, Volume) else None
    arr = data.array if volume is not None else np.asarray(data)
    if arr.ndim not in (2, 3):
        raise InputImageError(None, f"{name} must be a 2D or 3D array, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise InputImageError(None, f"{name} has dtype {arr.dtype}; expected bool, integer or float labels")
    return arr, volume


def rewrap(result: np.ndarray, volume: Volume | None) -> np.ndarray | Volume:
    """Return ``result`` as a Volume with ``volume``'s geometry when the input was a Volume."""
    return volume.with_array(result) if volume is not None else result


def resolve_spacing(spacing: Sequence[float] | None, volume: Volume | None, ndim: int) -> tuple[float, ...] | None:
    """The voxel spacing (array order, mm) from ``spacing`` or the Volume; None if neither gives one."""
    if spacing is not None:
        sp = tuple(float(s) for s in np.asarray(spacing, dtype=np.float64).ravel())
        if len(sp) == 1:
            sp = sp * ndim
        if len(sp) != ndim or any(not math.isfinite(s) or s <= 0 for s in sp):
            raise ConfigError(f"spacing must be {ndim} positive numbers (array order, mm), got {tuple(spacing)}")
        if volume is not None and not np.allclose(sp, volume.spacing, rtol=1e-5):
            raise ConfigError(
                f"spacing {sp} contradicts the Volume's spacing {volume.spacing}; leave spacing out for a Volume"
            )
        return sp
    return tuple(volume.spacing) if volume is not None else None


def cc3d_connectivity(connectivity: int, ndim: int) -> int:
    """Validate ``connectivity`` for an ``ndim`` image and return the value cc3d expects.

    In 2D, 4 and 8 are native; 6 means 4 and 18/26 mean 8 (a 2D image treated as one slice of a
    3D image), so the default 26 works for 2D and 3D alike.
    """
    if ndim == 3:
        if connectivity not in _CONNECTIVITY_3D:
            raise ConfigError(
                f"connectivity {connectivity!r} is not valid in 3D; use 6 (faces), 18 (+edges) or 26 (+corners)"
            )
        return int(connectivity)
    if connectivity not in _CONNECTIVITY_2D:
        raise ConfigError(f"connectivity {connectivity!r} is not valid in 2D; use 4 (edges) or 8 (+corners)")
    return _CONNECTIVITY_2D[connectivity]


def min_voxels(min_size: int | None, min_volume: float | None, spacing: Sequence[float] | None) -> int:
    """The smallest object size kept, in voxels, from a voxel count or a physical volume (mm³/mm²).

    ``min_volume`` wins when given. An object of ``n`` voxels is kept when ``n * voxel_volume >=
    min_volume``, i.e. ``n >= ceil(min_volume / voxel_volume)``.
    """
    if min_volume is not None:
        if spacing is None:
            raise ConfigError("min_volume is in mm³ (mm² in 2D) and needs the voxel spacing: pass spacing= or a Volume")
        if not math.isfinite(min_volume) or min_volume < 0:
            raise ConfigError(f"min_volume must be a number >= 0, got {min_volume!r}")
        voxel_volume = float(np.prod(spacing))
        return max(0, math.ceil(min_volume / voxel_volume - 1e-9))
    if min_size is None:
        return 0
    if isinstance(min_size, bool) or not float(min_size).is_integer() or min_size < 0:
        raise ConfigError(f"min_size is a voxel count and must be an integer >= 0, got {min_size!r}")
    return int(min_size)


def smallest_uint(max_value: int) -> np.dtype:
    """uint16 up to 65535 objects, then uint32, then uint64."""
    for dtype in (np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def normalize_classes(classes: Iterable[Any] | None, arr: np.ndarray) -> tuple | None:
    """Classes as a tuple of values of ``arr``'s kind (True for a bool mask), or None for all."""
    if classes is None:
        return None
    if isinstance(classes, (int, np.integer)):
        classes = (classes,)
    out = []
    for c in classes:
        if isinstance(c, (bool, np.bool_)) or not float(c).is_integer():
            raise ConfigError(f"classes must be integer label values, got {c!r}")
        if int(c) == 0:
            raise ConfigError("class 0 is background; list foreground label values in classes")
        if arr.dtype == bool:
            if int(c) != 1:
                continue  # a bool mask holds class 1 (True) only
            out.append(True)
        else:
            out.append(int(c))
    return tuple(out)
