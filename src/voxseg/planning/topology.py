"""Network topology and patch size from spacing and shape: nnU-Net's rules, numpy only.

:func:`pool_topology` decides, level by level, which axes a U-Net pools (an axis is pooled while
its feature map is at least twice the minimum size and its spacing is within a factor 2 of the
finest axis) and the kernel size per axis (3 once an axis' spacing is within a factor 2 of the
finest, 1 before: a coarse through-plane axis first gets in-plane-only convolutions).
:func:`fit_patch` starts from a large patch with isotropic physical extent, clips it to the
median image shape and shrinks the axis that covers most of the image until the voxel budget fits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Topology", "pool_topology", "fit_patch"]


@dataclass(frozen=True)
class Topology:
    """Pooling plan of a U-Net for one patch size.

    Attributes
    ----------
    strides
        One entry per level, the first ``(1, ...)``: the downsampling factor per axis into that level.
    kernel_sizes
        Convolution kernel per level and axis (the bottleneck included).
    patch_size
        The patch size padded up to a multiple of :attr:`divisor` per axis.
    """

    strides: tuple[tuple[int, ...], ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    patch_size: tuple[int, ...]

    @property
    def levels(self) -> int:
        """Resolution levels (stages) of the U-Net: pooling operations + 1."""
        return len(self.strides)

    @property
    def pools_per_axis(self) -> tuple[int, ...]:
        return tuple(sum(1 for s in self.strides if s[a] == 2) for a in range(len(self.patch_size)))

    @property
    def divisor(self) -> tuple[int, ...]:
        """The patch must be a multiple of this per axis (2 ** pools)."""
        return tuple(2**p for p in self.pools_per_axis)


def pool_topology(
    spacing: Sequence[float], patch_size: Sequence[int], *, min_feature_map: int = 4, max_pools: int = 6
) -> Topology:
    """Pooling strides and kernel sizes for ``patch_size`` at ``spacing`` (nnU-Net's rule).

    At each level the axes that may be pooled are those whose current size is ``>= 2 *
    min_feature_map``, whose current spacing is ``< 2 x`` the smallest current spacing among them,
    and that were pooled fewer than ``max_pools`` times; a single remaining axis is pooled only
    while its size is ``>= 3 * min_feature_map``. Pooling stops when no axis qualifies. The last
    level (bottleneck) uses 3-kernels on every axis.
    """
    nd = len(spacing)
    cur_spacing = [float(s) for s in spacing]
    cur_size = [int(s) for s in patch_size]
    pools = [0] * nd
    kernel = [1] * nd
    strides: list[tuple[int, ...]] = [(1,) * nd]
    kernels: list[tuple[int, ...]] = []
    while True:
        valid = [a for a in range(nd) if cur_size[a] >= 2 * min_feature_map]
        if not valid:
            break
        finest = min(cur_spacing[a] for a in valid)
        valid = [a for a in valid if cur_spacing[a] / finest < 2 and pools[a] < max_pools]
        if not valid or (len(valid) == 1 and cur_size[valid[0]] < 3 * min_feature_map):
            break
        smallest = min(cur_spacing)
        kernel = [3 if kernel[a] == 3 or cur_spacing[a] / smallest < 2 else 1 for a in range(nd)]
        kernels.append(tuple(kernel))
        stride = [1] * nd
        for a in valid:
            stride[a] = 2
            pools[a] += 1
            cur_spacing[a] *= 2
            cur_size[a] = math.ceil(cur_size[a] / 2)
        strides.append(tuple(stride))
    kernels.append((3,) * nd)
    divisor = [2**p for p in pools]
    padded = tuple(int(math.ceil(s / d) * d) for s, d in zip(patch_size, divisor, strict=True))
    return Topology(tuple(strides), tuple(kernels), padded)


def fit_patch(
    spacing: Sequence[float],
    median_shape: Sequence[float],
    *,
    initial_voxels: float,
    max_voxels: float,
    min_feature_map: int = 4,
    max_pools: int = 6,
    min_levels: int = 3,
) -> Topology:
    """The largest patch (and its topology) that fits ``max_voxels``, shaped like the data.

    1. Start with ``initial_voxels`` voxels spanning the same physical length on every axis, and
       clip each axis to the median image shape.
    2. Pad to the multiple the pooling needs (:func:`pool_topology`).
    3. While the patch holds more than ``max_voxels``: shrink the axis whose patch covers the
       largest fraction of the median shape (ties: the longer axis, then the last) by one divisor
       step, recompute the topology.
    4. When the network would have fewer than ``min_levels`` levels (images smaller than a
       useful patch), enlarge the finely spaced axes to ``min_feature_map * 2 ** (min_levels - 1)``
       voxels (training pads such patches).
    """
    sp = np.asarray(spacing, dtype=np.float64)
    median = np.maximum(np.asarray(median_shape, dtype=np.float64), 1.0)
    nd = sp.size
    inv = 1.0 / sp
    initial = inv * (float(initial_voxels) / float(np.prod(inv))) ** (1.0 / nd)
    patch = [max(1, int(v)) for v in np.minimum(np.round(initial), np.floor(median))]
    topo = pool_topology(sp, patch, min_feature_map=min_feature_map, max_pools=max_pools)
    while math.prod(topo.patch_size) > max_voxels:
        size = np.asarray(topo.patch_size, dtype=np.float64)
        divisor = topo.divisor
        ratio = size / median  # ties (e.g. a patch equal to the image): the larger axis, then the last
        order = sorted(range(nd), key=lambda a: (-round(ratio[a], 6), -size[a], -a))
        shrinkable = [a for a in order if size[a] - divisor[a] >= min_feature_map]
        if not shrinkable:
            break
        axis = shrinkable[0]
        patch = list(topo.patch_size)
        patch[axis] -= divisor[axis]
        topo = pool_topology(sp, patch, min_feature_map=min_feature_map, max_pools=max_pools)
    edge = min_feature_map * 2 ** (min_levels - 1)
    fine = sp / sp.min() < 2
    for _ in range(4):  # a lone fine axis needs 3 * min_feature_map to pool: grow the edge a few times
        if topo.levels >= min_levels:
            break
        patch = [max(s, edge) if fine[a] else s for a, s in enumerate(topo.patch_size)]
        topo = pool_topology(sp, patch, min_feature_map=min_feature_map, max_pools=max_pools)
        edge *= 2
    return topo
