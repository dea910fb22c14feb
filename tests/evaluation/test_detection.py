"""Instance detection metrics on crafted instance pairs."""

from __future__ import annotations

import numpy as np
import pytest

from voxseg.errors import ConfigError, InputImageError
from voxseg.evaluation import detection_metrics
from voxseg.io import Volume

from ..postprocessing.helpers import ball

SHAPE = (20, 60, 60)


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """Reference A, B, C; prediction: A split in two, B found, C missed, one false positive."""
    ref = np.zeros(SHAPE, np.uint16)
    a, b, c = ball(SHAPE, (10, 15, 15), 6), ball(SHAPE, (10, 45, 15), 5), ball(SHAPE, (10, 30, 45), 4)
    ref[a], ref[b], ref[c] = 1, 2, 3
    pred = np.zeros(SHAPE, np.uint16)
    x = np.indices(SHAPE)[2]
    pred[a & (x < 15)] = 10  # the smaller half of A (x < 15)
    pred[a & (x > 15)] = 11  # the larger half (the centre column x = 15 is missing, so both halves are separate)
    pred[np.roll(b, 1, axis=1)] = 12
    pred[ball(SHAPE, (3, 55, 55), 2)] = 13
    return pred, ref


def test_split_missed_and_false_positive_by_overlap():
    pred, ref = _scene()
    res = detection_metrics(pred, ref)
    assert (res.tp, res.fp, res.fn) == (2, 2, 1)
    assert res.precision == 0.5 and res.recall == pytest.approx(2 / 3) and res.f1 == pytest.approx(4 / 7)
    matched = {(p, r) for p, r, _ in res.pairs}
    assert (12, 2) in matched and ({(10, 1), (11, 1)} & matched)
    assert len(matched & {(10, 1), (11, 1)}) == 1  # one-to-one: the split costs a false positive
    assert res.unmatched_ref == (3,) and 13 in res.unmatched_pred
    iou_b = next(s for p, r, s in res.pairs if r == 2)
    b = ref == 2
    moved = pred == 12
    assert iou_b == pytest.approx(np.count_nonzero(b & moved) / np.count_nonzero(b | moved))
    assert res.to_json()["tp"] == 2
    # a higher IoU threshold: the halves (IoU < 0.5 each) no longer match A
    strict = detection_metrics(pred, ref, iou_threshold=0.6)
    assert (strict.tp, strict.fp, strict.fn) == (1, 3, 2)


def test_matching_is_optimal_not_greedy():
    ref = np.zeros((10, 20), np.uint8)
    ref[:, 0:10], ref[:, 10:20] = 1, 2
    pred = np.zeros_like(ref)
    pred[:, 4:14] = 5  # IoU 0.43 with ref 1, 0.25 with ref 2
    pred[:, 0:4] = 6  # IoU 0.40 with ref 1 only
    res = detection_metrics(pred, ref, iou_threshold=0.2)
    assert res.tp == 2 and sorted((p, r) for p, r, _ in res.pairs) == [(5, 2), (6, 1)]  # greedy would find 1


def test_centroid_matching_in_mm():
    spacing = (3.0, 1.0, 0.5)
    ref = np.zeros(SHAPE, np.uint16)
    ref[ball(SHAPE, (10, 15, 15), 3)] = 1
    ref[ball(SHAPE, (10, 40, 40), 3)] = 2
    pred = np.zeros(SHAPE, np.uint16)
    pred[np.roll(ref == 1, 1, axis=0)] = 4  # 3 mm away (one slice)
    pred[np.roll(ref == 2, 4, axis=2)] = 7  # 2 mm away (four columns of 0.5 mm)
    res = detection_metrics(pred, ref, match="centroid", max_distance_mm=2.5, spacing=spacing)
    assert (res.tp, res.fp, res.fn) == (1, 1, 1) and res.pairs == ((7, 2, pytest.approx(2.0)),)
    both = detection_metrics(
        Volume(pred, spacing), Volume(ref, spacing), match="centroid", max_distance_mm=3.0
    )  # spacing from the Volumes
    assert both.tp == 2 and dict(((p, r), s) for p, r, s in both.pairs)[(4, 1)] == pytest.approx(3.0)
    with pytest.raises(ConfigError, match="needs max_distance_mm"):
        detection_metrics(pred, ref, match="centroid")
    with pytest.raises(ConfigError, match="for match='centroid'"):
        detection_metrics(pred, ref, max_distance_mm=3.0)
    with pytest.raises(ConfigError, match="match must be"):
        detection_metrics(pred, ref, match="iou")


def test_empty_cases_are_defined():
    empty = np.zeros((5, 5, 5), np.uint8)
    one = empty.copy()
    one[1:3, 1:3, 1:3] = 1
    none = detection_metrics(empty, empty)
    assert (none.tp, none.fp, none.fn, none.precision, none.recall, none.f1) == (0, 0, 0, 1.0, 1.0, 1.0)
    missed = detection_metrics(empty, one)
    assert (missed.precision, missed.recall, missed.f1) == (1.0, 0.0, 0.0)
    spurious = detection_metrics(one, empty, match="centroid", max_distance_mm=1.0)
    assert (spurious.precision, spurious.recall, spurious.f1, spurious.fp) == (0.0, 1.0, 0.0, 1)
    with pytest.raises(InputImageError, match="integer instance ids"):
        detection_metrics(one.astype(np.float32), one)
    with pytest.raises(ConfigError, match="iou_threshold"):
        detection_metrics(one, one, iou_threshold=0.0)


def test_many_objects_match_one_to_one():
    rng = np.random.default_rng(0)
    ref = np.zeros((40, 100, 100), np.uint16)
    centers = [(z, y, x) for z in range(5, 40, 10) for y in range(5, 100, 10) for x in range(5, 100, 10)]
    for i, c in enumerate(centers, start=1):
        ref[ball(ref.shape, c, 3)] = i
    pred = np.roll(ref, 1, axis=1)
    drop = rng.choice(len(centers), 20, replace=False) + 1
    pred[np.isin(pred, drop)] = 0
    res = detection_metrics(pred, ref)
    assert (res.tp, res.fp, res.fn) == (len(centers) - 20, 0, 20)
    assert all(p == r for p, r, _ in res.pairs)
