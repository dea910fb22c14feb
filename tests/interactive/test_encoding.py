"""Geodesic and Gaussian encodings, click channels and cropping to the points."""

from __future__ import annotations

import heapq
import itertools

import numpy as np
import pytest

from voxseg.errors import ConfigError, UnknownNameError
from voxseg.fingerprint.cropping import uncrop
from voxseg.interactive import (
    Click,
    crop_to_points,
    encode_clicks,
    encode_points,
    gaussian_map,
    geodesic_distance,
    geodesic_map,
)


def dijkstra(image, seeds, spacing, lamb):
    """Reference: shortest paths on the 8/26-neighbour graph with the same edge costs."""
    dist = np.full(image.shape, np.inf)
    heap = []
    for p in zip(*np.nonzero(seeds), strict=True):
        dist[p] = 0.0
        heap.append((0.0, p))
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=image.ndim) if any(o)]
    while heap:
        d, p = heapq.heappop(heap)
        if d > dist[p]:
            continue
        for o in offsets:
            q = tuple(a + b for a, b in zip(p, o, strict=True))
            if all(0 <= v < n for v, n in zip(q, image.shape, strict=True)):
                step2 = sum((v * s) ** 2 for v, s in zip(o, spacing, strict=True))
                cost = np.sqrt((1 - lamb) * step2 + lamb * (float(image[p]) - float(image[q])) ** 2)
                if d + cost < dist[q]:
                    dist[q] = d + cost
                    heapq.heappush(heap, (d + cost, q))
    return dist


@pytest.mark.parametrize("shape", [(25, 31), (7, 11, 9)])
@pytest.mark.parametrize("lamb", [0.0, 0.5, 1.0])
def test_raster_scan_matches_dijkstra(shape, lamb):
    rng = np.random.default_rng(1)
    image = rng.normal(size=shape).astype(np.float32)
    image[..., 4:6] += 4.0  # a wall
    seeds = np.zeros(shape, bool)
    seeds[(1,) * len(shape)] = True
    seeds[tuple(n - 2 for n in shape)] = True
    spacing = (2.0,) + (0.7,) * (len(shape) - 1)
    ref = dijkstra(image, seeds, spacing, lamb)
    got = geodesic_distance(image, seeds, spacing=spacing, lamb=lamb, iterations=4)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)


def test_map_is_one_at_the_points_and_decreases_with_distance():
    image = np.zeros((9, 40, 40), np.float32)
    points = np.array([[4, 20, 20]])
    gmap = geodesic_map(image, points, lamb=0.5, scale=5.0)
    assert gmap.dtype == np.float32
    assert gmap[4, 20, 20] == pytest.approx(1.0)
    profile = gmap[4, 20, 20:]
    assert np.all(np.diff(profile) < 0)
    assert 0 < gmap.min() < 0.2


def test_edges_raise_the_distance_behind_them():
    image = np.zeros((40, 40), np.float32)
    image[:, 20:22] = 10.0  # a bright wall
    points = np.array([[20, 10]])
    geo = geodesic_distance(image, np.isin(np.arange(1600).reshape(40, 40), [20 * 40 + 10]), lamb=0.5)
    euclid = geodesic_distance(image, geo == 0, lamb=0.0)
    # same side as the point: geodesic ~ scaled euclidean; behind the wall: much farther
    near, behind = (20, 17), (20, 30)
    assert geo[behind] - np.sqrt(0.5) * euclid[behind] > 5.0
    assert geo[near] == pytest.approx(np.sqrt(0.5) * euclid[near], rel=1e-4)
    gmap = geodesic_map(image, points, lamb=0.5, scale=3.0)
    assert gmap[behind] < 0.1 * gmap[20, 0]  # the far side of the wall is "dark"


def test_symmetric_image_gives_a_symmetric_map():
    rng = np.random.default_rng(0)
    half = rng.normal(size=(6, 20, 10)).astype(np.float32)
    image = np.concatenate([half, half[:, :, ::-1]], axis=2)
    points = np.array([[3, 10, 9], [3, 10, 10]])  # mirror pair
    gmap = geodesic_map(image, points, lamb=0.8)
    np.testing.assert_allclose(gmap, gmap[:, :, ::-1], atol=1e-6)


def test_intensity_only_distance_is_zero_in_flat_regions():
    image = np.zeros((30, 30), np.float32)
    image[15:, :] = 2.0
    gmap = geodesic_map(image, np.array([[5, 5]]), lamb=1.0)
    assert np.all(gmap[:15] == 1.0)
    np.testing.assert_allclose(gmap[15:], np.exp(-2.0), rtol=1e-6)


