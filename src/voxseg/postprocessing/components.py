"""Connected components of label maps: remove small objects, keep the largest, fill holes.

Every function takes a binary mask or a multi-class label map (an ndarray or a
:class:`~voxseg.io.Volume`, 2D or 3D), works per class, never modifies its input, and returns the
same type with the same dtype (a Volume keeps its geometry). Components of different classes
never merge: two touching objects of classes 1 and 2 are two components.

Connectivity: 6 (faces), 18 (+edges) or 26 (+corners) in 3D; 4 or 8 in 2D, where 6 means 4 and
18/26 mean 8, so the default 26 ("touching at a corner is touching") works for both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cc3d
import fastremap
import numpy as np

from voxseg.errors import ConfigError, InputImageError
from voxseg.io.volume import Volume
from voxseg.postprocessing._common import (
    as_array,
    cc3d_connectivity,
    min_voxels,
    normalize_classes,
    resolve_spacing,
    rewrap,
)

__all__ = ["connected_components", "remove_small_objects", "keep_largest", "fill_holes"]

Labels = np.ndarray | Volume


def connected_components(labels: Labels, *, connectivity: int = 26) -> np.ndarray:
    """Number the connected components of every class 1..N (0 stays background).

    A component is a connected set of voxels with the same nonzero value. Components are
    numbered in C (raster) order of their first voxel; the dtype is uint16, uint32 or uint64,
    whichever holds N. Returns an ndarray (also for a Volume input).
    """
    arr, _ = as_array(labels, "labels")
    conn = cc3d_connectivity(connectivity, arr.ndim)
    return cc3d.connected_components(np.ascontiguousarray(arr), connectivity=conn)


def _integer_codes(arr: np.ndarray) -> np.ndarray:
    """Integer label values of ``arr`` (float label maps, as NIfTI files with scaling give, are cast)."""
    if arr.dtype.kind != "f":
        return arr
    codes = arr.astype(np.int32)
    if not np.array_equal(codes, arr):
        raise InputImageError(None, "label map has non-integer values", "round it or threshold probabilities first")
    return codes


def _components_with_classes(arr: np.ndarray, connectivity: int):
    """Components, their ids, sizes, and class value per id (index = component id)."""
    conn = cc3d_connectivity(connectivity, arr.ndim)
    cc = cc3d.connected_components(np.ascontiguousarray(arr), connectivity=conn)
    ids, counts = fastremap.unique(cc, return_counts=True)
    n = int(ids[-1]) if ids.size else 0
    sizes = np.zeros(n + 1, dtype=np.int64)
    sizes[ids] = counts
    sizes[0] = 0
    cls = np.zeros(n + 1, dtype=np.int64)
    for comp, value in fastremap.component_map(cc, _integer_codes(arr)).items():
        cls[int(comp)] = int(value)
    return cc, sizes, cls


def _class_selected(cls: np.ndarray, classes: tuple | None) -> np.ndarray:
    """Boolean per component id: does the component's class take part?"""
    selected = cls != 0
    if classes is not None:
        selected &= np.isin(cls, np.asarray([int(c) for c in classes], dtype=np.int64))
    return selected


def _drop_components(arr: np.ndarray, cc: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """A copy of ``arr`` with the voxels of components flagged in ``drop`` (by id) set to 0."""
    out = arr.copy()
    if drop.any():
        out[drop[cc]] = 0
    return out


def remove_small_objects(
    mask_or_labels: Labels,
    *,
    min_size: int | None = None,
    min_volume: float | None = None,
    spacing: Sequence[float] | None = None,
    connectivity: int = 26,
    classes: Iterable[int] | None = None,
) -> Labels:
    """Remove the components smaller than ``min_size`` voxels or ``min_volume`` mm³ (set them to 0).

    Parameters
    ----------
    mask_or_labels
        Binary mask or label map (ndarray or Volume), 2D or 3D.
    min_size
        Objects with fewer voxels are removed. Give this or ``min_volume``, not both.
    min_volume
        Objects whose volume (voxels × voxel volume; mm² in 2D) is below this are removed. Needs
        ``spacing`` or a Volume.
    spacing
        Voxel size in array order (mm); taken from a Volume when not given.
    connectivity
        See the module docstring.
    classes
        Label values to clean; default every nonzero class. Other classes are left as they are.

    Returns
    -------
    ndarray or Volume
        Same type, shape and dtype as the input.
    """
    arr, volume = as_array(mask_or_labels, "mask_or_labels")
    if (min_size is None) == (min_volume is None):
        raise ConfigError("remove_small_objects needs exactly one of min_size (voxels) or min_volume (mm³)")
    threshold = min_voxels(min_size, min_volume, resolve_spacing(spacing, volume, arr.ndim))
    cc, sizes, cls = _components_with_classes(arr, connectivity)
    drop = _class_selected(cls, normalize_classes(classes, arr)) & (sizes < threshold)
    return rewrap(_drop_components(arr, cc, drop), volume)


def keep_largest(labels: Labels, *, classes: Iterable[int] | None = None, connectivity: int = 26) -> Labels:
    """Keep only the largest component of each class (others set to 0).

    Ties keep the component whose first voxel comes first in C order. ``classes`` limits the
    operation to some label values (default: every nonzero class).
    """
    arr, volume = as_array(labels, "labels")
    cc, sizes, cls = _components_with_classes(arr, connectivity)
    selected = _class_selected(cls, normalize_classes(classes, arr))
    drop = selected.copy()
    for value in np.unique(cls[selected]):
        ids = np.flatnonzero(selected & (cls == value))
        drop[ids[np.argmax(sizes[ids])]] = False  # argmax: first (lowest id = first in C order) of ties
    return rewrap(_drop_components(arr, cc, drop), volume)


def fill_holes(labels: Labels, *, classes: Iterable[int] | None = None) -> Labels:
    """Fill the holes of each class: background enclosed by that class alone.

    A hole of class ``c`` is a connected region of background (0) voxels, connected through faces
    (6-connectivity in 3D, 4 in 2D, as in ``scipy.ndimage.binary_fill_holes``), that does not touch
    the image border and whose neighbours all belong to ``c``. Background enclosed partly by another
    class is left alone, so one class never fills over another. In 3D a hole must be closed in 3D:
    a tube open at both ends is not filled.
    """
    arr, volume = as_array(labels, "labels")
    out = arr.copy()
    selected = normalize_classes(classes, arr)
    present = [v for v in fastremap.unique(arr) if v != 0]
    targets = [v for v in present if selected is None or v in selected]
    face = 6 if arr.ndim == 3 else 4
    for value in targets:
        other = np.ascontiguousarray(arr != value)
        cc = cc3d.connected_components(other, connectivity=face)
        n = int(cc.max())
        if n == 0:
            continue
        bad = np.zeros(n + 1, dtype=bool)
        bad[0] = True
        for axis in range(arr.ndim):  # regions touching the border are outside, not holes
            bad[fastremap.unique(np.take(cc, [0, -1], axis=axis))] = True
        bad[fastremap.unique(cc[arr != 0])] = True  # regions holding another class are not holes
        hole = ~bad[cc]
        out[hole] = value
    return rewrap(out, volume)
