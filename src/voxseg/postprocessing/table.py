"""Per-object statistics of an instance label image, and their CSV file.

Surface area (perimeter in 2D) is estimated from the voxel faces between an object and the rest,
each face weighted by how well it is aligned with the local surface normal. The normal comes from
the gradient of the object's mask smoothed with a Gaussian of σ = 1 voxel. Summed over the faces
normal to each axis, ``Σ face_area · |n_axis|`` is the true area of a smooth surface: the faces
normal to axis ``i`` cover ``|n_i|`` per unit of surface and each carries weight ``|n_i|``, and
``Σ n_i² = 1``. (Plain face counting overestimates a sphere's area by 50%.)

Measured accuracy: voxelized balls of radius ≥ 3 voxels are within 2% of ``4πr²`` with isotropic
voxels, within 4% with 2.0 × 0.7 × 0.7 mm voxels (radius ≥ 3 voxels in-plane). Axis-aligned boxes
come out 4–11% low (edges are smoothed), so their sphericity reads high: 0.60 instead of 0.53 for
a 4×4×40 rod, 0.88 instead of 0.81 for a 10³ cube. Sphericity is ``π^(1/3) (6V)^(2/3) / A`` (1 for
a ball), circularity in 2D ``4πA / P²``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cc3d
import fastremap
import numpy as np
from scipy import ndimage

from voxseg.errors import ConfigError, InputImageError
from voxseg.io.atomic import atomic_path
from voxseg.io.volume import Volume
from voxseg.postprocessing._common import as_array

__all__ = ["ObjectRow", "object_table", "write_object_table", "table_columns"]

_SIGMA = 1.0  # voxels: Gaussian used for the surface normals
_TRUNCATE = 3.0
_PAD = int(_SIGMA * _TRUNCATE) + 2


@dataclass(frozen=True)
class ObjectRow:
    """Statistics of one object. Index tuples are in array order ``(z, y, x)`` / ``(y, x)``.

    Attributes
    ----------
    id
        The object's id in the instance image.
    label
        Its semantic class (most frequent nonzero class under the object) when a class map was
        given, else None.
    voxels
        Number of voxels (pixels in 2D).
    volume
        ``voxels × voxel volume``: mm³ in 3D, mm² in 2D.
    centroid
        Mean voxel index (fractional).
    centroid_world
        The centroid's physical position (mm, array order): ``origin + direction @ (centroid * spacing)``.
    bbox_min, bbox_max
        Smallest and largest voxel index per axis (both inclusive).
    mean_intensity, max_intensity
        Of the image under the object; None without an image.
    surface
        Surface area in mm² (3D) or perimeter in mm (2D), see the module docstring.
    roundness
        Sphericity in 3D, circularity in 2D; 1 for a ball/disc, lower for elongated or rough shapes.
    """

    id: int
    label: int | None
    voxels: int
    volume: float
    centroid: tuple[float, ...]
    centroid_world: tuple[float, ...]
    bbox_min: tuple[int, ...]
    bbox_max: tuple[int, ...]
    mean_intensity: float | None
    max_intensity: float | None
    surface: float
    roundness: float

    @property
    def ndim(self) -> int:
        return len(self.centroid)

    def as_dict(self) -> dict[str, Any]:
        """The row as CSV columns (see :func:`table_columns`)."""
        axes = _axes(self.ndim)
        out: dict[str, Any] = {"id": self.id, "class": self.label, "voxels": self.voxels}
        out["volume_mm3" if self.ndim == 3 else "area_mm2"] = self.volume
        out.update({f"centroid_{a}": v for a, v in zip(axes, self.centroid, strict=True)})
        out.update({f"world_{a}_mm": v for a, v in zip(axes, self.centroid_world, strict=True)})
        for a, lo, hi in zip(axes, self.bbox_min, self.bbox_max, strict=True):
            out[f"bbox_{a}_min"], out[f"bbox_{a}_max"] = lo, hi
        out["mean_intensity"], out["max_intensity"] = self.mean_intensity, self.max_intensity
        if self.ndim == 3:
            out["surface_area_mm2"], out["sphericity"] = self.surface, self.roundness
        else:
            out["perimeter_mm"], out["circularity"] = self.surface, self.roundness
        return out


def _axes(ndim: int) -> tuple[str, ...]:
    return ("z", "y", "x") if ndim == 3 else ("y", "x")


def table_columns(ndim: int) -> list[str]:
    """CSV column names for a 2D or 3D table, in order."""
    probe = ObjectRow(0, None, 0, 0.0, (0.0,) * ndim, (0.0,) * ndim, (0,) * ndim, (0,) * ndim, None, None, 0.0, 0.0)
    return list(probe.as_dict())


def _geometry(volume: Volume | None, ndim: int, spacing, origin, direction):
    if volume is not None:
        if any(v is not None for v in (spacing, origin, direction)):
            raise ConfigError("give the geometry either as a Volume or as spacing/origin/direction, not both")
        return volume.geometry
    try:
        return Volume(
            np.zeros((1,) * ndim, np.uint8), *(() if v is None else v for v in (spacing, origin, direction))
        ).geometry
    except ValueError as exc:
        raise ConfigError(f"invalid geometry for the object table: {exc}") from None


def _surface(obj: np.ndarray, spacing: np.ndarray) -> float:
    """Surface area (perimeter in 2D) of a boolean object mask, see the module docstring."""
    mask = np.pad(obj, _PAD)
    smooth = ndimage.gaussian_filter(mask.astype(np.float32), _SIGMA, truncate=_TRUNCATE).ravel()
    flat = mask.ravel()
    # C-order strides in elements; thanks to the zero padding, neighbours along an axis are
    # ``stride`` apart in the flat array and pairs that wrap around a row are both background
    strides = [int(np.prod(mask.shape[a + 1 :])) for a in range(mask.ndim)]
    total = 0.0
    for axis, step in enumerate(strides):
        lo = np.flatnonzero(flat[:-step] != flat[step:])  # a face between lo and lo + step
        grad = np.empty((mask.ndim, lo.size), dtype=np.float64)
        for j, sj in enumerate(strides):  # central differences at both voxels of the face, averaged
            grad[j] = smooth[lo + sj] - smooth[lo - sj] + smooth[lo + step + sj] - smooth[lo + step - sj]
            grad[j] /= 4.0 * spacing[j]
        norm = np.sqrt((grad**2).sum(axis=0))
        weight = np.divide(np.abs(grad[axis]), norm, out=np.ones_like(norm), where=norm > 0)
        total += float(np.prod(np.delete(spacing, axis))) * float(weight.sum())
    return total


def _roundness(size: float, surface: float, ndim: int) -> float:
    if surface <= 0:
        return float("nan")
    if ndim == 3:
        return math.pi ** (1 / 3) * (6 * size) ** (2 / 3) / surface
    return 4 * math.pi * size / surface**2


def _class_of(class_map, region: np.ndarray | None, obj_id: int) -> int | None:
    if class_map is None:
        return None
    if isinstance(class_map, Mapping):
        value = class_map.get(obj_id)
        return None if value is None else int(value)
    values = region[region != 0]
    if values.size == 0:
        return 0
    classes, counts = np.unique(values, return_counts=True)
    return int(classes[np.argmax(counts)])


def _optional_array(data, shape: tuple[int, ...], name: str) -> np.ndarray | None:
    if data is None or isinstance(data, Mapping):
        return None
    arr = data.array if isinstance(data, Volume) else np.asarray(data)
    if arr.shape != shape:
        raise InputImageError(None, f"{name} has shape {arr.shape}, the instance image {shape}")
    return arr


def _object_row(renumbered, new, old, stats, world, sp, img, classes, class_map) -> ObjectRow:
    """The row of one object; ``new`` is its id in ``renumbered`` (1..N), ``old`` the caller's id."""
    ndim = renumbered.ndim
    box = stats["bounding_boxes"][new]
    lo = tuple(int(box[2 * a]) for a in range(ndim))
    hi = tuple(int(box[2 * a + 1]) for a in range(ndim))
    sl = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
    obj = renumbered[sl] == new
    voxels = int(stats["voxel_counts"][new])
    values = img[sl][obj] if img is not None else None
    surface = _surface(obj, sp)
    size = voxels * float(np.prod(sp))
    return ObjectRow(
        id=old,
        label=_class_of(class_map, classes[sl][obj] if classes is not None else None, old),
        voxels=voxels,
        volume=size,
        centroid=tuple(float(c) for c in stats["centroids"][new]),
        centroid_world=tuple(float(c) for c in world),
        bbox_min=lo,
        bbox_max=hi,
        mean_intensity=None if values is None else float(np.mean(values, dtype=np.float64)),
        max_intensity=None if values is None else float(np.max(values)),
        surface=surface,
        roundness=_roundness(size, surface, ndim),
    )


