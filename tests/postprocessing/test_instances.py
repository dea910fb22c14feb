"""Instance label images: ids by size, stable ties, size thresholds, dtypes, Volume in/out."""

from __future__ import annotations

import numpy as np
import pytest

from voxseg.errors import ConfigError
from voxseg.io import Volume
from voxseg.postprocessing import instances, postprocess

from .helpers import ball


def _two_spheres() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shape = (30, 40, 40)
    small = ball(shape, (8, 8, 8), 3)  # first in C order, but smaller
    large = ball(shape, (20, 25, 25), 6)
    return (small | large).astype(np.uint8), small, large


def test_ids_ordered_by_size():
    mask, small, large = _two_spheres()
    before = mask.copy()
    inst = instances(mask)
    assert np.array_equal(mask, before)
    assert inst.dtype == np.uint16
    assert set(np.unique(inst)) == {0, 1, 2}
    assert np.array_equal(inst == 1, large) and np.array_equal(inst == 2, small)


def test_ties_broken_by_first_voxel_in_c_order():
    m = np.zeros((4, 10, 10), bool)
    m[3, 0, 0:3] = True  # C index 300
    m[0, 5, 5:8] = True  # C index 55: first
    m[0, 9, 0:3] = True  # C index 90
    m[2, 2, 2:6] = True  # larger: id 1
    inst = instances(m)
    assert inst[2, 2, 2] == 1 and inst[0, 5, 5] == 2 and inst[0, 9, 0] == 3 and inst[3, 0, 0] == 4
    # the same for a Fortran-ordered input
    assert np.array_equal(instances(np.asfortranarray(m)), inst)


def test_min_size_and_min_volume():
    mask, small, large = _two_spheres()
    n_small, n_large = int(small.sum()), int(large.sum())
    inst = instances(mask, min_size=n_small + 1)
    assert inst.max() == 1 and np.array_equal(inst == 1, large)
    assert instances(mask, min_size=n_small).max() == 2
    spacing = (2.0, 1.0, 0.5)  # 1 mm³ per voxel
    assert instances(mask, min_volume=float(n_small), spacing=spacing).max() == 2
    assert instances(mask, min_volume=n_small + 0.5, spacing=spacing).max() == 1
    assert instances(mask, min_volume=n_large + 1.0, spacing=spacing).max() == 0
    with pytest.raises(ConfigError, match="needs the voxel spacing"):
        instances(mask, min_volume=10.0)
    with pytest.raises(ConfigError, match="integer"):
        instances(mask, min_size=2.5)


def test_postprocess_default_drops_under_150_voxels():
    mask, small, large = _two_spheres()
    assert 100 < small.sum() < 150 < large.sum()
    inst = postprocess(mask)
    assert inst.max() == 1 and np.array_equal(inst == 1, large)
    # multi-class: all foreground is merged; touching objects of two classes are one instance
    lab = mask.copy()
    lab[large & (np.indices(mask.shape)[2] > 25)] = 2
    assert np.array_equal(postprocess(lab), inst)


def test_connectivity_and_empty_mask():
    m = np.zeros((5, 5, 5), np.uint8)
    m[1, 1, 1] = m[2, 2, 2] = 1
    assert instances(m).max() == 1
    assert instances(m, connectivity=6).max() == 2
    empty = instances(np.zeros((3, 4, 5), bool))
    assert empty.dtype == np.uint16 and empty.shape == (3, 4, 5) and not empty.any()
    assert instances(np.zeros((4, 4), bool), connectivity=26).max() == 0


def test_dtype_grows_to_uint32_beyond_65535_objects():
    m = np.zeros((2, 364, 364), bool)
    m[0, ::2, ::2] = True  # isolated voxels (6-connectivity) ...
    m[1, 1::2, 1::2] = True  # ... and their diagonal neighbours in the next plane
    n = int(m.sum())
    assert n == 2 * 182**2 > 65535
    inst = instances(m, connectivity=6)
    assert inst.dtype == np.uint32 and int(inst.max()) == n
    assert instances(m, connectivity=26).max() == 1


def test_volume_in_volume_out_2d():
    arr = np.zeros((20, 30), np.uint8)
    arr[2:5, 2:5] = 1
    arr[10:18, 10:25] = 1
    vol = Volume(arr, (0.5, 0.25), (3.0, -2.0))
    out = postprocess(vol, min_volume=1.0)  # 9 pixels = 1.125 mm² kept; 1 mm² threshold
    assert isinstance(out, Volume) and out.same_geometry(vol)
    assert out.array.max() == 2 and out.array[12, 12] == 1 and out.array[3, 3] == 2
    assert postprocess(vol, min_volume=1.2).array.max() == 1
    with pytest.raises(ConfigError, match="contradicts"):
        postprocess(vol, spacing=(1.0, 1.0))
