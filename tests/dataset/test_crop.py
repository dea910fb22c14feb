"""crop_case / crop_dataset: boxes, label bounding boxes with margins, geometry kept in place."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.dataset.sparse_helpers import rotation, sparse_cord, tree_digest, write_volume_dataset
from voxseg.dataset import read_dataset, verify_dataset
from voxseg.dataset.crop import EmptyCropError, crop_case, crop_dataset, label_bbox, parse_box, parse_margin
from voxseg.errors import ConfigError
from voxseg.io import Volume, read_image


def _oblique_case(shape=(10, 14, 16)):
    rng = np.random.default_rng(0)
    direction = rotation(0.5, (0, 2)) @ rotation(0.3, (1, 2))
    img = Volume(rng.normal(size=shape).astype(np.float32), (2.0, 0.8, 0.6), (5.0, -7.0, 12.0), direction)
    lab = np.zeros(shape, np.uint8)
    lab[3:6, 4:9, 5:12] = 1
    lab[0] = 3  # ignore label: never foreground
    return img, img.with_array(lab)


def _same_world_values(original: Volume, cropped: Volume, start) -> None:
    """Every cropped voxel's world point maps back to the source voxel holding the same value."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in cropped.shape], indexing="ij"), -1).reshape(-1, 3)
    src = original.world_to_index(cropped.index_to_world(idx))
    assert np.allclose(src, idx + np.asarray(start), atol=1e-3)
    rounded = np.rint(src).astype(int)
    assert np.array_equal(original.array[tuple(rounded.T)], cropped.array[tuple(idx.T)])


def test_parse_box_and_margin():
    assert parse_box("2:-2,:,5:", (10, 20, 30)) == ((2, 8), (0, 20), (5, 30))
    assert parse_box([slice(1, 3), (None, 4), (0, None)], (5, 5, 5)) == ((1, 3), (0, 4), (0, 5))
    assert parse_margin("2mm", (2.0, 0.8, 0.8)) == (1, 3, 3)
    assert parse_margin("1, 0.5mm, 200um", (2.0, 0.8, 0.1)) == (1, 1, 2)
    assert parse_margin(4, (1.0, 1.0)) == (4, 4)
    for bad in ("10:50,:", "a:b,:,:", "5,:,:", "8:2,:,:", "0:1:2,:,:"):
        with pytest.raises(ConfigError, match="box"):
            parse_box(bad, (10, 20, 30))
    for bad in ("-1", "2cm", "1.5", "1,2"):
        with pytest.raises(ConfigError, match="margin"):
            parse_margin(bad, (1.0, 1.0, 1.0))


def test_box_crop_keeps_world_positions_with_oblique_direction():
    img, lab = _oblique_case()
    out = crop_case([img], lab, box="2:-2,3:,:7")
    assert out.box == ((2, 8), (3, 14), (0, 7)) and out.source_shape == img.shape
    assert out.images[0].shape == (6, 11, 7) and out.images[0].direction == img.direction
    _same_world_values(img, out.images[0], (2, 3, 0))
    _same_world_values(lab, out.label, (2, 3, 0))


def test_to_label_excludes_ignore_and_adds_margin_in_mm():
    img, lab = _oblique_case()
    assert label_bbox(lab.array, ignore_label=3) == ((3, 6), (4, 9), (5, 12))
    assert label_bbox(lab.array) == ((0, 6), (0, 14), (0, 16))  # without ignore, 3 counts
    out = crop_case([img], lab, to_label=True, margin="2mm", ignore_label=3)
    # 2 mm = 1 voxel along z (2.0 mm), 3 along y (0.8 mm), 4 along x (0.6 mm; clipped at 16)
    assert out.box == ((2, 7), (1, 12), (1, 16))
    _same_world_values(img, out.images[0], (2, 1, 1))
    inside = crop_case([img], lab, box="4:,:,:", to_label=True, margin=5, ignore_label=3)
    assert inside.box == ((4, 10), (0, 14), (0, 16))  # label box inside the box, margin clipped to it


def test_refuses_empty_results():
    img, lab = _oblique_case()
    with pytest.raises(EmptyCropError, match="no foreground inside the box"):
        crop_case([img], lab, box="7:,:,:", to_label=True, ignore_label=3)
    with pytest.raises(EmptyCropError, match="no foreground"):
        crop_case([img], lab.with_array(np.full(lab.shape, 3, np.uint8)), to_label=True, ignore_label=3)
    with pytest.raises(ConfigError, match="selects no voxel"):
        crop_case([img], lab, box="20:30,:,:")
    with pytest.raises(ConfigError, match="only applies"):
        crop_case([img], lab, box=":,:,:", margin="1mm")
    with pytest.raises(ConfigError, match="give a box"):
        crop_case([img], lab)


def test_crop_dataset_sparse_cord(tmp_path):
    cord = sparse_cord(tmp_path / "cord")
    before = tree_digest(cord)
    out = crop_dataset(cord, tmp_path / "cropped", to_label=True, margin="0.1mm")
    record = json.loads((out / "crop.json").read_text())
    ds_src = read_dataset(cord)
    for case in read_dataset(out).training:
        src_lab = read_image(ds_src.case(case.case_id).label)
        lab = read_image(case.label)
        start, stop = record["cases"][case.case_id]["start"], record["cases"][case.case_id]["stop"]
        box = label_bbox(src_lab.array, ignore_label=3)
        assert start == [max(0, a - 2) for a, _ in box]
        assert stop == [min(n, b + 2) for (_, b), n in zip(box, src_lab.shape, strict=True)]
        _same_world_values(src_lab, lab, start)
        _same_world_values(read_image(ds_src.case(case.case_id).images[0]), read_image(case.images[0]), start)
    assert not [p for p in verify_dataset(out) if p.severity == "error"]
    assert read_dataset(out).spec.labels == read_dataset(cord).spec.labels
    assert tree_digest(cord) == before
    with pytest.raises(ConfigError, match="already holds a dataset"):
        crop_dataset(cord, out, box="1:-1,:,:")


def test_crop_dataset_box_and_empty_cases(tmp_path):
    img, lab = _oblique_case()
    empty = lab.with_array(np.zeros(lab.shape, np.uint8))
    data = write_volume_dataset(tmp_path / "d", [[img], [img]], [lab, empty], ignore=True)
    out = crop_dataset(data, tmp_path / "box", box="1:-1,:,:")
    assert [read_image(c.images[0]).shape for c in read_dataset(out).training] == [(8, 14, 16)] * 2
    source = read_image(read_dataset(data).training[0].images[0])  # oblique direction, through NIfTI files
    _same_world_values(source, read_image(read_dataset(out).training[0].images[0]), (1, 0, 0))
    with pytest.raises(EmptyCropError, match=r"c001.*skip"):
        crop_dataset(data, tmp_path / "err", to_label=True)
    assert not (tmp_path / "err" / "dataset.json").exists()
    skipped = crop_dataset(data, tmp_path / "skip", to_label=True, empty="skip")
    assert read_dataset(skipped).case_ids == ["c000"]
    assert json.loads((skipped / "crop.json").read_text())["skipped"] == ["c001"]