def object_table(
    instances: np.ndarray | Volume,
    *,
    image: np.ndarray | Volume | None = None,
    spacing: Sequence[float] | None = None,
    origin: Sequence[float] | None = None,
    direction: Sequence[Sequence[float]] | None = None,
    class_map: np.ndarray | Volume | Mapping[int, int] | None = None,
) -> list[ObjectRow]:
    """One :class:`ObjectRow` per object of an instance label image, sorted by id.

    Parameters
    ----------
    instances
        Instance label image (ids > 0, any integer dtype, need not be consecutive). A Volume
        supplies spacing, origin and direction.
    image
        Intensity image on the same grid, for mean/max intensity per object.
    spacing, origin, direction
        Geometry in array order when ``instances`` is an ndarray (defaults: 1 mm, 0, identity).
    class_map
        The semantic label map the instances came from (each object gets its most frequent
        nonzero class), or a mapping ``id -> class``.
    """
    inst, volume = as_array(instances, "instances")
    if inst.dtype.kind not in "biu":
        raise InputImageError(None, f"instances has dtype {inst.dtype}; expected integer ids (see instances())")
    geometry = _geometry(volume, inst.ndim, spacing, origin, direction)
    img = _optional_array(image, inst.shape, "image")
    classes = _optional_array(class_map, inst.shape, "class_map")
    if inst.dtype == bool:
        inst = inst.view(np.uint8)
    renumbered, mapping = fastremap.renumber(np.ascontiguousarray(inst), preserve_zero=True)
    new_to_old = {int(new): int(old) for old, new in mapping.items() if int(new) != 0}
    if not new_to_old:
        return []
    stats = cc3d.statistics(renumbered, no_slice_conversion=True)
    sp = np.asarray(geometry.spacing, dtype=np.float64)
    world = np.asarray(geometry.origin) + (stats["centroids"] * sp) @ geometry.direction_matrix().T
    rows = [
        _object_row(renumbered, new, old, stats, world[new], sp, img, classes, class_map)
        for new, old in new_to_old.items()
    ]
    rows.sort(key=lambda r: r.id)
    return rows


def write_object_table(rows: Sequence[ObjectRow], path: str | Path, *, ndim: int | None = None) -> Path:
    """Write rows as CSV (header line, one row per object) atomically; return the path.

    ``ndim`` picks the 2D or 3D columns for an empty table (default 3); otherwise it is taken from
    the rows. Missing values (no image, no class map) are empty cells.
    """
    if rows:
        ndim = rows[0].ndim
        if any(r.ndim != ndim for r in rows):
            raise ConfigError("rows mix 2D and 3D objects; write one table per image")
    columns = table_columns(ndim or 3)
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.as_dict().items()})
    return path


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return value
