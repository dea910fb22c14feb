"""Point prompts from users: the ``points.json`` and napari CSV formats, coordinates, checks.

``points.json`` (written by :func:`write_points`, read by :func:`read_points`)::

    {"space": "voxel", "points": [[z, y, x], ...], "labels": [1, 1, ...]}

- ``space``: ``"voxel"`` (indices into the image array, may be fractional) or ``"world"``
  (physical millimetres as :meth:`voxseg.io.Volume.index_to_world` gives them: origin and
  direction applied). Optional, default ``"voxel"``.
- ``points``: one list per point, in **array axis order** (``z, y, x`` / ``y, x``), like
  ``Volume.array`` and napari. World points use the same order (ITK's ``x, y, z`` reversed).
- ``labels``: optional, one per point, 1 for the object (extreme points, positive clicks),
  0 for background (negative clicks); default all 1.

napari Points layer CSV (``File > Save Selected Layer(s)``)::

    index,axis-0,axis-1,axis-2
    0,12.0,40.5,33.0

The ``axis-K`` columns are napari data coordinates in array order; an optional ``label``
column gives the labels. napari coordinates are voxel indices when the image layer has no
``scale``; when it was opened with ``scale=spacing`` (and ``translate=origin``) they are
``index * spacing + origin``: world coordinates for images with an identity direction. The file
does not say which, so the reader takes ``space`` from the caller (default ``"voxel"``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from voxseg.errors import ConfigError, InputImageError
from voxseg.io import Volume, write_json_atomic, write_text_atomic
from voxseg.io.safe_json import read_json
from voxseg.io.volume import Geometry
from voxseg.preprocessing.pipeline import CaseProperties

__all__ = [
    "SPACES",
    "PointPrompt",
    "read_points",
    "write_points",
    "points_to_voxel",
    "validate_points",
    "load_points",
    "points_to_preprocessed",
    "points_from_preprocessed",
]

SPACES = ("voxel", "world")
_SPACE_HINT = 'space "world" in points.json, --points-space world'


@dataclass(frozen=True, eq=False)
class PointPrompt:
    """Points with labels and the coordinate space they are given in.

    Parameters
    ----------
    points
        ``(N, ndim)`` coordinates in array axis order.
    labels
        One per point: 1 object / positive, 0 background / negative. Default all 1.
    space
        ``"voxel"`` or ``"world"`` (mm).
    """

    points: np.ndarray
    labels: tuple[int, ...] = ()
    space: str = "voxel"

    def __post_init__(self) -> None:
        pts = np.asarray(self.points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] not in (2, 3):
            raise ConfigError(f"points must be a list of [z, y, x] (or [y, x]) coordinates, got shape {pts.shape}")
        labels = tuple(int(v) for v in self.labels) if len(self.labels) else (1,) * len(pts)
        if len(labels) != len(pts) or any(v not in (0, 1) for v in labels):
            raise ConfigError(f"labels must be one 0 or 1 per point ({len(pts)} points), got {list(labels)}")
        _check_space(self.space)
        object.__setattr__(self, "points", pts)
        object.__setattr__(self, "labels", labels)

    def to_json(self) -> dict[str, Any]:
        return {"space": self.space, "points": self.points.tolist(), "labels": list(self.labels)}


def _check_space(space: str) -> str:
    if space not in SPACES:
        raise ConfigError(f"unknown point space {space!r}; use one of {', '.join(SPACES)}")
    return space


def _read_json(path: Path) -> tuple[Any, Any, str | None]:
    data = read_json(path, error=InputImageError, fix='a points file is like {"points": [[z, y, x]]}')
    if isinstance(data, list):
        return data, None, None
    if not isinstance(data, dict) or "points" not in data:
        raise InputImageError(path, "a points file is an object with a 'points' list", 'e.g. {"points": [[z, y, x]]}')
    return data["points"], data.get("labels"), data.get("space")


def _read_csv(path: Path) -> tuple[Any, Any, None]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise InputImageError(path, "the CSV has no points", "save a napari Points layer with at least one point")
    axes = sorted((k for k in rows[0] if k and k.startswith("axis-")), key=lambda k: int(k.split("-")[1]))
    if not axes:
        raise InputImageError(path, "no axis-0, axis-1, ... columns", "save the napari Points layer as CSV")
    try:
        points = [[float(row[k]) for k in axes] for row in rows]
        labels = [int(float(row["label"])) for row in rows] if "label" in rows[0] else None
    except (TypeError, ValueError) as exc:
        raise InputImageError(path, f"a value is not a number ({exc})") from None
    return points, labels, None


def read_points(path: str | Path, *, space: Literal["voxel", "world"] | None = None) -> PointPrompt:
    """Read ``points.json`` or a napari Points layer ``.csv`` (see the module docstring).

    Parameters
    ----------
    path
        A ``.json`` or ``.csv`` file.
    space
        Coordinate space; must agree with a ``space`` the file declares. Default: the file's,
        else ``"voxel"``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputImageError(path, "no such points file")
    suffix = path.suffix.lower()
    if suffix == ".json":
        points, labels, declared = _read_json(path)
    elif suffix == ".csv":
        points, labels, declared = _read_csv(path)
    else:
        raise InputImageError(path, f"unknown points format {suffix!r}", "use points.json or a napari .csv")
    if declared is not None and space is not None and declared != space:
        raise InputImageError(path, f"the file says space {declared!r} but {space!r} was asked", "drop one of them")
    chosen = space or declared or "voxel"
    try:
        return PointPrompt(np.asarray(points, dtype=np.float64), tuple(labels or ()), chosen)
    except (ConfigError, ValueError, TypeError) as exc:
        raise InputImageError(path, str(exc)) from None


