"""The :class:`Volume`: an image array with its physical geometry.

Axis convention (the one order used everywhere in voxseg)
---------------------------------------------------------
``Volume.array`` is indexed in *array order*: ``(z, y, x)`` for 3D and ``(y, x)`` for 2D, the
order of ``SimpleITK.GetArrayFromImage`` and of the slices napari shows. ``spacing``, ``origin``
and ``direction`` are given **in the same array order**, so ``spacing[i]`` is the voxel size along
``array.shape[i]``. The physical position of voxel index ``k`` (array order) is::

    p = origin + direction @ (k * spacing)          # p in array order, millimetres

which is ITK's physical point with its components reversed (``p[::-1]`` is the ITK / LPS
``(x, y, z)`` point). Readers and writers convert from and to each file format's own convention
once, at the I/O edge; nothing else in voxseg reorders axes.

A Volume holds one channel. Multi-channel images are lists of Volumes with one geometry
(nnU-Net's ``CASE_0000``, ``CASE_0001`` files), see :func:`voxseg.io.read_channels`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voxseg.errors import GeometryError

__all__ = ["Volume", "Geometry", "check_spacing", "MIN_SPACING_MM", "MAX_SPACING_MM"]

#: Smallest and largest voxel size accepted, in mm (0.1 nm, one atom, and 1 m): anything outside is a
#: broken header. Not 1 nm: electron microscopy has sub-nanometre pixels.
MIN_SPACING_MM = 1e-7
MAX_SPACING_MM = 1000.0
_GEOMETRY_ATOL = 1e-4  # mm; spacing/origin agreement tolerance (headers round to float32)
_DIRECTION_ATOL = 1e-4


@dataclass(frozen=True)
class Geometry:
    """Spacing, origin and direction of a grid, in array axis order (see module docstring)."""

    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[tuple[float, ...], ...]

    @property
    def ndim(self) -> int:
        return len(self.spacing)

    @classmethod
    def identity(cls, ndim: int, spacing: Sequence[float] | None = None) -> Geometry:
        """Unit (or given) spacing, zero origin, identity direction."""
        sp = tuple(float(s) for s in spacing) if spacing is not None else (1.0,) * ndim
        eye = tuple(tuple(1.0 if i == j else 0.0 for j in range(ndim)) for i in range(ndim))
        return cls(sp, (0.0,) * ndim, eye)

    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=np.float64)

    def differences(self, other: Geometry, *, atol: float = _GEOMETRY_ATOL) -> list[str]:
        """Human-readable differences to ``other`` (empty if they match within tolerance)."""
        if self.ndim != other.ndim:
            return [f"dimensions differ ({self.ndim}D vs {other.ndim}D)"]
        out = []
        # spacing is compared relatively: microscopy spacings are tiny, CT ones large
        sp_a, sp_b = np.asarray(self.spacing), np.asarray(other.spacing)
        if not np.allclose(sp_a, sp_b, rtol=1e-4, atol=1e-6):
            out.append(f"spacing {_fmt(self.spacing)} vs {_fmt(other.spacing)}")
        if not np.allclose(self.origin, other.origin, atol=atol, rtol=1e-5):
            out.append(f"origin {_fmt(self.origin)} vs {_fmt(other.origin)}")
        if not np.allclose(self.direction_matrix(), other.direction_matrix(), atol=_DIRECTION_ATOL):
            out.append("orientation (direction matrix) differs")
        return out


def check_spacing(spacing: Sequence[float], path: str | Path | None = None) -> tuple[float, ...]:
    """``spacing`` as floats, or a :class:`~voxseg.errors.GeometryError` naming ``path`` when a
    value is zero, negative, NaN, infinite, below 1 nm or above 1 m (a header that would make
    voxseg segment at the wrong scale)."""
    values = tuple(float(s) for s in spacing)
    for axis, value in enumerate(values):
        if math.isfinite(value) and MIN_SPACING_MM <= value <= MAX_SPACING_MM:
            continue
        if not math.isfinite(value) or value <= 0:
            problem = f"voxel spacing {_fmt(values)} mm has {value!r} on axis {axis} (must be positive and finite)"
        else:
            problem = f"voxel spacing {_fmt(values)} mm has an absurd value on axis {axis} (outside 0.1 nm .. 1 m)"
        raise GeometryError(
            path, problem, "fix the header's voxel size (pixdim / spacing / resolution) or pass a valid spacing"
        )
    return values


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def _or_none(values):
    return None if values is None or len(values) == 0 else values


def _as_tuple(values: Sequence[float] | np.ndarray | None, ndim: int, name: str, default: float):
    if values is None:
        return (default,) * ndim
    out = tuple(float(v) for v in np.asarray(values, dtype=np.float64).ravel())
    if len(out) != ndim:
        raise ValueError(f"{name} has {len(out)} values for a {ndim}D array")
    return out


@dataclass(frozen=True, eq=False)
class Volume:
    """A single-channel 2D or 3D image with spacing (mm), origin (mm) and direction.

    Parameters
    ----------
    array
        Voxel values, axes in array order ``(z, y, x)`` or ``(y, x)``.
    spacing, origin
        Per-axis voxel size and position of voxel 0, in array order. Default 1 mm and 0.
    direction
        ``ndim x ndim`` direction cosines in array order (columns are axis directions).
        Default identity.
    """

    array: np.ndarray
    spacing: tuple[float, ...] = field(default=())
    origin: tuple[float, ...] = field(default=())
    direction: tuple[tuple[float, ...], ...] = field(default=())

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim not in (2, 3):
            raise ValueError(f"a Volume is 2D or 3D, got an array of shape {arr.shape}")
        ndim = arr.ndim
        object.__setattr__(self, "array", arr)
        sp = check_spacing(_as_tuple(_or_none(self.spacing), ndim, "spacing", 1.0))
        object.__setattr__(self, "spacing", sp)
        object.__setattr__(self, "origin", _as_tuple(_or_none(self.origin), ndim, "origin", 0.0))
        if _or_none(self.direction) is not None:
            d = np.asarray(self.direction, dtype=np.float64)
            if d.shape != (ndim, ndim):
                raise ValueError(f"direction must be {ndim}x{ndim}, got shape {d.shape}")
        else:
            d = np.eye(ndim)
        object.__setattr__(self, "direction", tuple(tuple(float(v) for v in row) for row in d))

    # -- basic properties -------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return self.array.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.spacing, self.origin, self.direction)

    @property
    def voxel_volume(self) -> float:
        """Volume (3D, mm^3) or area (2D, mm^2) of one voxel."""
        return float(np.prod(self.spacing))

    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=np.float64)

    # -- derived volumes --------------------------------------------------------------------
    def with_array(self, array: np.ndarray) -> Volume:
        """A Volume with the same geometry and a new array of the same spatial shape."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ValueError(f"new array shape {array.shape} differs from {self.array.shape}")
        return Volume(array, self.spacing, self.origin, self.direction)

    @classmethod
    def like(cls, array: np.ndarray, geometry: Geometry) -> Volume:
        return cls(array, geometry.spacing, geometry.origin, geometry.direction)

    # -- coordinates ------------------------------------------------------------------------
    def index_to_world(self, index: Sequence[float] | np.ndarray) -> np.ndarray:
        """Physical position (mm, array order) of voxel index/indices (``(..., ndim)``)."""
        idx = np.asarray(index, dtype=np.float64)
        return np.asarray(self.origin) + (idx * np.asarray(self.spacing)) @ self.direction_matrix().T

    def world_to_index(self, point: Sequence[float] | np.ndarray) -> np.ndarray:
        """Continuous voxel index of physical point(s) given in array order (mm)."""
        p = np.asarray(point, dtype=np.float64) - np.asarray(self.origin)
        inv = np.linalg.inv(self.direction_matrix())
        return (p @ inv.T) / np.asarray(self.spacing)

    def index_to_itk_point(self, index: Sequence[float] | np.ndarray) -> np.ndarray:
        """Physical position in ITK/LPS ``(x, y, z)`` order, as ITK-SNAP or 3D Slicer show it."""
        return self.index_to_world(index)[..., ::-1]

    def same_geometry(self, other: Volume) -> bool:
        """Same shape, spacing, origin and direction (within header rounding)."""
        return self.shape == other.shape and not self.geometry.differences(other.geometry)

    def __repr__(self) -> str:
        return (
            f"Volume(shape={self.shape}, dtype={self.dtype}, spacing={_fmt(self.spacing)}, origin={_fmt(self.origin)})"
        )


def require_same_grid(
    volume: Volume,
    reference: Volume,
    *,
    what: str,
    reference_name: str,
    fix: str,
    fix_geometry: str | None = None,
    path: object = None,
) -> None:
    """Raise a one-line :class:`~voxseg.errors.InputImageError` unless ``volume`` lies on ``reference``'s
    voxel grid: "``what`` has shape A, ``reference_name`` B" or "``what`` geometry differs from
    ``reference_name``: ..." with ``fix`` (``fix_geometry`` for a geometry difference, if given)."""
    from voxseg.errors import InputImageError

    if volume.shape != reference.shape:
        raise InputImageError(path, f"{what} has shape {volume.shape}, {reference_name} {reference.shape}", fix)
    diff = volume.geometry.differences(reference.geometry)
    if diff:
        raise InputImageError(
            path, f"{what} geometry differs from {reference_name}: {'; '.join(diff)}", fix_geometry or fix
        )
