"""Instance label images: one id per connected object, ordered by size.

``postprocess(mask)`` is the one call behind the mouse-lung-nodule workflow: a predicted
(binary) mask in, an instance label image out, objects under 150 voxels dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import cc3d
import numpy as np

from voxseg.io.volume import Volume
from voxseg.postprocessing._common import (
    as_array,
    cc3d_connectivity,
    min_voxels,
    resolve_spacing,
    rewrap,
    smallest_uint,
)

__all__ = ["instances", "postprocess"]


def _first_voxel(cc: np.ndarray, comp: int, box: np.ndarray) -> int:
    """Flat C-order index of the first voxel of component ``comp`` inside its bounding box."""
    ndim = cc.ndim
    lo = [int(box[2 * a]) for a in range(ndim)]
    hi = [int(box[2 * a + 1]) + 1 for a in range(ndim)]
    first_plane = cc[(lo[0], *[slice(lo[a], hi[a]) for a in range(1, ndim)])] == comp
    local = np.unravel_index(int(np.argmax(first_plane)), first_plane.shape)
    index = (lo[0], *[lo[a] + int(local[a - 1]) for a in range(1, ndim)])
    return int(np.ravel_multi_index(index, cc.shape))


def _size_order(cc: np.ndarray, counts: np.ndarray, keep: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Ids of the kept components, largest first; ties by the first voxel in C order."""
    ids = np.flatnonzero(keep)
    sizes = counts[ids]
    _, inverse, multiplicity = np.unique(sizes, return_inverse=True, return_counts=True)
    first = np.zeros(ids.size, dtype=np.int64)
    for k in np.flatnonzero(multiplicity[inverse] > 1):  # only tied sizes need the first voxel
        first[k] = _first_voxel(cc, int(ids[k]), boxes[ids[k]])
    return ids[np.lexsort((first, -sizes))]


def instances(
    mask: np.ndarray | Volume,
    *,
    connectivity: int = 26,
    min_size: int = 0,
    min_volume: float | None = None,
    spacing: Sequence[float] | None = None,
) -> np.ndarray | Volume:
    """Instance label image of the foreground (``mask > 0``): one id per connected object.

    Parameters
    ----------
    mask
        Binary mask or label map, 2D or 3D, ndarray or Volume. Every nonzero voxel is foreground,
        whatever its class: touching objects of different classes form one instance (for
        instances of one class, pass ``mask == c``).
    connectivity
        6/18/26 in 3D, 4/8 in 2D (26 means 8 there).
    min_size
        Objects with fewer voxels are dropped.
    min_volume
        Objects below this volume (mm³; mm² in 2D) are dropped; takes precedence over
        ``min_size``. Needs ``spacing`` or a Volume.
    spacing
        Voxel size in array order (mm); a Volume's own spacing is used otherwise.

    Returns
    -------
    ndarray or Volume
        Ids 1..N, 0 for background. Id 1 is the largest object; objects of equal size are ordered
        by their first voxel in C (raster) order, so ids are stable for the same mask. dtype uint16
        (N <= 65535), else uint32. A Volume input gives a Volume with the same geometry.
    """
    arr, volume = as_array(mask, "mask")
    conn = cc3d_connectivity(connectivity, arr.ndim)
    sp = resolve_spacing(spacing, volume, arr.ndim)
    threshold = min_voxels(min_size, min_volume, sp)
    foreground = np.ascontiguousarray(arr > 0)
    cc, n = cc3d.connected_components(foreground, connectivity=conn, return_N=True)
    if n == 0:
        return rewrap(np.zeros(arr.shape, dtype=np.uint16), volume)
    stats = cc3d.statistics(cc, no_slice_conversion=True)
    counts = np.asarray(stats["voxel_counts"], dtype=np.int64)
    keep = counts >= max(threshold, 1)
    keep[0] = False
    order = _size_order(cc, counts, keep, np.asarray(stats["bounding_boxes"]))
    dtype = smallest_uint(order.size)
    lut = np.zeros(n + 1, dtype=dtype)
    lut[order] = np.arange(1, order.size + 1, dtype=dtype)
    del foreground
    return rewrap(lut[cc], volume)


def postprocess(
    mask: np.ndarray | Volume,
    *,
    min_size: int = 150,
    min_volume: float | None = None,
    spacing: Sequence[float] | None = None,
    connectivity: int = 26,
) -> np.ndarray | Volume:
    """A predicted mask → instance label image with objects under ``min_size`` voxels dropped.

    The default of the nodule workflow: ``instances = postprocess(mask)`` (150 voxels, 26-connected).
    Same as :func:`instances` with ``min_size=150``; see there for the parameters, the id order and
    the handling of multi-class masks (all foreground classes are merged). ``min_volume`` (mm³)
    replaces ``min_size`` when given.
    """
    return instances(mask, connectivity=connectivity, min_size=min_size, min_volume=min_volume, spacing=spacing)
