"""Touching nuclei: connected components of a mask merge them; the border-aware target and the
seeded split keep them apart (issue 20, the StarDist nuclei of the real-data benchmark)."""

from __future__ import annotations

import numpy as np
import pytest

from voxseg.errors import ConfigError
from voxseg.io import Volume
from voxseg.postprocessing import PostprocessingSpec, apply_postprocessing, instances
from voxseg.postprocessing.touching import BOUNDARY, INTERIOR, border_target, split_instances


def _touching_disks(shape=(64, 96), centres=((32, 30), (32, 58), (32, 80)), radius=14) -> np.ndarray:
    """Instance ids of disks whose neighbours overlap (the later disk wins the shared pixels)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, dtype=np.uint16)
    for k, (cy, cx) in enumerate(centres, start=1):
        out[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = k
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_connected_components_merge_touching_disks_the_split_keeps_them() -> None:
    truth = _touching_disks()
    assert int(instances(truth > 0).max()) == 1  # one blob: what a 2-class model gives
    target = border_target(truth, width=1)
    assert set(np.unique(target)) == {0, INTERIOR, BOUNDARY} and target.dtype == np.uint8
    assert not np.any((target == INTERIOR) & (truth == 0))
    split = split_instances(target)
    assert int(split.max()) == 3
    assert np.array_equal(split > 0, truth > 0)  # every foreground pixel kept, nothing added
    for k in (1, 2, 3):  # each split object is one of the disks
        best = max(_iou(split == j, truth == k) for j in (1, 2, 3))
        assert best > 0.9


def test_border_width_and_3d() -> None:
    truth = np.zeros((20, 20, 40), dtype=np.int32)
    truth[5:15, 5:15, 5:20] = 1
    truth[5:15, 5:15, 20:35] = 2  # two touching boxes
    one, two = border_target(truth, width=1), border_target(truth, width=2)
    assert (two == BOUNDARY).sum() > (one == BOUNDARY).sum()
    assert one[10, 10, 19] == BOUNDARY and one[10, 10, 20] == BOUNDARY and one[10, 10, 12] == INTERIOR
    assert int(instances(truth > 0).max()) == 1 and int(split_instances(two).max()) == 2


def test_split_as_a_postprocessing_step_on_a_volume() -> None:
    truth = _touching_disks()
    vol = Volume(border_target(truth), spacing=(0.5, 0.5))
    spec = PostprocessingSpec.from_json({"final": [{"op": "split_instances", "min_size": 10}]})
    assert spec.makes_instances
    out = apply_postprocessing(vol, spec)
    assert isinstance(out, Volume) and out.spacing == vol.spacing and int(out.array.max()) == 3
    blob = np.zeros((30, 30), dtype=np.uint8)
    blob[5:9, 5:9] = BOUNDARY  # a boundary-only piece (no interior seed) stays an object of its own
    blob[15:25, 15:25] = BOUNDARY
    blob[17:23, 17:23] = INTERIOR
    assert int(split_instances(blob).max()) == 2
    assert int(split_instances(blob, min_size=20).max()) == 1
    with pytest.raises(ConfigError):
        border_target(truth.astype(np.float32))
    with pytest.raises(ConfigError):
        PostprocessingSpec.from_json({"final": [{"op": "split_instances", "min_size": -1}]})
