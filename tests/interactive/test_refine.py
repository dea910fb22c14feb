"""Refinement training inputs: perturbed previous masks, spread clicks, RefineSampler."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from voxseg.errors import ConfigError
from voxseg.interactive.config import PromptConfig
from voxseg.interactive.refine import RefineSampler, perturb_mask, simulate_clicks


def blob(shape=(16, 40, 40)):
    grid = np.indices(shape)
    return ((grid[0] - 8) / 5.0) ** 2 + ((grid[1] - 20) / 12.0) ** 2 + ((grid[2] - 20) / 10.0) ** 2 <= 1


def test_perturbed_masks_are_wrong_but_close_and_seeded():
    ref = blob()
    spacing = (2.0, 1.0, 1.0)
    near = ndi.distance_transform_edt(~ref, sampling=spacing) <= 2 * 3.0 + 2 * 3.0
    changed = 0
    for seed in range(8):
        out = perturb_mask(ref, rng=np.random.default_rng(seed), spacing=spacing, max_mm=3.0)
        again = perturb_mask(ref, rng=np.random.default_rng(seed), spacing=spacing, max_mm=3.0)
        assert np.array_equal(out, again) and out.dtype == bool
        assert not (out & ~near).any()  # never far from the object
        changed += int(not np.array_equal(out, ref))
    assert changed >= 7
    with pytest.raises(ConfigError):
        perturb_mask(ref, rng=np.random.default_rng(0), max_mm=0)


def test_clicks_spread_over_errors_with_the_right_sign():
    ref = np.zeros((30, 30), bool)
    ref[5:25, 5:25] = True
    prev = ref.copy()
    prev[5:12, 5:12] = False  # a missed corner (49 voxels)
    prev[26:29, 0:30] = True  # a spurious band (90 voxels)
    clicks = simulate_clicks(prev, ref, 4, radius_mm=2.0)
    assert len(clicks) == 4
    assert len({c.position for c in clicks}) == 4
    for c in clicks:
        assert c.positive == bool(ref[c.position]) and ref[c.position] != prev[c.position]
    assert not clicks[0].positive  # the larger error first
    assert any(c.positive for c in clicks)
    assert simulate_clicks(ref, ref, 3) == []


def test_refine_sampler_channels():
    label = blob((16, 48, 48)).astype(np.uint8)
    data = np.random.default_rng(0).normal(size=(1, 16, 48, 48)).astype(np.float32)

    class Case:
        pass

    case = Case()
    case.data, case.label = data, label
    sampler = RefineSampler(
        [case], (16, 32, 32), spacing=(2.0, 1.0, 1.0), config=PromptConfig(encoding="gaussian"), max_clicks=2
    )
    rng = np.random.default_rng(3)
    for _ in range(3):
        image, target = sampler.sample(rng)
        assert image.shape == (5, 16, 32, 32) and target.shape == (1, 16, 32, 32)
        previous, positive, negative = image[2], image[3], image[4]
        assert set(np.unique(previous)) <= {0.0, 1.0}
        assert positive.max() == 1.0 or negative.max() == 1.0  # at least one click in the patch or cropped away
        assert positive.min() >= 0.0 and negative.max() <= 1.0
    with pytest.raises(ConfigError, match="max_clicks"):
        RefineSampler([case], (16, 32, 32), spacing=(2.0, 1.0, 1.0), max_clicks=0)
