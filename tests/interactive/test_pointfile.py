"""Point files (points.json, napari CSV), world <-> voxel coordinates and the input checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from voxseg.errors import ConfigError, InputImageError
from voxseg.interactive import (
    PointPrompt,
    extreme_points,
    load_points,
    points_from_preprocessed,
    points_to_preprocessed,
    points_to_voxel,
    read_points,
    validate_points,
    write_points,
)
from voxseg.io import Volume
from voxseg.planning import Normalization
from voxseg.preprocessing import preprocess_case

# a rotated, anisotropic, shifted grid: axis 1 and 2 swapped with a sign flip
DIRECTION = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0))
VOLUME = Volume(np.zeros((20, 30, 40), np.float32), (3.0, 0.8, 0.5), (-30.0, 12.0, -7.0), DIRECTION)

GOOD = np.array([[2, 15, 20], [17, 15, 20], [9, 3, 20], [9, 27, 20], [9, 15, 4], [9, 15, 35]], float)


def test_world_voxel_round_trip_with_a_rotated_direction():
    world = VOLUME.index_to_world(GOOD)
    assert not np.allclose(world, GOOD * np.asarray(VOLUME.spacing) + VOLUME.origin)  # direction matters
    np.testing.assert_allclose(points_to_voxel(world, VOLUME, "world"), GOOD, atol=1e-9)
    np.testing.assert_array_equal(points_to_voxel(GOOD, VOLUME, "voxel"), GOOD)
    with pytest.raises(ConfigError, match="space"):
        points_to_voxel(GOOD, VOLUME, "mm")


def test_points_json_round_trip(tmp_path):
    prompt = PointPrompt(VOLUME.index_to_world(GOOD), space="world")
    path = write_points(tmp_path / "points.json", prompt)
    data = json.loads(path.read_text())
    assert data["space"] == "world" and data["labels"] == [1] * 6 and len(data["points"]) == 6
    back = read_points(path)
    assert back.space == "world" and back.labels == (1,) * 6
    np.testing.assert_allclose(back.points, prompt.points)
    voxels, _ = load_points(path, VOLUME)
    np.testing.assert_array_equal(voxels, GOOD.astype(np.int64))


def test_points_json_defaults_and_conflicts(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"points": GOOD.tolist()}))
    assert read_points(path).space == "voxel"
    assert read_points(path, space="world").space == "world"
    path.write_text(json.dumps({"space": "voxel", "points": GOOD.tolist()}))
    with pytest.raises(InputImageError, match="says space 'voxel'"):
        read_points(path, space="world")
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(GOOD.tolist()))
    assert len(read_points(bare).points) == 6


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "not valid JSON"),
        ('{"pts": []}', "'points' list"),
        ('{"points": [[1, 2, 3]], "labels": [2]}', "labels"),
        ('{"points": [[1, 2, 3]], "space": "pixels"}', "unknown point space"),
        ('{"points": [1, 2, 3]}', "coordinates"),
    ],
)
def test_bad_points_json_is_one_line(tmp_path, text, match):
    path = tmp_path / "points.json"
    path.write_text(text)
    with pytest.raises(InputImageError, match=match) as info:
        read_points(path)
    assert "\n" not in str(info.value) and "points.json" in str(info.value)


def test_napari_csv(tmp_path):
    # the format napari writes for a Points layer (File > Save Selected Layer(s) > .csv)
    path = tmp_path / "points.csv"
    rows = ["index,axis-0,axis-1,axis-2"] + [f"{i},{z},{y},{x}" for i, (z, y, x) in enumerate(GOOD)]
    path.write_text("\n".join(rows) + "\n")
    prompt = read_points(path)
    assert prompt.space == "voxel" and prompt.labels == (1,) * 6
    np.testing.assert_array_equal(prompt.points, GOOD)
    # an image layer opened with scale=spacing, translate=origin: napari coords are mm (no rotation)
    plain = Volume(np.zeros((20, 30, 40), np.float32), (3.0, 0.8, 0.5), (-30.0, 12.0, -7.0))
    scaled = GOOD * np.asarray(plain.spacing) + np.asarray(plain.origin)
    rows = ["index,axis-0,axis-1,axis-2,label"] + [
        f"{i},{z},{y},{x},{int(i != 5)}" for i, (z, y, x) in enumerate(scaled)
    ]
    path.write_text("\n".join(rows) + "\n")
    voxels, labels = load_points(path, plain, space="world")
    np.testing.assert_array_equal(voxels, GOOD.astype(np.int64))
    assert labels == (1, 1, 1, 1, 1, 0)


def test_napari_csv_problems(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("index,z,y,x\n0,1,2,3\n")
    with pytest.raises(InputImageError, match="axis-0"):
        read_points(path)
    path.write_text("index,axis-0,axis-1\n")
    with pytest.raises(InputImageError, match="no points"):
        read_points(path)
    with pytest.raises(InputImageError, match="no such"):
        read_points(tmp_path / "missing.json")
    other = tmp_path / "p.txt"
    other.write_text("1 2 3")
    with pytest.raises(InputImageError, match="format"):
        read_points(other)


# ---- the bad-input checks: one line each, with a hint -----------------------------------


def one_line(exc_info):
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_good_points_pass_and_are_rounded():
    out = validate_points(GOOD + 0.3, VOLUME.shape)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, GOOD)


def test_fewer_than_six_points():
    with pytest.raises(ConfigError) as info:
        validate_points(GOOD[:4], VOLUME.shape)
    assert "4 points given, fewer than the 6 needed" in one_line(info)
    with pytest.raises(ConfigError, match="4 needed"):
        validate_points(GOOD[:3, :2], (30, 30))  # 2D needs 4


def test_points_outside_the_image():
    bad = GOOD.copy()
    bad[3] = [9, 31, 20]
    with pytest.raises(ConfigError) as info:
        validate_points(bad, VOLUME.shape)
    message = one_line(info)
    assert "point 3 [9, 31, 20] is outside the image of shape (20, 30, 40)" in message
    assert "world" in message


def test_all_points_identical():
    with pytest.raises(ConfigError) as info:
        validate_points(np.repeat(GOOD[:1], 6, axis=0), VOLUME.shape)
    assert "all 6 points are the same voxel [2, 15, 20]" in one_line(info)


def test_world_points_given_as_voxels_get_the_world_hint():
    volume = Volume(np.zeros((20, 30, 40), np.float32), (3.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    world = volume.index_to_world(GOOD)  # mm: outside the voxel grid, inside the world extent
    with pytest.raises(ConfigError) as info:
        validate_points(world, volume.shape, spacing=volume.spacing)
    assert "--points-space world" in one_line(info)
    with pytest.raises(ConfigError, match="--points-space world"):
        load_points(PointPrompt(VOLUME.index_to_world(GOOD), space="voxel"), VOLUME)


def test_voxel_points_declared_as_world_get_the_voxel_hint():
    with pytest.raises(ConfigError) as info:
        load_points(PointPrompt(GOOD, space="world"), VOLUME)
    assert "--points-space voxel" in one_line(info)


def test_reversed_axis_order_hint():
    xyz = GOOD[:, ::-1]  # x up to 35 in the z position: outside 20 slices
    with pytest.raises(ConfigError, match=r"reversed they fit: give \(z, y, x\) in array order"):
        validate_points(xyz, VOLUME.shape)


def test_wrong_dimensions_and_non_finite():
    with pytest.raises(ConfigError, match="N x 3"):
        validate_points(GOOD[:, :2], VOLUME.shape)
    bad = GOOD.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ConfigError, match="finite"):
        validate_points(bad, VOLUME.shape)


def test_any_count_for_clicks():
    out = validate_points(GOOD[:1], VOLUME.shape, expected="any")
    assert out.shape == (1, 3)
    with pytest.raises(ConfigError, match="no points"):
        validate_points(np.zeros((0, 3)), VOLUME.shape, expected="any")


def test_points_map_onto_the_preprocessed_grid():
    # an object inside a zero border (cropped away) on a grid resampled 2 mm -> 1 mm in plane
    image = np.zeros((12, 40, 44), np.float32)
    image[2:10, 5:35, 6:40] = 1.0 + np.random.default_rng(0).random((8, 30, 34)).astype(np.float32)
    label = np.zeros(image.shape, np.uint8)
    grid = np.indices(image.shape)
    label[((grid[0] - 6) / 3.0) ** 2 + ((grid[1] - 20) / 10) ** 2 + ((grid[2] - 22) / 12) ** 2 <= 1] = 1
    spacing, origin = (3.0, 2.0, 2.0), (5.0, -20.0, 7.0)
    case = preprocess_case(
        [Volume(image, spacing, origin, DIRECTION)],
        Volume(label, spacing, origin, DIRECTION),
        target_spacing=(3.0, 1.0, 1.0),
        normalization=[Normalization("zscore")],
    )
    props = case.properties
    assert props.crop_box.start != (0, 0, 0) and props.shape_after_resampling != props.shape_after_crop
    points = extreme_points(label, inward=(0, 1, 1))
    mapped = points_to_preprocessed(points, props)
    # the same physical positions
    original = Volume(image, spacing, origin, DIRECTION)
    pre = Volume.like(np.zeros(props.shape_after_resampling, np.float32), props.preprocessed_geometry())
    np.testing.assert_allclose(pre.index_to_world(mapped), original.index_to_world(points), atol=1e-9)
    np.testing.assert_allclose(points_from_preprocessed(mapped, props), points, atol=1e-9)
    # and, rounded, on the resampled object
    idx = np.rint(mapped).astype(int)
    assert case.label[tuple(idx.T)].all()
    with pytest.raises(ConfigError, match="2D points"):
        points_to_preprocessed(points[:, :2], props)
