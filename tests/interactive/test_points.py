"""Simulated prompts on fabricated shapes: extreme points and corrective clicks."""

from __future__ import annotations

import numpy as np
import pytest

from voxseg.dataset.phantoms import generate_case
from voxseg.errors import ConfigError
from voxseg.interactive import Click, corrective_click, extreme_points


def box_mask(shape=(20, 30, 40), lo=(4, 5, 6), hi=(15, 20, 30)):
    mask = np.zeros(shape, np.uint8)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = 1
    return mask


def sphere_mask(shape=(32, 32, 32), centre=(15, 16, 17), radius=9.0, spacing=(1.0, 1.0, 1.0)):
    grid = np.indices(shape).astype(float)
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing, strict=True))
    return d2 <= radius**2


def l_shape():
    mask = np.zeros((12, 40, 40), bool)
    mask[2:10, 5:35, 5:12] = True  # vertical bar
    mask[2:10, 28:35, 5:35] = True  # foot
    return mask


def check_at_extremes(mask, points, inward):
    obj = np.argwhere(mask)
    inward = np.broadcast_to(inward, (mask.ndim,))
    for k, p in enumerate(points):
        axis, is_max = divmod(k, 2)
        end = obj[:, axis].max() if is_max else obj[:, axis].min()
        assert abs(p[axis] - end) <= inward[axis], (k, p, end)


@pytest.mark.parametrize("make", [box_mask, sphere_mask, l_shape])
def test_points_are_on_the_object_near_the_extremes(make):
    mask = make()
    pts = extreme_points(mask, inward=2)
    assert pts.shape == (6, 3) and pts.dtype == np.int64
    assert np.asarray(mask)[tuple(pts.T)].all()
    check_at_extremes(mask, pts, 2)


def test_order_is_axis_min_then_max():
    mask = box_mask()
    pts = extreme_points(mask, inward=0)
    assert pts[:, :].tolist()[0][0] == 4 and pts[1][0] == 14  # axis 0: min, max
    assert pts[2][1] == 5 and pts[3][1] == 19
    assert pts[4][2] == 6 and pts[5][2] == 29


def test_deterministic_point_is_nearest_the_plane_centroid():
    pts = extreme_points(box_mask(), inward=0)
    # the z-min face of the box spans y 5..19, x 6..29: its centroid is (12, 17.5) -> (12, 17)
    assert pts[0].tolist() == [4, 12, 17]


def test_inward_moves_toward_the_centre_and_stays_inside():
    mask = sphere_mask()
    flush = extreme_points(mask, inward=0)
    moved = extreme_points(mask, inward=3)
    centre = np.argwhere(mask).mean(axis=0)
    closer = np.linalg.norm(moved - centre, axis=1) < np.linalg.norm(flush - centre, axis=1)
    assert closer.all()
    assert mask[tuple(moved.T)].all()


def test_inward_per_axis_for_anisotropic_data():
    mask = sphere_mask(shape=(16, 40, 40), centre=(8, 20, 20), radius=12.0, spacing=(3.0, 1.0, 1.0))
    pts = extreme_points(mask, inward=(0, 4, 4), spacing=(3.0, 1.0, 1.0))
    obj = np.argwhere(mask)
    assert pts[0][0] == obj[:, 0].min() and pts[1][0] == obj[:, 0].max()  # no move along z
    check_at_extremes(mask, pts, (0, 4, 4))
    assert mask[tuple(pts.T)].all()


def test_l_shape_points_stay_inside_a_concave_object():
    mask = l_shape()
    for seed in range(5):
        pts = extreme_points(mask, rng=seed, inward=4)
        assert mask[tuple(pts.T)].all()


def test_seeded_points_are_reproducible_and_vary_with_the_seed():
    mask = sphere_mask()
    a = extreme_points(mask, rng=3, jitter=1.5)
    b = extreme_points(mask, rng=np.random.default_rng(3), jitter=1.5)
    assert np.array_equal(a, b)
    draws = {extreme_points(mask, rng=s, jitter=1.5).tobytes() for s in range(6)}
    assert len(draws) > 1


def test_jitter_is_bounded_and_clipped_to_the_image():
    mask = np.zeros((10, 10, 10), bool)
    mask[0:3, 0:3, 0:3] = True  # in a corner: jitter must be clipped
    base = extreme_points(mask, inward=0)
    for seed in range(20):
        pts = extreme_points(mask, inward=0, rng=seed, jitter=1.0)
        assert pts.min() >= 0 and pts.max() <= 9
        # rng picks another extreme-plane voxel (within the 3-voxel face) plus ~N(0, 1) offsets
        assert np.abs(pts - base).max() <= 3 + 6


