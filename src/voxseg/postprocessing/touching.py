"""Touching objects (nuclei, cells): a border-aware target and the seeded split back into instances.

Connected components of a semantic mask merge objects that touch. The remedy of StarDist-free
nucleus pipelines is a 3-class target: background 0, object interior 1, object boundary 2 (a ring
of ``width`` voxels of each instance along the background and along every other instance), made
from an instance label image (:func:`border_target`, defined in :mod:`voxseg.dataset.instances`).
A network trained on it predicts interiors
that do not touch; :func:`split_instances` takes each connected interior as a seed and gives every
interior or boundary voxel to its nearest seed (a seeded watershed on the distance to the seeds,
computed with SciPy's exact Euclidean distance transform, so no extra dependency), inside the
predicted foreground only. Foreground pieces that hold no seed stay objects of their own.
"""

from __future__ import annotations

from typing import Any

import cc3d
import numpy as np
from scipy import ndimage

from voxseg.dataset.instances import BACKGROUND, BOUNDARY, INTERIOR, border_target
from voxseg.postprocessing._common import as_array, cc3d_connectivity, rewrap, smallest_uint

__all__ = ["border_target", "split_instances", "BACKGROUND", "INTERIOR", "BOUNDARY"]


def _relabel_by_size(ids: np.ndarray, min_size: int) -> np.ndarray:
    """Ids 1..N, largest object first (ties: lower old id first), objects under ``min_size`` dropped."""
    values, counts = np.unique(ids[ids > 0], return_counts=True)
    keep = counts >= max(1, min_size)
    values, counts = values[keep], counts[keep]
    order = np.lexsort((values, -counts))
    lut = np.zeros(int(ids.max(initial=0)) + 1, dtype=np.int64)
    lut[values[order]] = np.arange(1, order.size + 1)
    return lut[ids].astype(smallest_uint(order.size), copy=False)


def split_instances(
    labels: Any,
    *,
    interior: int = INTERIOR,
    boundary: int = BOUNDARY,
    min_size: int = 0,
    connectivity: int = 26,
) -> Any:
    """Instance ids from a background / interior / boundary label map (see the module docstring).

    Parameters
    ----------
    labels
        Array or :class:`~voxseg.io.Volume` of class labels.
    interior, boundary
        The class values of object interiors (the seeds) and of object boundaries.
    min_size
        Objects under this many voxels are dropped.
    connectivity
        Connectivity of the seeds (4/8 in 2D, 6/18/26 in 3D; 26 and 18 mean 8 in 2D).

    Returns
    -------
    Instance ids 1..N ordered by size (uint8/16/32), of the same kind (array/Volume) as ``labels``.
    """
    arr, volume = as_array(labels, "labels")
    foreground = (arr == interior) | (arr == boundary)
    seeds = cc3d.connected_components(arr == interior, connectivity=cc3d_connectivity(connectivity, arr.ndim))
    seeds = seeds.astype(np.int64, copy=False)
    if seeds.max(initial=0) > 0:
        _, nearest = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
        grown = seeds[tuple(nearest)]
        del nearest
    else:
        grown = np.zeros_like(seeds)
    grown[~foreground] = 0
    pieces = cc3d.connected_components(foreground, connectivity=cc3d_connectivity(connectivity, arr.ndim))
    orphans = foreground & ~np.isin(pieces, np.unique(pieces[seeds > 0]))  # foreground pieces without a seed
    grown[orphans] = pieces[orphans].astype(np.int64) + int(seeds.max(initial=0))
    return rewrap(_relabel_by_size(grown, int(min_size)), volume)
