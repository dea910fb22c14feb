"""Axes whose flip swaps classes (mirror pairs) are measured, kept out of the plan's mirroring and the
training augmentation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.planning.fakes import uniform
from voxseg.augment import build_augmentation
from voxseg.dataset import DatasetSpec, DatasetWriter
from voxseg.fingerprint import Fingerprint, compute_fingerprint
from voxseg.fingerprint.symmetry import swap_fractions
from voxseg.io import Volume
from voxseg.planning import make_plan


def _ball(shape=(24, 28, 32), center=(12, 13, 17), radius=9.0) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, center, strict=True)) <= radius**2


def _hemispheres() -> np.ndarray:
    ball = _ball()
    lab = np.zeros(ball.shape, np.uint8)
    lab[ball] = 1
    lab[ball & (np.indices(ball.shape)[2] >= 17)] = 2  # the other half along the last axis
    return lab


def test_hemispheres_swap_along_their_axis_only():
    swap = swap_fractions(_hemispheres())
    assert swap[2] > 0.9 and swap[0] == 0 and swap[1] == 0


def test_one_class_or_nested_classes_swap_nothing():
    ball = _ball().astype(np.uint8)
    assert swap_fractions(ball) is None  # one foreground class: nothing to swap
    nested = ball.copy()
    nested[_ball(radius=4.0)] = 2  # a core inside the ball, centred: symmetric
    assert max(swap_fractions(nested)) < 0.1
    lab = _hemispheres()
    lab[lab == 2] = 7  # 7 is the ignore label: one foreground class is left
    assert swap_fractions(lab, ignore_label=7) is None


def test_planner_does_not_mirror_the_swapping_axis_and_says_why():
    fp = replace(uniform((1.0, 1.0, 1.0), (64, 64, 64)), mirror_swap={2: 0.93})
    plan = make_plan(fp, budget="cpu", configurations=("3d", "2d"))
    assert plan.configuration("3d").mirror_axes == (0, 1)
    assert plan.configuration("2d").mirror_axes == (0,)  # the 2D slices' axes are the volume's 1 and 2
    assert any("not mirrored along axis 2" in n and "93%" in n for n in plan.configuration("3d").notes)
    plain = make_plan(uniform((1.0, 1.0, 1.0), (64, 64, 64)), budget="cpu", configurations=("3d",))
    assert plain.configuration("3d").mirror_axes == (0, 1, 2)


def test_fingerprint_measures_mirror_pairs_and_writes_them_only_when_found(tmp_path):
    spec = DatasetSpec("Halves", {0: "MRI"}, {"background": 0, "a": 1, "b": 2})
    rng = np.random.default_rng(0)
    with DatasetWriter(tmp_path / "halves", spec) as w:
        for k in range(3):
            lab = _hemispheres()
            img = (lab > 0) * 100.0 + rng.normal(0, 5, lab.shape)
            w.add_case(f"c{k}", [Volume(img.astype(np.float32), (1.0, 1.0, 1.0))], Volume(lab, (1.0, 1.0, 1.0)))
    fp = compute_fingerprint(tmp_path / "halves")
    assert set(fp.mirror_swap) == {2} and fp.mirror_swap[2] > 0.9
    again = Fingerprint.from_json(fp.to_json())
    assert again.mirror_swap == fp.mirror_swap
    assert "mirror_swap" not in uniform((1.0, 1.0, 1.0), (8, 8, 8)).to_json()  # unchanged JSON otherwise


@pytest.mark.parametrize("axes", [(), (0,)])
def test_augmentation_flips_only_the_allowed_axes(axes):
    img = np.arange(2 * 1 * 6 * 7, dtype=np.float32).reshape(2, 1, 6, 7)
    lab = (img > 40).astype(np.int16)
    aug = build_augmentation("light", 2, mirror_axes=axes)  # light: mirroring only
    seen = set()
    for seed in range(16):
        x, _ = aug(img, lab, np.random.default_rng(seed))
        for b in range(2):
            src = torch.from_numpy(img[b])
            if torch.equal(x[b], src):
                seen.add("none")
            elif torch.equal(x[b], src.flip(1)):
                seen.add(0)
            else:
                seen.add("other")
    assert seen == ({"none"} if not axes else {"none", 0})
