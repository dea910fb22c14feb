"""Extreme points placed in napari: world -> voxel coordinates (and the roles, from voxseg.interactive).

napari gives Points-layer coordinates in that layer's data space; ``layer.data_to_world`` turns
them into world millimetres (array order, as voxseg's Volume uses), and
:func:`voxseg.interactive.points_to_voxel` maps those to the image's voxel indices (through its
origin, spacing and direction). Which extremes are missing: :mod:`voxseg.interactive.roles`.
No Qt or napari import here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from voxseg.interactive.roles import extreme_names, extreme_roles, missing_extremes, points_status
from voxseg.io import Volume

__all__ = ["world_to_voxels", "extreme_roles", "missing_extremes", "points_status", "extreme_names"]


def world_to_voxels(world: np.ndarray | Sequence[Sequence[float]], image: Volume) -> np.ndarray:
    """Continuous voxel indices ``(N, ndim)`` of world points (mm, array order) in ``image``."""
    from voxseg.interactive import points_to_voxel

    pts = np.asarray(world, dtype=np.float64).reshape(-1, image.ndim)
    return points_to_voxel(pts, image, space="world")
