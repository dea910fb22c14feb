"""extract_slices: annotated 2D slices of a sparse 3D dataset, with their geometry and provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import write_tiny_dataset
from tests.dataset.sparse_helpers import cord_truth, rotation, sparse_cord, tree_digest, write_volume_dataset
from voxseg.dataset import make_splits, read_dataset, verify_dataset
from voxseg.dataset.slices import annotated_slices, extract_slices, slice_groups, slice_volume
from voxseg.errors import ConfigError, DatasetFormatError
from voxseg.io import Volume, read_image, write_image


@pytest.fixture
def cord(tmp_path):
    return sparse_cord(tmp_path / "cord")


def test_one_2d_case_per_annotated_slice(cord, tmp_path):
    before = tree_digest(cord)
    out = extract_slices(cord, tmp_path / "cord2d")
    ds = read_dataset(out)
    expected = []
    for i, case_id in enumerate(read_dataset(cord).case_ids):
        _, kept = cord_truth(i)
        expected += [f"{case_id}_z{k:03d}" for k in kept]
    assert ds.case_ids == sorted(expected)
    assert ds.spec.labels["ignore"] == 3 and ds.spec.file_ending == ".nii.gz"
    assert ds.spec.num_training == len(expected)
    record = json.loads((out / "slices.json").read_text())
    assert record["slices"]["mouse_spinal_cord_001_z" + expected[-1][-3:]]["case"] == "mouse_spinal_cord_001"
    assert record["cases"]["mouse_spinal_cord_000"]["shape"] == [24, 32, 32]
    assert not [p for p in verify_dataset(out) if p.severity == "error"]
    assert tree_digest(cord) == before  # the source is only read
    groups = slice_groups(out)
    assert groups[expected[0]] == "mouse_spinal_cord_000" and slice_groups(cord) == {}
    folds = make_splits(ds.case_ids, k=2, groups=groups)  # slices of one volume stay in one fold
    assert all(len({groups[c] for c in fold.val}) == 1 for fold in folds)


def test_slice_content_and_geometry_equal_the_source(cord, tmp_path):
    out = extract_slices(cord, tmp_path / "cord2d")
    src = read_dataset(cord).case("mouse_spinal_cord_000")
    img3, lab3 = read_image(src.images[0]), read_image(src.label)
    record = json.loads((out / "slices.json").read_text())
    for case in read_dataset(out).training:
        k = record["slices"][case.case_id]["index"]
        if record["slices"][case.case_id]["case"] != src.case_id:
            continue
        img2, lab2 = read_image(case.images[0]), read_image(case.label)
        assert img2.ndim == 2 and np.array_equal(img2.array, img3.array[k])
        assert np.array_equal(lab2.array, lab3.array[k]) and (lab2.array != 3).all()
        assert img2.spacing == pytest.approx(img3.spacing[1:])
        # every in-plane voxel sits where it sat in 3D (the z coordinate dropped)
        jj = np.array([[0, 0], [5, 7], [31, 31]])
        world3 = img3.index_to_world(np.c_[np.full(3, k), jj])
        assert np.allclose(img2.index_to_world(jj), world3[:, 1:], atol=1e-4)


def test_oblique_and_permuted_directions(tmp_path):
    rng = np.random.default_rng(3)
    shape = (6, 10, 12)
    arr = rng.normal(size=shape).astype(np.float32)
    lab = np.full(shape, 3, np.uint8)
    lab[:, 4] = rng.integers(0, 3, size=(6, 12))  # annotated: y slice 4 only (axis 1)
    flip = np.array([[0.0, 0, 1], [0, -1, 0], [1, 0, 0]])  # axes permuted and flipped
    vol = Volume(arr, (2.0, 0.5, 0.7), (10.0, -3.0, 4.0), flip)
    data = write_volume_dataset(tmp_path / "d", [[vol]], [vol.with_array(lab)], ignore=True)
    out = extract_slices(data, tmp_path / "s", axis=1)
    (case,) = read_dataset(out).training
    assert case.case_id == "c000_y004"
    img2 = read_image(case.images[0])
    assert np.array_equal(img2.array, arr[:, 4, :]) and img2.spacing == pytest.approx((2.0, 0.7))
    idx = np.array([[0, 0], [5, 11], [2, 3]])
    world3 = vol.index_to_world(np.c_[idx[:, 0], np.full(3, 4), idx[:, 1]])
    assert np.allclose(img2.index_to_world(idx), world3[:, [0, 2]], atol=1e-4)  # y (world row 1) dropped
    # an oblique in-plane rotation survives exactly for axial slices
    rot = Volume(arr, (2.0, 0.5, 0.7), (1.0, 2.0, 3.0), rotation(0.4))
    sl = slice_volume(rot, 0, 2)
    assert np.allclose(sl.index_to_world([[3, 4]]), rot.index_to_world([[2, 3, 4]])[:, 1:])


def test_all_slices_and_dense_multichannel_dataset(tmp_path):
    data = write_tiny_dataset(tmp_path / "tiny", cases=2, n_channels=2)
    lab = read_image(read_dataset(data).training[0].label).array
    out = extract_slices(data, tmp_path / "fg")
    ds = read_dataset(out)
    assert "ignore" not in ds.spec.labels and ds.spec.num_channels == 2
    first = [c for c in ds.case_ids if c.startswith("case_000_")]
    assert first == [f"case_000_z{k:03d}" for k in annotated_slices(lab, 0, None)]
    assert 0 < len(first) < lab.shape[0]  # slices without foreground left out
    c = ds.case(first[0])
    assert len(c.images) == 2
    everything = extract_slices(data, tmp_path / "all", only_annotated=False)
    assert len(read_dataset(everything).case_ids) == 2 * lab.shape[0]


def test_refusals(cord, tmp_path):
    out = extract_slices(cord, tmp_path / "a")
    with pytest.raises(ConfigError, match="already holds a dataset"):
        extract_slices(cord, out)
    with pytest.raises(ConfigError, match="outside the input"):
        extract_slices(cord, cord / "inside")
    with pytest.raises(ConfigError, match="must be 0, 1 or 2"):
        extract_slices(cord, tmp_path / "b", axis=3)
    with pytest.raises(ConfigError, match=r"differs from dataset\.json"):
        extract_slices(cord, tmp_path / "c", ignore_label=7)
    with pytest.raises(DatasetFormatError, match="needs a 3D dataset"):
        extract_slices(out, tmp_path / "d")  # already 2D
    empty = write_tiny_dataset(tmp_path / "empty", cases=1)
    blank = read_dataset(empty).training[0].label
    write_image(read_image(blank).with_array(np.zeros((12, 20, 20), np.uint8)), blank)
    with pytest.raises(ConfigError, match="nothing to extract"):
        extract_slices(empty, tmp_path / "e")
    assert not (tmp_path / "e" / "dataset.json").exists()