def write_points(path: str | Path, prompt: PointPrompt) -> Path:
    """Write ``prompt`` atomically as ``points.json``, or as a napari Points CSV for ``.csv``.

    The CSV (``index,axis-0,...,label``) opens in napari as a Points layer; it does not record
    the space, so write voxel points for an image layer without scale. Returns the path.
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        axes = ",".join(f"axis-{k}" for k in range(prompt.points.shape[1]))
        rows = [f"index,{axes},label"]
        for i, (point, label) in enumerate(zip(prompt.points, prompt.labels, strict=True)):
            rows.append(",".join([str(i), *(f"{v:g}" for v in point), str(label)]))
        write_text_atomic(path, "\n".join(rows) + "\n")
    else:
        write_json_atomic(path, prompt.to_json())
    return path


def points_to_voxel(points: np.ndarray | Sequence[Sequence[float]], volume: Volume, space: str = "voxel") -> np.ndarray:
    """Continuous voxel indices (``float64``, ``(N, ndim)``) of points given in ``space``.

    ``"world"`` points (mm, array order) go through the volume's origin, spacing and direction
    (:meth:`voxseg.io.Volume.world_to_index`); ``"voxel"`` points are returned as floats.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != volume.ndim:
        raise ConfigError(f"points must be N x {volume.ndim} coordinates for a {volume.ndim}D image, got {pts.shape}")
    if _check_space(space) == "world":
        return volume.world_to_index(pts)
    return pts.copy()


def _inside(points: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    idx = np.rint(points)
    return np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)


def _fmt(point: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:g}" for v in point) + "]"


def _outside_message(points: np.ndarray, shape: tuple[int, ...], geometry: Geometry | None, source: str) -> str:
    bad = int(np.flatnonzero(~_inside(points, shape))[0])
    msg = f"{source}: point {bad} {_fmt(points[bad])} is outside the image of shape {shape}"
    msg += " (voxel indices, array order)"
    if geometry is not None:
        probe = Volume.like(np.zeros((1,) * len(shape), np.uint8), geometry)
        as_index = probe.world_to_index(points)
        if np.all(_inside(as_index, shape)):
            return f"{msg}; they fit the image as world coordinates in mm: declare them ({_SPACE_HINT})"
    if np.all(_inside(points[:, ::-1], shape)):
        return f"{msg}; reversed they fit: give (z, y, x) in array order, not (x, y, z)"
    return f"{msg}; if they are world coordinates in mm, declare them ({_SPACE_HINT})"


