"""Crop to nonzero, the nonzero mask, and the inverse padding."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from voxseg.preprocessing import CropBox, crop, crop_to_nonzero, fill_holes, nonzero_region, uncrop


def _blob(shape=(10, 12, 14)) -> np.ndarray:
    a = np.zeros(shape, dtype=np.float32)
    a[2:7, 3:9, 4:12] = np.random.default_rng(0).normal(5.0, 1.0, (5, 6, 8))
    return a


def test_box_is_the_bounding_box_of_nonzero_voxels() -> None:
    box, mask = crop_to_nonzero([_blob()])
    assert box == CropBox((2, 3, 4), (7, 9, 12))
    assert box.shape == (5, 6, 8) and mask.shape == (5, 6, 8) and mask.dtype == bool and mask.all()


def test_any_channel_counts_and_label_foreground_is_never_cut() -> None:
    a, b = _blob(), np.zeros((10, 12, 14), np.float32)
    b[8, 1, 1] = -3.0  # a second channel widens the box
    label = np.zeros((10, 12, 14), np.uint8)
    label[0, 11, 13] = 2  # label outside every channel's nonzero region
    box, mask = crop_to_nonzero([a, b], label)
    assert box == CropBox((0, 1, 1), (9, 12, 14))
    assert not mask[0, 10, 12]  # the label widens the box but is not part of the image mask
    assert mask[8, 0, 0]  # channel 1's voxel (8, 1, 1)


def test_nan_counts_as_empty_and_empty_case_keeps_everything() -> None:
    a = np.zeros((4, 5, 6), np.float32)
    a[0, 0, 0] = np.nan
    a[3, 4, 5] = np.inf
    assert not nonzero_region([a]).any()
    box, mask = crop_to_nonzero([a])
    assert box.is_full((4, 5, 6)) and not mask.any()


def test_crop_then_uncrop_is_the_identity_for_channels_and_labels() -> None:
    data = np.stack([_blob(), 2 * _blob()])
    box, _ = crop_to_nonzero(data)
    cropped = crop(data, box)
    assert cropped.shape == (2, 5, 6, 8)
    np.testing.assert_array_equal(uncrop(cropped, box, (10, 12, 14)), data)
    label = (data[0] > 5).astype(np.uint8)
    back = uncrop(crop(label, box), box, (10, 12, 14), fill=0)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, label)
    filled = uncrop(np.zeros(box.shape, np.float32), box, (10, 12, 14), fill=7)
    assert filled[0, 0, 0] == 7 and filled[2, 3, 4] == 0


def test_fill_holes_fills_enclosed_background_only() -> None:
    zz, yy, xx = np.indices((20, 20, 20))
    r = np.sqrt((zz - 10) ** 2 + (yy - 10) ** 2 + (xx - 10) ** 2)
    shell = (r < 8) & (r > 4)
    filled = fill_holes(shell)
    np.testing.assert_array_equal(filled, r < 8)
    tunnel = shell.copy()
    tunnel[10:, 10, 10] = False  # a channel from the cavity to the border: no longer a hole
    assert not fill_holes(tunnel)[10, 10, 10]
    assert not fill_holes(tunnel)[10, 10, 8] and fill_holes(tunnel)[10, 10, 4]  # cavity open, wall kept


def test_fill_holes_agrees_with_scipy() -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        mask = ndimage.binary_opening(rng.random((16, 18, 20)) > 0.35)
        np.testing.assert_array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))


def test_nonzero_mask_has_holes_filled_unless_asked_not_to() -> None:
    a = np.zeros((9, 9, 9), np.float32)
    a[1:8, 1:8, 1:8] = 1.0
    a[4, 4, 4] = 0.0
    assert crop_to_nonzero([a])[1][3, 3, 3]
    assert not crop_to_nonzero([a], fill=False)[1][3, 3, 3]


def test_crop_box_json_and_validation() -> None:
    box = CropBox((1, 2), (5, 9))
    assert CropBox.from_json(box.to_json()) == box
    assert box.slices == (slice(1, 5), slice(2, 9))
    with pytest.raises(ValueError, match="invalid crop box"):
        CropBox((3, 0), (3, 4))
    with pytest.raises(ValueError, match="does not fit"):
        uncrop(np.zeros((4, 4)), box, (10, 10))
