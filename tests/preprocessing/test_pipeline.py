"""preprocess_case and the way back: geometry, identity, validation, dtypes."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voxseg.errors import ConfigError, InputImageError
from voxseg.io import Volume, read_image, write_image
from voxseg.planning import Normalization
from voxseg.preprocessing import (
    CaseProperties,
    preprocess_case,
    restore_probabilities,
    restore_to_original,
)

SPACING = (3.0, 0.7, 0.8)
ORIGIN = (-12.5, 40.0, 7.25)
SHAPE = (24, 100, 90)
IGNORE = 9


def _oblique() -> np.ndarray:
    t = np.deg2rad(25.0)
    rot = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(t), -np.sin(t)], [0.0, np.sin(t), np.cos(t)]])
    flip = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return flip @ rot


def _case(seed: int = 0):
    """A CT-like image with an empty (0) border, two smooth classes and an ignore blob, in mm."""
    zz, yy, xx = np.indices(SHAPE).astype(np.float64)
    z, y, x = zz * SPACING[0], yy * SPACING[1], xx * SPACING[2]
    body = ((y - 35.0) / 30.0) ** 2 + ((x - 36.0) / 32.0) ** 2 < 1
    organ = ((z - 36.0) / 24.0) ** 2 + ((y - 33.0) / 20.0) ** 2 + ((x - 32.0) / 18.0) ** 2 < 1
    lesion = ((z - 30.0) / 12.0) ** 2 + ((y - 30.0) / 8.0) ** 2 + ((x - 36.0) / 8.0) ** 2 < 1
    label = np.zeros(SHAPE, np.uint8)
    label[organ] = 1
    label[lesion] = 2
    label[(((z - 50.0) / 14.0) ** 2 + ((y - 50.0) / 8.0) ** 2 + ((x - 56.0) / 8.0) ** 2 < 1) & ~organ] = IGNORE
    rng = np.random.default_rng(seed)
    image = np.where(body, 40.0 + 60.0 * organ + 80.0 * lesion + rng.normal(0, 5, SHAPE), 0.0).astype(np.int16)
    direction = _oblique()
    return Volume(image, SPACING, ORIGIN, direction), Volume(label, SPACING, ORIGIN, direction)


CT = Normalization("ct", mean=80.0, std=40.0, clip_low=-100.0, clip_high=300.0)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.mark.parametrize("target", [(1.0, 1.0, 1.0), (3.0, 1.0, 1.0), (2.0, 0.5, 0.5)])
def test_label_round_trip_restores_the_original_geometry(target, tmp_path: Path) -> None:
    image, label = _case()
    case = preprocess_case([image], label, target_spacing=target, normalization=[CT])
    props = case.properties
    assert props.crop_box.shape != SHAPE  # the empty border was cropped
    assert props.lowres_axis == 0
    back = restore_to_original(case.label, props, is_label=True)
    assert back.shape == SHAPE and back.dtype == np.uint8
    for value in (1, 2, IGNORE):
        assert _dice(back == value, label.array == value) >= 0.97, value
    restored = Volume.like(back, props.geometry)
    assert restored.same_geometry(label)
    # through files, as a prediction would be written and overlaid on the input
    write_image(image, tmp_path / "img.nii.gz")
    write_image(restored, tmp_path / "pred.nii.gz")
    assert read_image(tmp_path / "pred.nii.gz").same_geometry(read_image(tmp_path / "img.nii.gz"))


def test_probabilities_round_trip() -> None:
    image, label = _case()
    case = preprocess_case([image], label, target_spacing=(1.0, 1.0, 1.0), normalization=[CT])
    onehot = np.stack([case.label == v for v in (0, 1, 2, IGNORE)]).astype(np.float16)
    probs = restore_probabilities(onehot, case.properties, dtype=np.float16)
    assert probs.shape == (4, *SHAPE) and probs.dtype == np.float16
    outside = np.ones(SHAPE, bool)
    outside[case.properties.crop_box.slices] = False
    assert np.all(probs[0][outside] == 1) and np.all(probs[1:, outside] == 0)
    np.testing.assert_allclose(probs.astype(np.float32).sum(axis=0), 1.0, atol=2e-3)
    argmax = probs.argmax(axis=0)
    for value in (1, 2):
        assert _dice(argmax == value, label.array == value) >= 0.97
    sigmoid = restore_probabilities(onehot[1:], case.properties, background_channel=None)
    assert sigmoid.dtype == np.float32 and np.all(sigmoid[:, outside] == 0)


def test_identity_when_target_is_the_spacing_and_nothing_is_cropped() -> None:
    rng = np.random.default_rng(1)
    image = Volume(rng.normal(10.0, 3.0, (6, 9, 8)).astype(np.float32) + 100, SPACING, ORIGIN, _oblique())
    label = Volume((image.array > 102).astype(np.uint8), SPACING, ORIGIN, _oblique())
    case = preprocess_case([image], label, target_spacing=SPACING, normalization=[Normalization("none")])
    assert case.properties.crop_box.is_full(image.shape) and case.properties.shape_after_resampling == image.shape
    np.testing.assert_array_equal(case.data[0], image.array)
    np.testing.assert_array_equal(case.label, label.array)
    np.testing.assert_array_equal(restore_to_original(case.label, case.properties, is_label=True), label.array)
    np.testing.assert_array_equal(restore_to_original(case.data[0], case.properties, is_label=False), image.array)


def test_preprocessed_geometry_places_voxels_at_the_right_world_position() -> None:
    image, label = _case()
    case = preprocess_case([image], label, target_spacing=(1.0, 1.0, 1.0), normalization=[CT])
    grid = Volume.like(case.label, case.properties.preprocessed_geometry())
    for value in (1, 2):
        before = image.index_to_world(np.argwhere(label.array == value).mean(axis=0))
        after = grid.index_to_world(np.argwhere(case.label == value).mean(axis=0))
        assert np.linalg.norm(before - after) < 0.3, value
    assert grid.spacing == pytest.approx((1.0, 1.0, 1.0), rel=0.03)


def test_outputs_are_float32_and_small_integer_labels() -> None:
    image, label = _case()
    second = image.with_array(image.array.astype(np.float64) * 2)
    case = preprocess_case(
        [image, second], label, target_spacing=(1.5, 1.0, 1.0), normalization=[CT, Normalization("zscore")]
    )
    assert case.data.dtype == np.float32 and case.data.flags.c_contiguous and case.data.shape[0] == 2
    assert case.label.dtype == np.uint8 and case.label.shape == case.data.shape[1:]
    assert set(np.unique(case.label)) == {0, 1, 2, IGNORE}
    big = label.with_array(label.array.astype(np.int32) * 100)
    assert preprocess_case([image], big, target_spacing=SPACING, normalization=[CT]).label.dtype == np.int16
    floats = label.with_array(label.array.astype(np.float32))
    assert preprocess_case([image], floats, target_spacing=SPACING, normalization=[CT]).label.dtype == np.uint8


def test_mask_channels_stay_binary_after_resampling() -> None:
    image, label = _case()
    brain = image.with_array((label.array > 0).astype(np.uint8))
    norms = [Normalization("percentile_minmax", mask_channel=1), Normalization("mask")]
    case = preprocess_case([image, brain], None, target_spacing=(1.0, 1.0, 1.0), normalization=norms)
    assert set(np.unique(case.data[1])) == {0.0, 1.0}
    assert case.label is None
    assert case.data[0].min() == 0.0 and case.data[0].max() == 1.0  # clipped again after the spline


def test_two_value_target_keeps_the_slice_spacing_and_2d_images_work() -> None:
    image, label = _case()
    case = preprocess_case([image], label, target_spacing=(1.4, 1.6), normalization=[CT])
    assert case.properties.target_spacing == (3.0, 1.4, 1.6)
    assert case.properties.shape_after_resampling[0] == case.properties.shape_after_crop[0]
    flat = Volume(image.array[12].astype(np.float32), (0.7, 0.8), (1.0, 2.0))
    flat_label = Volume(label.array[12], (0.7, 0.8), (1.0, 2.0))
    case2d = preprocess_case([flat], flat_label, target_spacing=(0.35, 0.4), normalization=[Normalization()])
    assert case2d.data.shape[0] == 1 and case2d.data.ndim == 3 and case2d.properties.lowres_axis is None
    back = restore_to_original(case2d.label, case2d.properties, is_label=True)
    assert _dice(back == 1, flat_label.array == 1) > 0.99


def test_nan_voxels_become_zero(caplog: pytest.LogCaptureFixture) -> None:
    arr = np.random.default_rng(0).normal(5, 1, (8, 8, 8)).astype(np.float32)
    arr[2, 3, 4] = np.nan
    with caplog.at_level(logging.WARNING):
        case = preprocess_case(
            [Volume(arr)], None, target_spacing=(0.7, 0.7, 0.7), normalization=[Normalization()], case_id="c1"
        )
    assert np.isfinite(case.data).all()
    assert "c1 channel 0: 1 NaN/Inf voxels" in caplog.text


def test_properties_json_round_trip() -> None:
    image, label = _case()
    props = preprocess_case([image], label, target_spacing=(1.0, 1.0, 1.0), normalization=[CT]).properties
    again = CaseProperties.from_json(json.loads(json.dumps(props.to_json())))
    assert again == props
    with pytest.raises(ConfigError, match="invalid case properties"):
        CaseProperties.from_json({"spacing": [1, 2]})


def test_inputs_on_different_grids_are_refused_with_the_mismatch_named() -> None:
    image, label = _case()
    other = Volume(image.array, (3.0, 0.7, 0.9), ORIGIN, image.direction)
    with pytest.raises(InputImageError, match=r"channel 1 geometry differs from channel 0: spacing"):
        preprocess_case([image, other], label, target_spacing=SPACING, normalization=[CT, CT])
    moved = Volume(label.array, SPACING, (0.0, 0.0, 0.0), label.direction)
    with pytest.raises(InputImageError, match="label geometry differs from the image: origin"):
        preprocess_case([image], moved, target_spacing=SPACING, normalization=[CT])
    with pytest.raises(InputImageError, match="channel 1 has shape"):
        preprocess_case([image, Volume(image.array[:3])], None, target_spacing=SPACING, normalization=[CT, CT])
    with pytest.raises(InputImageError, match="label has shape"):
        preprocess_case([image], Volume(label.array[:3]), target_spacing=SPACING, normalization=[CT])
    negative = label.with_array(label.array.astype(np.int16) - 1)
    with pytest.raises(InputImageError, match=r"label values must lie in 0\.\.32767"):
        preprocess_case([image], negative, target_spacing=SPACING, normalization=[CT])
    with pytest.raises(InputImageError, match="non-integer"):
        preprocess_case([image], label.with_array(label.array + 0.5), target_spacing=SPACING, normalization=[CT])


def test_bad_settings_are_config_errors() -> None:
    image, _ = _case()
    with pytest.raises(ConfigError, match="2 normalization schemes for 1 image channels"):
        preprocess_case([image], None, target_spacing=SPACING, normalization=[CT, CT])
    with pytest.raises(ConfigError, match="has 4 values for a 3D image"):
        preprocess_case([image], None, target_spacing=(1, 1, 1, 1), normalization=[CT])
    with pytest.raises(ConfigError, match="must be positive"):
        preprocess_case([image], None, target_spacing=(1, 0, 1), normalization=[CT])
    case = preprocess_case([image], None, target_spacing=(1.0, 1.0, 1.0), normalization=[CT])
    with pytest.raises(ValueError, match="preprocessed grid"):
        restore_to_original(np.zeros((3, 3, 3), np.uint8), case.properties, is_label=True)


def test_preprocessing_never_imports_torch() -> None:
    code = "import sys, voxseg.preprocessing; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
