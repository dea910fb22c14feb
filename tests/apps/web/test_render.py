"""Overlay pictures: physical aspect, slice choice, filled and contour overlays, the PNG report."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from voxseg.apps.web.render import intensity_window, render_slice, report_png, slice_of
from voxseg.errors import ConfigError
from voxseg.io import Volume
from voxseg.io.pictures import LABEL_COLORS


def _volume_3d():
    arr = np.zeros((10, 20, 30), np.float32)
    arr[:, 5:15, 10:20] = 100.0
    lab = np.zeros(arr.shape, np.uint8)
    lab[3:7, 8:12, 12:18] = 1
    spacing = (3.0, 1.0, 1.0)
    return Volume(arr, spacing), Volume(lab, spacing)


def test_2d_picture_keeps_the_physical_aspect():
    img = Volume(np.random.default_rng(0).normal(size=(40, 20)).astype(np.float32), (2.0, 1.0))
    pic = render_slice(img, size=200)
    assert pic.shape == (200, 50, 3) and pic.dtype == np.uint8  # 80 mm x 20 mm


def test_3d_views_and_slice_index():
    img, lab = _volume_3d()
    axial = render_slice(img, lab, axis=0, index=5, size=300)
    coronal = render_slice(img, lab, axis=1, index=10, size=300)
    sagittal = render_slice(img, lab, axis=2, index=15, size=300)
    assert axial.shape == (200, 300, 3)  # 20 x 30 mm
    assert coronal.shape == (300, 300, 3)  # 30 mm (z) x 30 mm (x)
    assert sagittal.shape == (300, 200, 3)  # 30 mm (z) x 20 mm (y)
    outside = render_slice(img, lab, axis=0, index=0, opacity=1.0)
    inside = render_slice(img, lab, axis=0, index=5, opacity=1.0)
    red = LABEL_COLORS[1]
    assert not _has_color(outside, red) and _has_color(inside, red)
    assert render_slice(img, lab, axis=0, index=99).shape == render_slice(img, lab, axis=0, index=9).shape  # clamped


def test_slice_of_puts_z_up():
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    np.testing.assert_array_equal(slice_of(arr, 1, 0), arr[::-1, 0, :])
    np.testing.assert_array_equal(slice_of(arr, 0, 1), arr[1])


def _has_color(pic: np.ndarray, color: np.ndarray) -> bool:
    diff = np.abs(pic.astype(int) - color.astype(int)).sum(axis=2)
    return bool((diff < 30).any())


def test_filled_contour_and_opacity():
    img, lab = _volume_3d()
    plain = render_slice(img, None, index=5)
    assert np.array_equal(render_slice(img, lab, index=5, opacity=0.0), plain)
    filled = render_slice(img, lab, index=5, mode="filled", opacity=1.0)
    contour = render_slice(img, lab, index=5, mode="contour", opacity=1.0)
    red = LABEL_COLORS[1]
    n_filled = int((np.abs(filled.astype(int) - red).sum(axis=2) == 0).sum())
    n_contour = int((np.abs(contour.astype(int) - red).sum(axis=2) == 0).sum())
    assert 0 < n_contour < n_filled / 3
    half = render_slice(img, lab, index=5, mode="filled", opacity=0.5)
    changed = np.any(half != plain, axis=2)
    assert changed.sum() == n_filled  # the same pixels, blended


def test_bad_options():
    img, lab = _volume_3d()
    with pytest.raises(ConfigError, match="overlay mode"):
        render_slice(img, lab, mode="outline")
    with pytest.raises(ConfigError, match="opacity"):
        render_slice(img, lab, opacity=2)
    with pytest.raises(ConfigError, match="grid"):
        render_slice(img, Volume(np.zeros((2, 2, 2), np.uint8)))


def test_window_ignores_outliers_and_nan():
    arr = np.linspace(0, 100, 10000, dtype=np.float32).reshape(100, 100)
    arr[0, 0], arr[0, 1] = 1e6, np.nan
    lo, hi = intensity_window(Volume(arr))
    assert 0 <= lo < 1 and 99 < hi <= 100.1


def test_report_png_has_overview_and_text():
    img, lab = _volume_3d()
    data = report_png([img], lab, title="case", lines=["1 object(s)", "x" * 150], label_names={1: "tumor"})
    pic = Image.open(io.BytesIO(data))
    assert pic.format == "PNG" and pic.width >= 150 * 5