def test_nan_voxels_are_impassable_not_contagious():
    image = np.zeros((20, 20), np.float32)
    image[:, 10] = np.nan  # a wall of missing values
    image[5, 3] = np.nan
    gmap = geodesic_map(image, np.array([[10, 2]]), lamb=0.5, scale=5.0)
    assert np.isfinite(gmap).all()
    assert np.all(gmap[:, 10:] == 0.0)  # unreachable behind the wall
    assert gmap[5, 3] == 0.0 and gmap[5, 4] > 0.1  # paths go around the hole


def test_gaussian_map_peak_and_width_in_mm():
    gmap = gaussian_map((10, 50, 50), np.array([[5, 25, 25]]), spacing=(3.0, 1.0, 1.0), sigma_mm=4.0)
    assert gmap[5, 25, 25] == 1.0 and gmap.max() == 1.0
    assert gmap[5, 25, 29] == pytest.approx(np.exp(-0.5), rel=1e-5)  # 4 mm along x
    assert gmap[6, 25, 25] == pytest.approx(np.exp(-9 / 32), rel=1e-5)  # 3 mm along z


def test_gaussian_map_of_several_points_takes_the_nearest():
    gmap = gaussian_map((40, 40), np.array([[5, 5], [30, 30]]), sigma_mm=3.0)
    assert gmap[5, 5] == gmap[30, 30] == 1.0
    assert gmap[17, 17] < 0.01


def test_encode_points_dispatches_by_method():
    image = np.random.default_rng(0).normal(size=(6, 16, 16)).astype(np.float32)
    pts = np.array([[2, 3, 4], [3, 12, 12]])
    np.testing.assert_array_equal(
        encode_points(image, pts, method="geodesic", lamb=0.7), geodesic_map(image, pts, lamb=0.7)
    )
    np.testing.assert_array_equal(
        encode_points(image, pts, method="gaussian", sigma_mm=2.0), gaussian_map(image.shape, pts, sigma_mm=2.0)
    )
    with pytest.raises(UnknownNameError, match="did you mean geodesic"):
        encode_points(image, pts, method="geodesik")
    with pytest.raises(ConfigError, match="gaussian"):
        encode_points(image, pts, method="gaussian", lamb=1.0)


def test_points_outside_are_refused():
    with pytest.raises(ConfigError, match="inside"):
        geodesic_map(np.zeros((5, 5)), np.array([[5, 0]]))


def test_click_channels():
    image = np.zeros((8, 20, 20), np.float32)
    clicks = [Click((4, 5, 5), True), Click((4, 15, 15), False), Click((2, 5, 15), True)]
    enc = encode_clicks(image, clicks, method="gaussian", sigma_mm=2.0)
    assert enc.shape == (2, 8, 20, 20) and enc.dtype == np.float32
    assert enc[0, 4, 5, 5] == 1.0 and enc[0, 2, 5, 15] == 1.0 and enc[0, 4, 15, 15] < 0.01
    assert enc[1, 4, 15, 15] == 1.0 and enc[1, 4, 5, 5] < 0.01
    only_positive = encode_clicks(image, clicks[:1], method="geodesic", lamb=0.5)
    assert np.all(only_positive[1] == 0) and only_positive[0, 4, 5, 5] == 1.0


def test_crop_to_points_with_margin_and_paste_back():
    image = np.arange(20 * 30 * 40, dtype=np.float32).reshape(20, 30, 40)
    label = (image % 7 == 0).astype(np.uint8)
    two_channel = np.stack([image, image])
    pts = np.array([[5, 10, 12], [9, 20, 30], [7, 15, 38]])
    (img_c, lab_c, two_c), box = crop_to_points([image, label, two_channel], pts, margin=2)
    assert box.start == (3, 8, 10) and box.stop == (12, 23, 40)  # clipped at x = 40
    assert img_c.shape == lab_c.shape == two_c.shape[1:] == box.shape
    np.testing.assert_array_equal(uncrop(img_c, box, image.shape)[box.slices], image[box.slices])
    local = pts - np.asarray(box.start)
    assert img_c[tuple(local[0])] == image[tuple(pts[0])]


def test_crop_margin_in_mm():
    image = np.zeros((20, 60, 60), np.float32)
    pts = np.array([[10, 30, 30], [10, 31, 31]])
    _, box = crop_to_points([image], pts, margin_mm=6.0, spacing=(3.0, 1.0, 1.0))
    assert box.start == (8, 24, 24) and box.stop == (13, 38, 38)
    with pytest.raises(ConfigError, match="spacing"):
        crop_to_points([image], pts, margin_mm=6.0)


def test_crop_refuses_mismatched_arrays():
    with pytest.raises(ConfigError, match="differ"):
        crop_to_points([np.zeros((4, 4)), np.zeros((4, 5))], np.array([[1, 1]]))
