"""Normalization numbers on crafted arrays, for every scheme and every degenerate case."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from voxseg.planning import Normalization
from voxseg.preprocessing import mean_std, normalize, normalize_channel


def _ch(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).reshape(1, -1)


def test_zscore_uses_the_case_statistics() -> None:
    x = np.array([1.0, 2.0, 3.0, 10.0])
    out = normalize(_ch(x), [Normalization("zscore")])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], (x - x.mean()) / x.std(), rtol=1e-6)


def test_zscore_inside_the_nonzero_mask_and_zero_outside() -> None:
    x = np.array([0.0, 0.0, 4.0, 6.0, 8.0, 0.0])
    out = normalize(_ch(x), [Normalization("zscore", use_nonzero_mask=True)])[0]
    inside = np.array([4.0, 6.0, 8.0])
    np.testing.assert_allclose(out[2:5], (inside - 6.0) / inside.std(), rtol=1e-6)
    assert out[0] == out[1] == out[5] == 0.0
    mask = np.array([False, True, True, True, True, False])  # a given mask wins (e.g. with filled holes)
    out = normalize(_ch(x), [Normalization("zscore", use_nonzero_mask=True)], nonzero_mask=mask)[0]
    with_hole = np.array([0.0, 4.0, 6.0, 8.0])
    np.testing.assert_allclose(out[1:5], (with_hole - with_hole.mean()) / with_hole.std(), rtol=1e-6)


def test_ct_clips_then_uses_dataset_statistics() -> None:
    x = np.array([-2000.0, -50.0, 40.0, 300.0, 5000.0])
    norm = Normalization("ct", mean=30.0, std=50.0, clip_low=-100.0, clip_high=250.0)
    out = normalize(_ch(x), [norm])[0]
    np.testing.assert_allclose(out, (np.clip(x, -100, 250) - 30.0) / 50.0, rtol=1e-6)


def test_percentile_minmax_inside_a_mask_channel() -> None:
    rng = np.random.default_rng(0)
    img = rng.normal(100.0, 20.0, 1000).astype(np.float32)
    brain = np.zeros(1000, np.float32)
    brain[200:800] = 1.0
    img[:200] = 1000.0  # bright skull outside the mask must not set the maximum
    img[800:] = -500.0
    data = np.stack([img, brain])
    norms = [Normalization("percentile_minmax", percentile=99.0, mask_channel=1), Normalization("mask")]
    out = normalize(data, norms)
    inside = img[200:800].astype(np.float64)
    lo, hi = inside.min(), np.percentile(inside, 99.0)
    np.testing.assert_allclose(out[0], np.clip((img - lo) / (hi - lo), 0.0, 1.0), rtol=1e-5, atol=1e-6)
    assert out[0].min() == 0.0 and out[0].max() == 1.0
    assert np.count_nonzero(out[0][200:800] == 1.0) == 6  # the top 1 % of the brain saturates
    np.testing.assert_array_equal(out[1], brain)


def test_percentile_minmax_without_mask_uses_the_whole_channel() -> None:
    x = np.arange(101, dtype=np.float32)
    out = normalize(_ch(x), [Normalization("percentile_minmax", percentile=50.0)])[0]
    np.testing.assert_allclose(out, np.clip(x / 50.0, 0, 1), rtol=1e-6)


def test_mask_and_none_schemes() -> None:
    x = np.array([-1.0, 0.0, 0.5, 7.0])
    np.testing.assert_array_equal(normalize(_ch(x), [Normalization("mask")])[0], [0.0, 0.0, 1.0, 1.0])
    none = normalize(_ch(x).astype(np.float64), [Normalization("none")])
    assert none.dtype == np.float32
    np.testing.assert_array_equal(none[0], x)


def test_constant_channel_gives_zeros_not_nan() -> None:
    for norm in (Normalization("zscore"), Normalization("zscore", use_nonzero_mask=True)):
        out = normalize(np.full((1, 4, 4), 7.5, np.float32), [norm])
        np.testing.assert_array_equal(out, 0.0)
    out = normalize(np.zeros((1, 4, 4), np.float32), [Normalization("zscore", use_nonzero_mask=True)])
    np.testing.assert_array_equal(out, 0.0)  # empty nonzero mask
    single = np.zeros((1, 5), np.float32)
    single[0, 2] = 3.0
    np.testing.assert_array_equal(normalize(single, [Normalization("zscore", use_nonzero_mask=True)]), 0.0)


def test_percentile_minmax_degenerate_range_and_empty_mask(caplog: pytest.LogCaptureFixture) -> None:
    img = np.array([5.0, 5.0, 5.0, 9.0, 1.0], np.float32)
    mask = np.array([1.0, 1.0, 1.0, 0.0, 0.0], np.float32)
    norms = [Normalization("percentile_minmax", mask_channel=1), Normalization("mask")]
    out = normalize(np.stack([img, mask]), norms)[0]
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.0, 1.0, 0.0])  # max == min: x > min as 0/1
    with caplog.at_level(logging.WARNING, logger="voxseg.preprocessing.intensity"):
        out = normalize(np.stack([img, np.zeros(5, np.float32)]), norms)[0]
    assert "mask channel 1 is empty" in caplog.text
    lo, hi = 1.0, np.percentile(img.astype(np.float64), 99.0)
    np.testing.assert_allclose(out, np.clip((img - lo) / (hi - lo), 0, 1), rtol=1e-6)


@pytest.mark.parametrize(
    "norm",
    [
        Normalization("zscore"),
        Normalization("zscore", use_nonzero_mask=True),
        Normalization("ct", mean=0.0, std=2.0, clip_low=-5.0, clip_high=5.0),
        Normalization("percentile_minmax", percentile=90.0),
        Normalization("mask"),
        Normalization("none"),
    ],
    ids=lambda n: f"{n.scheme}{'-nonzero' if n.use_nonzero_mask else ''}",
)
def test_nan_and_inf_become_zero_with_a_warning(norm: Normalization, caplog: pytest.LogCaptureFixture) -> None:
    x = np.array([1.0, np.nan, 3.0, np.inf, 5.0, -np.inf, 2.0], np.float32)
    with caplog.at_level(logging.WARNING, logger="voxseg.preprocessing.intensity"):
        out = normalize(_ch(x), [norm], name="case_7")[0]
    assert "case_7 channel 0: 3 NaN/Inf voxels of 7 set to 0" in caplog.text
    assert np.isfinite(out).all()
    assert out[1] == out[3] == out[5] == 0.0
    good = np.array([1.0, 3.0, 5.0, 2.0])
    if norm.scheme == "zscore":  # the statistics ignore the non-finite voxels
        np.testing.assert_allclose(out[[0, 2, 4, 6]], (good - good.mean()) / good.std(), rtol=1e-6)


def test_a_channel_with_no_finite_voxel_is_refused() -> None:
    """All NaN/Inf is a broken file, not an image to segment as empty."""
    from voxseg.errors import InputImageError

    x = np.array([np.nan, np.inf, -np.inf], np.float32)
    with pytest.raises(InputImageError, match="case_7 channel 0: every voxel is NaN or Inf"):
        normalize(_ch(x), [Normalization("zscore")], name="case_7")


def test_normalize_returns_a_new_array_and_normalize_channel_works_in_place() -> None:
    data = np.array([[1.0, 2.0, 3.0]], np.float32)
    out = normalize(data, [Normalization("zscore")])
    np.testing.assert_array_equal(data, [[1.0, 2.0, 3.0]])
    assert out is not data
    x = data[0]
    assert normalize_channel(x, Normalization("zscore")) is x
    np.testing.assert_allclose(data[0], out[0])
    with pytest.raises(TypeError, match="float32"):
        normalize_channel(np.zeros(3), Normalization("zscore"))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="2 normalization schemes for 1 channels"):
        normalize(np.zeros((1, 3), np.float32), [Normalization(), Normalization()])
    with pytest.raises(ValueError, match="mask_channel 3 does not exist"):
        normalize(np.zeros((1, 3), np.float32), [Normalization("percentile_minmax", mask_channel=3)])


def test_mean_std_matches_numpy_over_many_blocks() -> None:
    values = np.random.default_rng(2).normal(-700.0, 300.0, 3_000_001).astype(np.float32)
    mean, std = mean_std(values)
    ref = values.astype(np.float64)
    assert mean == pytest.approx(ref.mean(), rel=1e-12)
    assert std == pytest.approx(ref.std(), rel=1e-10)
    assert mean_std(np.zeros(0, np.float32)) == (0.0, 0.0)
