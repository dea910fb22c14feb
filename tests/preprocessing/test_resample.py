"""Resampling: shape rule, agreement with scipy, the anisotropic path, labels, dtypes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from voxseg.preprocessing import lowres_axis, resample, resample_to_shape, resampled_shape


def _smooth(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (ndimage.gaussian_filter(rng.normal(size=shape), 2.0) * 100).astype(np.float32)


def _ellipsoids(shape=(24, 40, 36)) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    lab = np.zeros(shape, np.uint8)
    lab[((zz - 12) / 9.0) ** 2 + ((yy - 20) / 14.0) ** 2 + ((xx - 17) / 12.0) ** 2 < 1] = 1
    lab[((zz - 11) / 4.0) ** 2 + ((yy - 22) / 6.0) ** 2 + ((xx - 18) / 5.0) ** 2 < 1] = 2
    lab[:, :3, :] = 255  # an ignore band
    return lab


def test_shape_rule() -> None:
    assert resampled_shape((10, 20, 33), (3.0, 0.7, 0.6), (1.0, 1.0, 1.0)) == (30, 14, 20)
    assert resampled_shape((2, 3), (0.1, 0.1), (5.0, 5.0)) == (1, 1)  # never 0
    out = resample(_smooth((10, 20, 33)), (3.0, 0.7, 0.6), (1.0, 1.0, 1.0), order=3)
    assert out.shape == (30, 14, 20)


@pytest.mark.parametrize(("order", "mode"), [(3, "mirror"), (1, "nearest"), (0, "nearest")])
@pytest.mark.parametrize("new_shape", [(17, 45, 19), (9, 23, 50)])
def test_isotropic_resampling_equals_scipy_zoom(order: int, mode: str, new_shape) -> None:
    a = _smooth((12, 30, 28))
    ours = resample_to_shape(a, new_shape, order=order)
    factors = [n / o for n, o in zip(new_shape, a.shape, strict=True)]
    ref = ndimage.zoom(a.astype(np.float64), factors, order=order, mode=mode, grid_mode=True)
    assert ours.dtype == np.float32 and ours.shape == new_shape
    np.testing.assert_allclose(ours, ref, atol=1e-3 * np.abs(a).max())


def test_unchanged_shape_is_exact_identity_and_float32() -> None:
    a = _smooth((6, 7, 8)).astype(np.float64)
    out = resample_to_shape(a, a.shape, order=3)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, a.astype(np.float32))
    ints = np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8)
    assert resample(ints, (1.0, 2.0, 3.0), (1.0, 2.0, 3.0), order=3).dtype == np.float32


def test_lowres_axis_rule() -> None:
    assert lowres_axis((3.5, 0.7, 0.7)) == 0
    assert lowres_axis((0.5, 0.5, 2.0), anisotropy_threshold=4.5) is None
    assert lowres_axis((1.0, 1.0, 1.0)) is None
    assert lowres_axis((1.0, 1.0, 1.0), (5.0, 1.0, 1.0)) == 0  # anisotropic target decides
    assert lowres_axis((4.0, 4.0, 0.5)) is None  # two coarse axes: no single low-res axis
    assert lowres_axis((4.0, 0.5)) is None  # 2D


def test_lowres_axis_rule_threshold_is_strict() -> None:
    assert lowres_axis((0.5, 0.5, 2.0)) == 2  # 4 > 3
    assert lowres_axis((1.0, 1.0, 3.0)) is None  # 3 is not > 3


def test_anisotropic_path_uses_order_z_along_the_low_res_axis() -> None:
    rng = np.random.default_rng(1)
    a = np.repeat(rng.normal(size=(6, 1, 1)), 8, axis=1).repeat(8, axis=2).astype(np.float32)
    nearest = resample(a, (4.0, 1.0, 1.0), (2.0, 1.0, 1.0), order=3, order_z=0)
    assert nearest.shape == (12, 8, 8)
    np.testing.assert_array_equal(nearest, a[np.arange(12) // 2])  # slices copied, never blended
    linear = resample(a, (4.0, 1.0, 1.0), (2.0, 1.0, 1.0), order=3, order_z=1)
    lo = np.minimum(a[:-1, 0, 0], a[1:, 0, 0])
    hi = np.maximum(a[:-1, 0, 0], a[1:, 0, 0])
    inner = linear[1:-1, 0, 0]  # output slices 1..10 lie between input slices (k-1)//2 and (k+1)//2
    assert np.all(inner >= lo.repeat(2)[: inner.size] - 1e-6) and np.all(inner <= hi.repeat(2)[: inner.size] + 1e-6)
    cubic = resample(a, (4.0, 1.0, 1.0), (2.0, 1.0, 1.0), order=3, anisotropy_threshold=10.0)
    assert np.abs(cubic - linear).max() > 1e-3  # below the threshold the spline runs along z too


def test_in_plane_axes_keep_the_requested_order_on_anisotropic_data() -> None:
    a = _smooth((4, 30, 30))
    out = resample(a, (5.0, 1.0, 1.0), (5.0, 0.7, 0.7), order=3)
    ref = np.stack(
        [ndimage.zoom(s.astype(np.float64), [43 / 30, 43 / 30], order=3, grid_mode=True, mode="mirror") for s in a]
    )
    np.testing.assert_allclose(out, ref, atol=1e-3 * np.abs(a).max())


def test_label_resampling_keeps_the_label_set_dtype_and_ignore_value() -> None:
    lab = _ellipsoids()
    for target in [(1.0, 0.5, 0.5), (1.0, 1.5, 1.3), (0.7, 0.8, 0.8)]:
        for order in (0, 1):
            out = resample(lab, (1.0, 0.8, 0.8), target, order=order, is_label=True)
            assert out.dtype == np.uint8
            assert set(np.unique(out)) == {0, 1, 2, 255}
    wide = lab.astype(np.int16)
    wide[wide == 255] = 300
    out = resample(wide, (1.0, 0.8, 0.8), (1.0, 0.5, 0.5), order=1, is_label=True)
    assert out.dtype == np.int16 and set(np.unique(out)) == {0, 1, 2, 300}


def test_class_by_class_label_resampling_equals_one_hot_argmax() -> None:
    lab = _ellipsoids((20, 26, 22))
    shape = (29, 17, 31)
    ours = resample_to_shape(lab, shape, order=1, is_label=True)
    values = [0, 1, 2, 255]
    probs = np.stack([resample_to_shape((lab == v).astype(np.float32), shape, order=1) for v in values])
    ref = np.asarray(values)[np.argmax(probs, axis=0)]
    top2 = np.sort(probs, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-5  # exact ties may go either way
    np.testing.assert_array_equal(ours[clear], ref[clear])
    assert clear.mean() > 0.99


def test_binary_label_ties_go_to_the_class() -> None:
    lab = np.zeros((4, 8), np.uint8)
    lab[:, 3:6] = 1  # downsampling x by 2 puts voxel boundaries at exact 0.5 weights
    out = resample_to_shape(lab, (4, 4), order=1, is_label=True)
    probs = resample_to_shape(lab.astype(np.float32), (4, 4), order=1)
    np.testing.assert_array_equal(out, (probs >= 0.5).astype(np.uint8))
    assert np.any(probs == 0.5)


def test_nearest_label_resampling_matches_scipy_and_bool_stays_bool() -> None:
    lab = _ellipsoids((12, 14, 15))
    out = resample_to_shape(lab, (28, 6, 35), order=0, is_label=True)
    ref = ndimage.zoom(lab, [28 / 12, 6 / 14, 35 / 15], order=0, grid_mode=True, mode="nearest")
    np.testing.assert_array_equal(out, ref)
    mask = lab == 1
    assert resample_to_shape(mask, (20, 20, 20), order=1, is_label=True).dtype == bool


def test_two_dimensional_and_single_voxel_axes() -> None:
    a = _smooth((30, 40))
    assert resample(a, (0.5, 0.5), (1.0, 1.0), order=3).shape == (15, 20)
    flat = np.full((1, 5, 5), 3.0, np.float32)
    np.testing.assert_allclose(resample_to_shape(flat, (4, 5, 5), order=3), 3.0, rtol=1e-6)


def test_invalid_input_is_refused() -> None:
    a = _smooth((5, 6, 7))
    a[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        resample_to_shape(a, (6, 6, 6), order=1)
    with pytest.raises(ValueError, match="integer"):
        resample_to_shape(np.zeros((4, 4), np.float32), (5, 5), order=1, is_label=True)
    with pytest.raises(ValueError, match="order 0 or 1"):
        resample_to_shape(np.zeros((4, 4), np.uint8), (5, 5), order=3, is_label=True)
    with pytest.raises(ValueError, match="order must be 0, 1 or 3"):
        resample_to_shape(np.zeros((4, 4), np.float32), (5, 5), order=2)
    with pytest.raises(ValueError, match="target shape"):
        resample_to_shape(np.zeros((4, 4), np.float32), (5, 5, 5), order=1)
    with pytest.raises(ValueError, match="spacing"):
        resample(np.zeros((4, 4), np.float32), (1.0, 1.0, 1.0), (1.0, 1.0), order=1)