def test_jitter_in_mm_scales_with_spacing():
    mask = sphere_mask(shape=(40, 40, 40), centre=(20, 20, 20), radius=10)
    base = extreme_points(mask, inward=0)
    offsets = [extreme_points(mask, inward=0, rng=s, jitter=4.0, spacing=(4.0, 1.0, 1.0)) - base for s in range(30)]
    z_moves = np.abs(np.concatenate(offsets)[:, 0]).mean()
    x_moves = np.abs(np.concatenate(offsets)[:, 2]).mean()
    assert z_moves < x_moves  # 4 mm is 1 voxel along z, 4 voxels along x


def test_2d_mask_gives_four_points():
    mask = np.zeros((30, 40), bool)
    mask[5:20, 10:30] = True
    pts = extreme_points(mask)
    assert pts.shape == (4, 2)
    assert mask[tuple(pts.T)].all()


def test_multi_component_mask_uses_extremes_of_the_union():
    mask = np.zeros((10, 40, 40), bool)
    mask[3:7, 2:8, 2:8] = True  # object A, top left
    mask[3:7, 30:38, 30:38] = True  # object B, bottom right
    pts = extreme_points(mask, inward=0)
    assert pts[2][1] < 8 and pts[3][1] >= 30  # y-min on A, y-max on B
    assert mask[tuple(pts.T)].all()


def test_empty_mask_is_refused():
    with pytest.raises(ConfigError, match="empty"):
        extreme_points(np.zeros((5, 5, 5)))


def test_jitter_without_rng_is_refused():
    with pytest.raises(ConfigError, match="rng"):
        extreme_points(box_mask(), jitter=2.0)


def test_soft_tissue_phantom_points():
    case = generate_case("soft-tissue-mri", 1, size=(24, 64, 64))
    label = case.label.array
    pts = extreme_points(label, inward=(1, 2, 2), spacing=case.label.spacing)
    assert label[tuple(pts.T)].all()
    check_at_extremes(label, pts, (1, 2, 2))


# ---- corrective clicks ------------------------------------------------------------------------


def test_no_click_when_prediction_is_perfect():
    ref = box_mask()
    assert corrective_click(ref.copy(), ref) is None


def test_missed_region_gets_a_positive_click_in_its_middle():
    ref = box_mask(shape=(20, 30, 40), lo=(2, 2, 2), hi=(18, 28, 38))
    pred = ref.copy()
    pred[5:12, 8:20, 10:30] = 0  # a big hole: false negative
    pred[0:2, 0:2, 0:2] = 1  # a tiny false positive
    click = corrective_click(pred, ref)
    assert isinstance(click, Click) and click.positive
    assert 5 <= click.position[0] < 12 and 8 <= click.position[1] < 20 and 10 <= click.position[2] < 30
    # the middle: the hole is 7 x 12 x 20, its deepest voxels lie at z 8
    assert click.position[0] == 8


def test_spurious_region_gets_a_negative_click():
    ref = box_mask(shape=(20, 30, 40), lo=(2, 2, 2), hi=(8, 8, 8))
    pred = ref.copy()
    pred[10:18, 15:28, 20:38] = 1  # a big false positive
    pred[2, 2, 2] = 0  # a one-voxel false negative
    click = corrective_click(pred, ref)
    assert not click.positive
    assert pred[click.position] and not ref[click.position]


def test_largest_error_region_wins():
    ref = np.zeros((30, 30), bool)
    pred = np.zeros((30, 30), bool)
    ref[2:6, 2:6] = True  # 16 voxels missed
    pred[15:25, 15:25] = True  # 100 voxels spurious
    click = corrective_click(pred, ref)
    assert not click.positive and 15 <= click.position[0] < 25


def test_click_tie_breaking_is_seeded():
    ref = np.zeros((9, 9), bool)
    ref[1:8, 1:8] = True
    pred = np.zeros_like(ref)
    ref[:, :] = False
    ref[2:4, 2:8] = True  # a 2 x 6 band: many equally deep voxels
    first = corrective_click(pred, ref)
    seeded = [corrective_click(pred, ref, rng=s).position for s in range(10)]
    assert first.position == (2, 4)  # the most central of the equally deep voxels
    assert seeded == [corrective_click(pred, ref, rng=s).position for s in range(10)]
    assert len(set(seeded)) > 1
    assert all(ref[p] for p in seeded)


def test_click_shape_mismatch_is_refused():
    with pytest.raises(ConfigError, match="shape"):
        corrective_click(np.zeros((4, 4)), np.zeros((4, 5)))


def test_click_json_round_trip():
    click = Click((1, 2, 3), False)
    assert Click.from_json(click.to_json()) == click
    with pytest.raises(ConfigError):
        Click.from_json({"pos": [1]})
