"""The smallest object an instance plan keeps, chosen by the object F1 on validation cases (issue 20:
on the real StarDist nuclei, specks called interior were a third of the false objects' count)."""

from __future__ import annotations

import numpy as np
import pytest

from voxseg.errors import ConfigError
from voxseg.io import Volume
from voxseg.postprocessing.choose_instances import choose_split_min_size, instance_size_grid, whole_object_sizes
from voxseg.postprocessing.touching import BOUNDARY, INTERIOR, border_target


def _disks(shape=(60, 90), radius=6, step=15, offset=9) -> np.ndarray:
    """Instance ids of separate disks on a grid; the last column is cut by the right border."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    ids = np.zeros(shape, np.uint16)
    n = 0
    for cy in range(offset, shape[0] - radius, step):
        for cx in range(offset, shape[1] + radius, step):
            n += 1
            ids[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = n
    return ids


def _with_specks(target: np.ndarray, corners, size: int = 3) -> np.ndarray:
    """The border target with square specks of interior in the background (a network's false calls)."""
    out = target.copy()
    for y, x in corners:
        assert not target[y : y + size, x : x + size].any()
        out[y : y + size, x : x + size] = INTERIOR
    return out


SPECKS = ((1, 1), (15, 15), (30, 45), (45, 30))


def test_whole_object_sizes_leave_out_objects_cut_by_the_border():
    ids = _disks()
    sizes = whole_object_sizes([ids])
    counts = np.bincount(ids.ravel())
    cut = set(np.unique(ids[:, -1])) - {0}
    assert cut  # the grid reaches past the right border
    assert sorted(sizes.tolist()) == sorted(int(counts[k]) for k in range(1, counts.size) if k not in cut)
    assert instance_size_grid([ids]) == sorted({int(np.ceil(f * sizes.min())) for f in (0.1, 0.25, 0.5, 1.0)})


def test_specks_are_dropped_at_a_size_above_theirs_and_below_every_object():
    refs = [_disks(offset=o) for o in (8, 9)]
    preds = [_with_specks(border_target(r), SPECKS) for r in refs]
    size, report = choose_split_min_size(preds, refs, interior=INTERIOR, boundary=BOUNDARY)
    whole = whole_object_sizes(refs)
    assert 9 < size <= whole.min()  # above a 3x3 speck, at most the smallest whole disk
    first, chosen = report[0], next(r for r in report if r["chosen"])
    assert first["min_size"] == 0 and first["fp"] == 2 * len(SPECKS) and first["fn"] == 0
    assert chosen["min_size"] == size and chosen["fp"] == 0 and chosen["f1"] == 1.0
    assert sum(r["chosen"] for r in report) == 1


def test_clean_predictions_keep_every_object():
    refs = [_disks()]
    size, report = choose_split_min_size(
        [Volume(border_target(refs[0]), (1.0, 1.0))], refs, interior=INTERIOR, boundary=BOUNDARY
    )
    assert size == 0 and report[0]["chosen"] and report[0]["f1"] == 1.0
    assert len(report) > 1  # sizes were tried; none did better, so the smallest (0) stays


def test_a_gain_under_min_gain_keeps_every_object():
    refs = [_disks()]
    preds = [_with_specks(border_target(refs[0]), SPECKS[:1])]
    size, report = choose_split_min_size(preds, refs, interior=INTERIOR, boundary=BOUNDARY, min_gain=0.5)
    assert size == 0 and report[0]["fp"] == 1 and max(r["f1"] for r in report) > report[0]["f1"]


def test_bad_input_is_refused():
    ids = _disks()
    with pytest.raises(ConfigError, match="same number"):
        choose_split_min_size([], [], interior=INTERIOR, boundary=BOUNDARY)
    with pytest.raises(ConfigError, match="shape"):
        choose_split_min_size([border_target(ids)[:-1]], [ids], interior=INTERIOR, boundary=BOUNDARY)
