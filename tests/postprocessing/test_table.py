"""Per-object table: volumes, centroids in world coordinates, boxes, intensities, sphericity, CSV."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from voxseg.errors import ConfigError, InputImageError
from voxseg.io import Volume
from voxseg.postprocessing import instances, object_table, table_columns, write_object_table

from .helpers import ball, box

SPACING = (2.0, 0.8, 0.5)
ORIGIN = (-40.0, 12.5, 3.0)
# array-order direction: a rotation about the z axis by 30 degrees with a flipped x axis
_C, _S = math.cos(math.radians(30)), math.sin(math.radians(30))
DIRECTION = ((1.0, 0.0, 0.0), (0.0, _C, _S), (0.0, _S, -_C))


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shape = (20, 50, 60)
    large = ball(shape, (10, 20, 30), 7.0, SPACING)  # radius in mm
    small = box(shape, (2, 40, 5), (5, 44, 13))  # 3 x 4 x 8 = 96 voxels
    return (large | small), large, small


def test_volumes_centroids_boxes_with_geometry():
    mask, large, _ = _scene()
    inst = instances(Volume(mask.astype(np.uint8), SPACING, ORIGIN, DIRECTION))
    rows = object_table(inst)
    assert [r.id for r in rows] == [1, 2]
    big, little = rows
    voxel_volume = 2.0 * 0.8 * 0.5
    assert big.voxels == int(large.sum()) and big.volume == pytest.approx(big.voxels * voxel_volume)
    assert little.voxels == 96 and little.volume == pytest.approx(96 * voxel_volume)
    assert little.centroid == pytest.approx((3.0, 41.5, 8.5))
    assert little.bbox_min == (2, 40, 5) and little.bbox_max == (4, 43, 12)
    expected = np.asarray(ORIGIN) + np.asarray(DIRECTION) @ (np.array([3.0, 41.5, 8.5]) * SPACING)
    assert little.centroid_world == pytest.approx(tuple(expected))
    assert big.centroid_world == pytest.approx(tuple(inst.index_to_world(big.centroid)))
    assert big.centroid == pytest.approx((10.0, 20.0, 30.0))
    # the same numbers from an ndarray with explicit geometry
    again = object_table(inst.array, spacing=SPACING, origin=ORIGIN, direction=DIRECTION)
    assert again == rows
    with pytest.raises(ConfigError, match="not both"):
        object_table(inst, spacing=SPACING)


def test_intensity_class_and_sparse_ids():
    mask, large, small = _scene()
    image = np.zeros(mask.shape, np.float32)
    image[large] = 10.0
    image[small] = np.arange(96, dtype=np.float32)
    classes = np.zeros(mask.shape, np.uint8)
    classes[large] = 2
    classes[small] = 1
    classes[2, 40, 5:8] = 3  # a minority of another class inside the box
    inst = np.zeros(mask.shape, np.int32)
    inst[large] = 1000
    inst[small] = 7
    rows = object_table(inst, image=image, class_map=classes)
    assert [r.id for r in rows] == [7, 1000]
    assert rows[0].label == 1 and rows[1].label == 2
    assert rows[0].mean_intensity == pytest.approx(47.5) and rows[0].max_intensity == 95.0
    assert rows[1].mean_intensity == 10.0 and rows[1].max_intensity == 10.0
    by_map = object_table(inst, class_map={7: 4})
    assert by_map[0].label == 4 and by_map[1].label is None
    assert object_table(inst)[0].label is None and object_table(inst)[0].mean_intensity is None
    with pytest.raises(InputImageError, match="shape"):
        object_table(inst, image=image[:-1])
    with pytest.raises(InputImageError, match="integer ids"):
        object_table(inst.astype(np.float32))
    assert object_table(np.zeros((4, 4, 4), np.uint8)) == []


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 0.7, 0.7)])
@pytest.mark.parametrize("radius_vox", [8, 12])
def test_sphericity_of_a_voxelized_ball(spacing, radius_vox):
    radius = radius_vox * min(spacing)  # mm
    shape = tuple(int(2 * radius / s) + 6 for s in spacing)
    center = tuple(n / 2 + 0.3 for n in shape)
    mask = ball(shape, center, radius, spacing)
    (row,) = object_table(mask.astype(np.uint8), spacing=spacing)
    assert 0.95 <= row.roundness <= 1.05
    assert row.surface == pytest.approx(4 * math.pi * radius**2, rel=0.05)


def test_sphericity_lower_for_elongated_box_and_circularity_in_2d():
    rod = box((12, 12, 50), (4, 4, 3), (8, 8, 43)).astype(np.uint8)  # 4 x 4 x 40
    (row,) = object_table(rod)
    true_sphericity = math.pi ** (1 / 3) * (6 * 640) ** (2 / 3) / 672  # 0.534
    assert true_sphericity < row.roundness < 0.65  # edges are smoothed: slightly high
    assert row.surface == pytest.approx(672, rel=0.15)
    disc = ball((40, 40), (20.3, 19.6), 12).astype(np.uint8)
    rect = box((20, 60), (5, 5), (9, 45)).astype(np.uint8)  # 4 x 40: circularity 0.26
    (d,) = object_table(disc)
    (r,) = object_table(rect, spacing=(0.5, 0.5))
    assert 0.93 <= d.roundness <= 1.07 and d.surface == pytest.approx(2 * math.pi * 12, rel=0.04)
    assert r.roundness == pytest.approx(4 * math.pi * 160 / 88**2, rel=0.1)
    assert r.volume == pytest.approx(160 * 0.25)


def test_write_csv(tmp_path):
    mask, _, _ = _scene()
    inst = instances(Volume(mask.astype(np.uint8), SPACING, ORIGIN, DIRECTION))
    rows = object_table(inst, image=mask.astype(np.float32))
    path = write_object_table(rows, tmp_path / "out" / "objects.csv")
    assert [p.name for p in path.parent.iterdir()] == ["objects.csv"]  # no temporary left
    with path.open(newline="") as fh:
        read = list(csv.DictReader(fh))
    assert list(read[0]) == table_columns(3)
    assert table_columns(3)[:5] == ["id", "class", "voxels", "volume_mm3", "centroid_z"]
    assert read[0]["id"] == "1" and read[0]["class"] == "" and int(read[1]["voxels"]) == 96
    assert float(read[1]["world_x_mm"]) == pytest.approx(rows[1].centroid_world[2])
    assert float(read[0]["sphericity"]) == pytest.approx(rows[0].roundness)
    assert "circularity" in table_columns(2) and "area_mm2" in table_columns(2)
    empty = write_object_table([], tmp_path / "empty.csv", ndim=2)
    assert empty.read_text().strip() == ",".join(table_columns(2))
