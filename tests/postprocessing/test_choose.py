"""choose_postprocessing: picks steps that raise the mean Dice, and nothing on clean predictions."""

from __future__ import annotations

import numpy as np
import pytest

from voxseg.errors import ConfigError
from voxseg.evaluation import dice
from voxseg.io import Volume
from voxseg.postprocessing import PostprocessingSpec, Step, apply_postprocessing, choose_postprocessing, size_grid

from .helpers import ball

SHAPE = (24, 48, 48)


def _case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Reference: a large and a medium ball of class 1, one ball of class 2. Prediction: shifted by one voxel."""
    ref = np.zeros(SHAPE, np.uint8)
    ref[ball(SHAPE, (12, 14 + rng.integers(-2, 3), 14), 7)] = 1
    ref[ball(SHAPE, (12, 36, 12), 3.5)] = 1
    ref[ball(SHAPE, (12, 30, 34), 6)] = 2
    pred = np.roll(ref, 1, axis=2)
    return pred, ref


def _with_specks(pred: np.ndarray, rng: np.random.Generator, label: int, n: int = 20) -> np.ndarray:
    out = pred.copy()
    for _ in range(n):
        z, y, x = rng.integers(1, 4), rng.integers(2, 46), rng.integers(2, 46)
        out[z, y : y + 2, x : x + 2] = label  # 4-voxel specks far from the objects
    return out


def _dataset(seed=0, specks=True, holes=False):
    rng = np.random.default_rng(seed)
    preds, refs = [], []
    for _ in range(4):
        pred, ref = _case(rng)
        if specks:
            pred = _with_specks(pred, rng, 1)
        if holes:
            pred[11:14, 13:16, 14:17] = 0  # a hole inside the large class-1 ball
        preds.append(pred)
        refs.append(ref)
    return preds, refs


def _mean(preds, refs, label):
    return np.mean([dice(p, r, labels=[label])[label] for p, r in zip(preds, refs, strict=True)])


def test_spurious_specks_choose_remove_small_and_improve_dice():
    preds, refs = _dataset(specks=True)
    before = [p.copy() for p in preds]
    spec, report = choose_postprocessing(preds, refs, labels=[1, 2])
    assert all(np.array_equal(a, b) for a, b in zip(preds, before, strict=True))  # inputs untouched
    steps = spec.steps_for(1)
    assert len(steps) == 1 and steps[0].op == "remove_small"
    smallest = min(int(np.count_nonzero(ball(SHAPE, (12, 36, 12), 3.5))), 1000)
    assert 4 < dict(steps[0].params)["min_size"] <= smallest  # removes the specks, keeps the small ball
    assert spec.steps_for(2) == ()  # class 2 is clean: nothing chosen
    after = [apply_postprocessing(p, spec) for p in preds]
    assert _mean(after, refs, 1) > _mean(preds, refs, 1) + 0.015
    # the report: a baseline row per class, each candidate with its mean Dice, the choice marked
    base1 = next(r for r in report if r["class"] == 1 and r["steps"] == [])
    assert base1["mean_dice"] == pytest.approx(_mean(preds, refs, 1))
    chosen = [r for r in report if r["class"] == 1 and r["chosen"] and r["steps"]]
    assert chosen[0]["steps"] == [s.to_json() for s in steps]
    assert chosen[0]["mean_dice"] == pytest.approx(_mean(after, refs, 1))
    keep = next(r for r in report if r["class"] == 1 and r["steps"] == [{"op": "keep_largest"}])
    assert keep["gain"] < 0  # keep_largest would drop the small true ball
    assert {r["class"] for r in report} == {1, 2}


def test_clean_predictions_choose_nothing():
    preds, refs = _dataset(specks=False)
    spec, report = choose_postprocessing(preds, refs, labels={"background": 0, "a": 1, "b": 2})
    assert spec == PostprocessingSpec() and spec.is_identity
    assert not any(r["chosen"] and r["steps"] for r in report)


def test_holes_choose_fill_holes_and_min_gain():
    preds, refs = _dataset(specks=False, holes=True)
    spec, _ = choose_postprocessing(preds, refs, labels=[1])
    assert spec.steps_for(1) == (Step.of("fill_holes"),)
    strict, _ = choose_postprocessing(preds, refs, labels=[1], min_gain=0.5)
    assert strict.is_identity


def test_stacked_steps_and_custom_candidates():
    preds, refs = _dataset(specks=True, holes=True)
    spec, _ = choose_postprocessing(preds, refs, labels=[1])
    assert {s.op for s in spec.steps_for(1)} == {"remove_small", "fill_holes"}
    custom, report = choose_postprocessing(preds, refs, labels=[1], candidates=[{"op": "remove_small", "min_size": 8}])
    assert custom.steps_for(1) == (Step.of("remove_small", min_size=8),)
    assert len(report) == 2  # baseline + one candidate
    with pytest.raises(ConfigError, match="cannot be chosen per class"):
        choose_postprocessing(preds, refs, labels=[1], candidates=[{"op": "instances"}])
    with pytest.raises(ConfigError, match="same number"):
        choose_postprocessing(preds, refs[:2], labels=[1])


def test_size_grid_from_reference_objects():
    _, refs = _dataset(specks=False)
    smallest = int(np.count_nonzero(ball(SHAPE, (12, 36, 12), 3.5)))
    assert size_grid(refs, 1) == sorted({int(np.ceil(f * smallest)) for f in (0.1, 0.25, 0.5, 1.0)})
    assert size_grid(refs, 7) == []


def test_ignored_voxels_do_not_count():
    preds, refs = _dataset(specks=True)
    for ref in refs:
        ref[0:4] = 9  # the specks lie in unannotated slices
    spec, _ = choose_postprocessing(preds, refs, labels=[1], ignore_label=9)
    assert spec.is_identity
    spec, _ = choose_postprocessing(preds, refs, labels={"background": 0, "a": 1, "ignore": 9})
    assert spec.is_identity
    assert choose_postprocessing(preds, refs, labels=[1])[0].steps_for(1)[0].op == "remove_small"


def test_min_volume_candidates_use_the_volumes_spacing():
    preds, refs = _dataset(specks=True)
    spacing = (2.0, 1.0, 1.0)
    vpreds = [Volume(p, spacing) for p in preds]
    vrefs = [Volume(r, spacing) for r in refs]
    candidate = {"op": "remove_small", "min_volume": 20.0}  # specks: 4 voxels = 8 mm³
    spec, _ = choose_postprocessing(vpreds, vrefs, labels=[1], candidates=[candidate])
    assert spec.steps_for(1) == (Step.from_json(candidate),)
    with pytest.raises(ConfigError, match="needs the voxel spacing"):
        choose_postprocessing(preds, refs, labels=[1], candidates=[candidate])
