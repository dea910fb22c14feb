"""merge_pseudo_labels: predictions as labels, annotated voxels kept, geometry checked."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.dataset.sparse_helpers import cord_truth, sparse_cord, tree_digest
from voxseg.dataset import read_dataset, verify_dataset
from voxseg.dataset.pseudo import merge_pseudo_labels
from voxseg.errors import ConfigError, DatasetFormatError, InputImageError
from voxseg.io import Volume, read_image, write_image


@pytest.fixture
def cord(tmp_path):
    return sparse_cord(tmp_path / "cord")


def _predict(cord, folder, make) -> None:
    """Write ``make(case_index, image_volume)`` as each case's prediction (a stand-in for a model)."""
    folder.mkdir()
    for i, case in enumerate(read_dataset(cord).training):
        img = read_image(case.images[0])
        write_image(img.with_array(make(i, img)), folder / f"{case.case_id}.nii.gz")


def test_merge_keeps_annotated_voxels(cord, tmp_path):
    before = tree_digest(cord)
    _predict(cord, tmp_path / "pred", lambda i, img: np.ones(img.shape, np.uint8))
    report = merge_pseudo_labels(cord, tmp_path / "pred", tmp_path / "pseudo")
    out = read_dataset(tmp_path / "pseudo")
    assert "ignore" not in out.spec.labels and out.case_ids == read_dataset(cord).case_ids
    for i, case in enumerate(read_dataset(cord).training):
        sparse = read_image(case.label).array
        merged = read_image(out.case(case.case_id).label)
        assert merged.same_geometry(read_image(case.label))
        annotated = sparse != 3
        assert np.array_equal(merged.array[annotated], sparse[annotated])
        assert (merged.array[~annotated] == 1).all()
        _, kept = cord_truth(i)
        n_slice = 32 * 32
        sources = report.cases[case.case_id]
        assert sources.manual == len(kept) * n_slice and sources.manual + sources.predicted == sparse.size
        assert sources.agreement == pytest.approx(np.mean(sparse[annotated] == 1))
        copied = out.case(case.case_id).images[0]
        assert copied.read_bytes() == case.images[0].read_bytes()
    saved = json.loads((tmp_path / "pseudo" / "pseudo_labels.json").read_text())
    assert saved["total"] == {"manual": report.manual, "predicted": report.predicted}
    assert not [p for p in verify_dataset(tmp_path / "pseudo") if p.severity == "error"]
    assert tree_digest(cord) == before


def test_perfect_predictions_agree_and_predictions_only(cord, tmp_path):
    _predict(cord, tmp_path / "pred", lambda i, img: cord_truth(i)[0].array)
    report = merge_pseudo_labels(cord, tmp_path / "pred", tmp_path / "pseudo")
    assert all(c.agreement == 1.0 for c in report.cases.values())
    case = read_dataset(tmp_path / "pseudo").training[0]
    assert np.array_equal(read_image(case.label).array, cord_truth(0)[0].array)
    only = merge_pseudo_labels(cord, tmp_path / "pred", tmp_path / "only", keep_annotated=False)
    assert all(c.manual == 0 for c in only.cases.values())
    first = sorted((tmp_path / "pred").iterdir())[0]
    first.rename(first.with_name(first.name.replace(".nii.gz", "_0000.nii.gz")))  # named after channel 0
    merge_pseudo_labels(cord, tmp_path / "pred", tmp_path / "channel_names")
    (tmp_path / "pred" / first.name).write_bytes(b"")
    with pytest.raises(DatasetFormatError, match="two predictions"):
        merge_pseudo_labels(cord, tmp_path / "pred", tmp_path / "twice")


def test_min_dice_leaves_out_poor_predictions(cord, tmp_path):
    def make(i, img):
        truth = cord_truth(i)[0].array
        return truth if i == 0 else np.where(truth == 2, 1, truth).astype(np.uint8)  # case 1: no grey matter

    _predict(cord, tmp_path / "pred", make)
    report = merge_pseudo_labels(cord, tmp_path / "pred", tmp_path / "best", min_dice=0.9)
    assert list(report.cases) == ["mouse_spinal_cord_000"] and list(report.dropped) == ["mouse_spinal_cord_001"]
    assert report.cases["mouse_spinal_cord_000"].dice == 1.0
    assert 0.3 < report.dropped["mouse_spinal_cord_001"].dice < 0.9
    assert read_dataset(tmp_path / "best").case_ids == ["mouse_spinal_cord_000"]
    saved = json.loads((tmp_path / "best" / "pseudo_labels.json").read_text())
    assert list(saved["dropped"]) == ["mouse_spinal_cord_001"]
    _predict(cord, tmp_path / "poor", lambda i, img: np.ones(img.shape, np.uint8))
    with pytest.raises(ConfigError, match="nothing written"):
        merge_pseudo_labels(cord, tmp_path / "poor", tmp_path / "none", min_dice=0.9)
    assert not (tmp_path / "none" / "dataset.json").exists()
    with pytest.raises(ConfigError, match="between 0 and 1"):
        merge_pseudo_labels(cord, tmp_path / "pred", tmp_path / "bad", min_dice=2)


def test_refuses_bad_predictions(cord, tmp_path):
    pred = tmp_path / "pred"
    _predict(cord, pred, lambda i, img: np.ones(img.shape, np.uint8))
    first = sorted(pred.iterdir())[0]
    first.unlink()
    with pytest.raises(DatasetFormatError, match="no prediction for case"):
        merge_pseudo_labels(cord, pred, tmp_path / "o1")
    assert not (tmp_path / "o1").exists()  # checked before anything is written
    img = read_image(read_dataset(cord).training[0].images[0])
    shifted = Volume(np.ones(img.shape, np.uint8), img.spacing, np.asarray(img.origin) + 1.0, img.direction)
    write_image(shifted, first)
    with pytest.raises(InputImageError, match="geometry differs"):
        merge_pseudo_labels(cord, pred, tmp_path / "o2")
    write_image(img.with_array(np.full(img.shape, 3, np.uint8)), first)  # the ignore value is no prediction
    with pytest.raises(InputImageError, match="not labels"):
        merge_pseudo_labels(cord, pred, tmp_path / "o3")
    write_image(img.with_array(np.full(img.shape, 0.4, np.float32)), first)
    with pytest.raises(InputImageError, match="probabilities"):
        merge_pseudo_labels(cord, pred, tmp_path / "o4")
    with pytest.raises(DatasetFormatError, match="predictions folder not found"):
        merge_pseudo_labels(cord, tmp_path / "nowhere", tmp_path / "o5")
