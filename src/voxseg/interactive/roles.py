"""Which of the six extreme points a user has placed, and a one-line status for a GUI.

An extreme-point prompt is six points: the two ends of the object along z, y and x. A GUI
(napari's Interactive widget, the web page) calls :func:`points_status` after every point to say
which ends are still missing. numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from voxseg.io import Volume

__all__ = ["extreme_roles", "missing_extremes", "points_status", "extreme_names"]

_AXES = ("z", "y", "x")


def extreme_names(ndim: int) -> list[str]:
    """The extreme names in order: ``["z min", "z max", "y min", ...]``."""
    return [f"{a} {end}" for a in _AXES[-ndim:] for end in ("min", "max")]


def extreme_roles(voxels: np.ndarray, spacing: Sequence[float]) -> list[str | None]:
    """Which extreme each point most likely marks (``"y max"``...), None while undecidable.

    A point's role is the axis along which it lies farthest (in mm) from the centre of the
    points, and the side; with fewer than two points no role is decided. When two points claim
    the same role, the farther one keeps it and the other gets None.
    """
    pts = np.asarray(voxels, dtype=np.float64)
    if len(pts) < 2:
        return [None] * len(pts)
    ndim = pts.shape[1]
    offsets = (pts - pts.mean(axis=0)) * np.asarray(spacing, dtype=np.float64)
    roles: list[str | None] = []
    strength: dict[str, tuple[float, int]] = {}
    for i, off in enumerate(offsets):
        axis = int(np.argmax(np.abs(off)))
        if abs(off[axis]) < 1e-9:
            roles.append(None)
            continue
        role = f"{_AXES[-ndim:][axis]} {'max' if off[axis] > 0 else 'min'}"
        roles.append(role)
        if role in strength and strength[role][0] >= abs(off[axis]):
            roles[i] = None
        else:
            if role in strength:
                roles[strength[role][1]] = None
            strength[role] = (abs(off[axis]), i)
    return roles


def missing_extremes(voxels: np.ndarray, spacing: Sequence[float]) -> list[str]:
    """The extremes (of :func:`extreme_names`) no point marks yet."""
    ndim = len(spacing)
    taken = {r for r in extreme_roles(voxels, spacing) if r is not None}
    return [name for name in extreme_names(ndim) if name not in taken]


def points_status(voxels: np.ndarray, image: Volume) -> str:
    """One line for the user: how many points, which extremes are missing, points outside the image."""
    pts = np.asarray(voxels, dtype=np.float64).reshape(-1, image.ndim)
    need = 2 * image.ndim
    if len(pts) == 0:
        return f"Place {need} points: the object's two ends along {', '.join(_AXES[-image.ndim :])}."
    outside = int(np.sum(np.any((np.rint(pts) < 0) | (np.rint(pts) >= np.asarray(image.shape)), axis=1)))
    missing = missing_extremes(pts, image.spacing)
    parts = [f"{len(pts)} of {need} points"]
    if outside:
        parts.append(f"{outside} outside the image")
    if len(pts) < 2:
        parts.append("place the next end of the object")
    elif missing:
        parts.append("missing: " + ", ".join(missing))
    elif len(pts) == need:
        parts.append("complete")
    else:
        parts.append(f"{len(pts) - need} too many")
    return "; ".join(parts) + "."