def validate_points(
    points: np.ndarray | Sequence[Sequence[float]],
    shape: Sequence[int],
    *,
    spacing: Sequence[float] | None = None,
    geometry: Geometry | None = None,
    expected: int | Literal["any"] | None = None,
    source: str = "points",
) -> np.ndarray:
    """Check voxel points against an image and round them to voxels.

    Checks, each failing with a one-line :class:`~voxseg.errors.ConfigError`: the array is
    ``N x ndim``; coordinates are finite; the count (``expected`` points, default ``2 * ndim``:
    the extreme points); every point lies in the image (with a hint when the points fit as
    world coordinates or in reversed axis order); the points are not all one voxel.

    Parameters
    ----------
    points
        ``(N, ndim)`` voxel coordinates (array order).
    shape
        The image's shape.
    spacing, geometry
        The image's geometry (or just its spacing, origin 0), used to recognise world
        coordinates passed as voxel indices.
    expected
        Required number of points; ``"any"`` accepts one or more.
    source
        What the points are called in messages (a file name).

    Returns
    -------
    numpy.ndarray
        ``(N, ndim)`` int64 voxel indices.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != ndim:
        axes = "(z, y, x)" if ndim == 3 else "(y, x)"
        raise ConfigError(
            f"{source}: expected N x {ndim} coordinates {axes} for a {ndim}D image, got shape {pts.shape}"
        )
    if not np.all(np.isfinite(pts)):
        raise ConfigError(f"{source}: coordinates must be finite numbers (found NaN or infinity)")
    need = 2 * ndim if expected is None else expected
    if need == "any":
        if len(pts) == 0:
            raise ConfigError(f"{source}: no points given")
    elif len(pts) != need:
        what = "fewer" if len(pts) < need else "more"
        raise ConfigError(
            f"{source}: {len(pts)} points given, {what} than the {need} needed "
            f"(the two ends of the object along each of the {ndim} axes)"
        )
    if geometry is None and spacing is not None:
        geometry = Geometry.identity(ndim, spacing)
    if not np.all(_inside(pts, shape)):
        raise ConfigError(_outside_message(pts, shape, geometry, source))
    idx = np.rint(pts).astype(np.int64)
    if len(idx) > 1 and np.all(idx == idx[0]):
        raise ConfigError(
            f"{source}: all {len(idx)} points are the same voxel {_fmt(idx[0])}; "
            "mark the two ends of the object along each axis"
        )
    return idx


def load_points(
    prompt: PointPrompt | str | Path,
    volume: Volume,
    *,
    space: Literal["voxel", "world"] | None = None,
    expected: int | Literal["any"] | None = None,
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Read (if a path), convert to voxels and validate a prompt for ``volume``.

    Returns the ``(N, ndim)`` int64 voxel indices and the labels. Points declared as world
    coordinates that only fit the image as voxel indices fail with a hint, as do voxel points
    that only fit as world coordinates.
    """
    source = "points"
    if not isinstance(prompt, PointPrompt):
        source = Path(prompt).name
        prompt = read_points(prompt, space=space)
    elif space is not None and space != prompt.space:
        raise ConfigError(f"the prompt is in {prompt.space!r} space but {space!r} was asked")
    voxels = points_to_voxel(prompt.points, volume, prompt.space)
    misplaced = prompt.space == "world" and len(voxels) and not np.all(_inside(voxels, volume.shape))
    if misplaced and np.all(_inside(prompt.points, volume.shape)):
        raise ConfigError(
            f"{source}: the world points fall outside the image but fit it as voxel indices: "
            'declare them as voxel (space "voxel" in points.json, --points-space voxel)'
        )
    geometry = volume.geometry if prompt.space == "voxel" else None
    return validate_points(voxels, volume.shape, geometry=geometry, expected=expected, source=source), prompt.labels


def _grid_scale(properties: CaseProperties, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    if ndim != len(properties.shape_after_crop):
        raise ConfigError(f"{ndim}D points do not fit a {len(properties.shape_after_crop)}D preprocessed case")
    ratio = np.asarray(properties.shape_after_resampling, float) / np.asarray(properties.shape_after_crop, float)
    return np.asarray(properties.crop_box.start, float), ratio


def points_to_preprocessed(points: np.ndarray | Sequence[Sequence[float]], properties: CaseProperties) -> np.ndarray:
    """Voxel indices of the original image -> continuous indices of its preprocessed grid.

    The preprocessed grid is the original cropped to ``properties.crop_box`` and resampled to
    ``shape_after_resampling`` (voxel centres aligned as in
    :meth:`~voxseg.preprocessing.pipeline.CaseProperties.preprocessed_geometry`); both grids
    share the direction, so the mapping is per axis. Round (and check) before encoding.
    """
    pts = np.asarray(points, dtype=np.float64)
    start, ratio = _grid_scale(properties, pts.shape[-1])
    return (pts - start + 0.5) * ratio - 0.5


def points_from_preprocessed(points: np.ndarray | Sequence[Sequence[float]], properties: CaseProperties) -> np.ndarray:
    """The inverse of :func:`points_to_preprocessed` (continuous original voxel indices)."""
    pts = np.asarray(points, dtype=np.float64)
    start, ratio = _grid_scale(properties, pts.shape[-1])
    return (pts + 0.5) / ratio - 0.5 + start
