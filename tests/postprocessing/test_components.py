"""Connected-component operations: remove small objects, keep largest, fill holes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from voxseg.errors import ConfigError, InputImageError
from voxseg.io import Volume
from voxseg.postprocessing import connected_components, fill_holes, keep_largest, remove_small_objects

from .helpers import ball, box


def _diagonal_pair() -> np.ndarray:
    """Two voxels touching at a corner only, plus a 2-voxel bar touching neither."""
    m = np.zeros((5, 5, 5), np.uint8)
    m[1, 1, 1] = m[2, 2, 2] = 1
    m[4, 0, 0:2] = 1
    return m


def test_connectivity_6_vs_26_on_diagonal_voxels():
    m = _diagonal_pair()
    assert connected_components(m, connectivity=26).max() == 2
    assert connected_components(m, connectivity=18).max() == 3  # corners do not count for 18
    assert connected_components(m, connectivity=6).max() == 3
    # remove objects under 2 voxels: with 26 the diagonal pair is one object of 2 and survives
    assert np.count_nonzero(remove_small_objects(m, min_size=2, connectivity=26)) == 4
    kept6 = remove_small_objects(m, min_size=2, connectivity=6)
    assert np.count_nonzero(kept6) == 2 and kept6[4, 0, 0] == 1 and kept6[1, 1, 1] == 0


def test_connectivity_in_2d_and_errors():
    m = np.zeros((4, 4), bool)
    m[0, 0] = m[1, 1] = True
    assert connected_components(m, connectivity=8).max() == 1
    assert connected_components(m, connectivity=26).max() == 1  # 26 means 8 in 2D
    assert connected_components(m, connectivity=4).max() == 2
    assert connected_components(m, connectivity=6).max() == 2
    with pytest.raises(ConfigError, match="not valid in 3D"):
        connected_components(np.zeros((2, 2, 2), bool), connectivity=4)
    with pytest.raises(ConfigError, match="not valid in 2D"):
        connected_components(m, connectivity=5)
    with pytest.raises(InputImageError, match="2D or 3D"):
        remove_small_objects(np.zeros(5), min_size=1)


def test_remove_small_min_size_vs_min_volume():
    m = np.zeros((10, 20, 20), np.uint8)
    m[1:3, 1:3, 1:3] = 1  # 8 voxels
    m[5:8, 10:14, 10:14] = 1  # 48 voxels
    spacing = (2.0, 0.5, 0.5)  # 0.5 mm³ per voxel: 4 mm³ and 24 mm³
    assert np.count_nonzero(remove_small_objects(m, min_size=8)) == 56  # strictly under N is removed
    assert np.count_nonzero(remove_small_objects(m, min_size=9)) == 48
    assert np.count_nonzero(remove_small_objects(m, min_volume=4.0, spacing=spacing)) == 56
    assert np.count_nonzero(remove_small_objects(m, min_volume=4.01, spacing=spacing)) == 48
    vol = Volume(m, spacing)
    out = remove_small_objects(vol, min_volume=24.0)
    assert isinstance(out, Volume) and out.spacing == spacing and np.count_nonzero(out.array) == 48
    assert np.count_nonzero(remove_small_objects(vol, min_volume=24.5).array) == 0
    with pytest.raises(ConfigError, match="needs the voxel spacing"):
        remove_small_objects(m, min_volume=4.0)
    with pytest.raises(ConfigError, match="exactly one"):
        remove_small_objects(m, min_size=3, min_volume=4.0, spacing=spacing)
    with pytest.raises(ConfigError, match="contradicts"):
        remove_small_objects(vol, min_size=3, spacing=(1, 1, 1))


def test_remove_small_per_class_and_dtype_kept():
    lab = np.zeros((6, 12, 12), np.int16)
    lab[0:2, 0:2, 0:2] = 1  # class 1, 8 voxels
    lab[0:2, 0:2, 2:4] = 2  # class 2, 8 voxels, touching class 1: separate component
    lab[3:6, 6:12, 6:12] = 2  # class 2, 108 voxels
    before = lab.copy()
    out = remove_small_objects(lab, min_size=10)
    assert out.dtype == np.int16
    assert np.array_equal(lab, before)  # input untouched
    assert np.count_nonzero(out == 1) == 0 and np.count_nonzero(out == 2) == 108
    only2 = remove_small_objects(lab, min_size=10, classes=[2])
    assert np.count_nonzero(only2 == 1) == 8 and np.count_nonzero(only2 == 2) == 108


def test_keep_largest_per_class():
    lab = np.zeros((10, 30, 30), np.uint8)
    lab[ball(lab.shape, (5, 8, 8), 4)] = 1
    lab[ball(lab.shape, (5, 22, 8), 2)] = 1
    lab[box(lab.shape, (1, 20, 20), (3, 23, 23))] = 2  # 18 voxels
    lab[box(lab.shape, (6, 20, 20), (9, 24, 24))] = 2  # 48 voxels
    before = lab.copy()
    out = keep_largest(lab)
    assert np.array_equal(lab, before)
    assert np.count_nonzero(out == 1) == np.count_nonzero(ball(lab.shape, (5, 8, 8), 4))
    assert np.count_nonzero(out == 2) == 48
    only1 = keep_largest(lab, classes=[1])
    assert np.count_nonzero(only1 == 2) == 66 and out[5, 22, 8] == 0 and only1[5, 22, 8] == 0
    # bool masks: a single class
    mask = lab == 1
    kept = keep_largest(mask)
    assert kept.dtype == bool and np.count_nonzero(kept) == np.count_nonzero(out == 1)


def test_keep_largest_tie_keeps_first_in_c_order():
    m = np.zeros((3, 10, 10), np.uint8)
    m[2, 0:2, 0:2] = 1  # later in C order
    m[0, 6:8, 6:8] = 1  # first in C order
    out = keep_largest(m)
    assert out[0, 6, 6] == 1 and out[2, 0, 0] == 0


def test_fill_holes_3d_matches_scipy_and_spares_tunnels():
    shell = ball((20, 20, 20), (10, 10, 10), 7) & ~ball((20, 20, 20), (10, 10, 10), 4)
    out = fill_holes(shell.astype(np.uint8))
    assert np.array_equal(out.astype(bool), ndimage.binary_fill_holes(shell))
    assert np.array_equal(out.astype(bool), ball((20, 20, 20), (10, 10, 10), 7))
    # a tube open at both ends is not a 3D hole
    tube = np.zeros((10, 12, 12), np.uint8)
    tube[:, 2:10, 2:10] = 1
    tube[:, 4:8, 4:8] = 0
    assert np.array_equal(fill_holes(tube), tube)
    # touching the image border: not a hole
    cup = np.ones((6, 6, 6), np.uint8)
    cup[0:3, 2:4, 2:4] = 0
    assert np.array_equal(fill_holes(cup), cup)


def test_fill_holes_2d_and_other_classes():
    ring = np.zeros((12, 12), np.uint8)
    ring[2:10, 2:10] = 1
    ring[4:8, 4:8] = 0
    out = fill_holes(ring)
    assert np.count_nonzero(out == 1) == 64
    # a class-2 island inside the hole: the background around it touches class 2, so it stays
    with_island = ring.copy()
    with_island[5, 5] = 2
    out = fill_holes(with_island)
    assert np.array_equal(out, with_island)
    # class 2's own hole is filled with 2 when asked, class 1 untouched
    lab = np.zeros((12, 24), np.uint8)
    lab[2:10, 2:10] = 1
    lab[4:8, 4:8] = 0
    lab[2:10, 14:22] = 2
    lab[5, 17] = 0
    out = fill_holes(lab, classes=[2])
    assert out[5, 17] == 2 and np.count_nonzero(out[4:8, 4:8]) == 0
    # diagonal-only background contact is enclosed (background connectivity is faces only)
    diamond = np.zeros((7, 7), np.uint8)
    diamond[2, 3] = diamond[4, 3] = diamond[3, 2] = diamond[3, 4] = 1
    assert fill_holes(diamond)[3, 3] == 1


def test_volume_in_volume_out_and_float_labels():
    vol = Volume(np.pad(np.ones((3, 3, 3), np.float32), 1), (1.5, 1.0, 1.0), (5.0, 0.0, 0.0))
    out = keep_largest(vol)
    assert isinstance(out, Volume) and out.same_geometry(vol) and out.dtype == np.float32
    assert np.array_equal(fill_holes(vol).array, vol.array)
