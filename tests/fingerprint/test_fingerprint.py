"""compute_fingerprint on real files: shapes, crop, intensities, class counts, JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SPACING, write_tiny_dataset
from voxseg.dataset import DatasetSpec, DatasetWriter
from voxseg.errors import ConfigError, VoxsegError
from voxseg.fingerprint import Fingerprint, compute_fingerprint, modality_of
from voxseg.io import Volume


def test_tiny_dataset_fingerprint(tiny_dataset: Path) -> None:
    fp = compute_fingerprint(tiny_dataset, num_workers=2, seed=0)
    assert fp.dataset_name == "tiny"
    assert fp.data_ndim == 3
    assert fp.modalities == ("ct",)
    assert [c.case_id for c in fp.cases] == [f"case_{i:03d}" for i in range(4)]
    for case in fp.cases:
        assert case.shape == (12, 20, 20)
        assert case.spacing == pytest.approx(SPACING)
        assert case.shape_after_crop == (12, 20, 20)  # noise everywhere: nothing to crop
        assert sum(case.class_voxels.values()) == 12 * 20 * 20
        assert case.class_voxels[1] > 0
    # the tumour is +80 over a N(100, 10) background: foreground statistics see the bright voxels
    stats = fp.intensity[0]
    assert stats.count == sum(c.class_voxels[1] for c in fp.cases)  # all foreground sampled (few voxels)
    assert 160 < stats.mean < 200
    assert stats.percentile_00_5 < stats.median < stats.percentile_99_5
    assert stats.min <= stats.percentile_00_5 and stats.max >= stats.percentile_99_5


def test_json_round_trip_and_save(tiny_dataset: Path, tmp_path: Path) -> None:
    fp = compute_fingerprint(tiny_dataset, num_workers=1)
    assert Fingerprint.from_json(json.loads(json.dumps(fp.to_json()))) == fp
    path = fp.save(tmp_path / "fingerprint.json")
    assert Fingerprint.load(path) == fp
    with pytest.raises(ConfigError, match="schema_version"):
        Fingerprint.from_json({**fp.to_json(), "schema_version": 99})
    with pytest.raises(ConfigError, match="no fingerprint"):
        Fingerprint.load(tmp_path / "missing.json")


def test_deterministic_and_independent_of_workers(tmp_path: Path) -> None:
    root = write_tiny_dataset(tmp_path / "d", cases=3)
    a = compute_fingerprint(root, num_workers=1, seed=3, max_samples=60)
    b = compute_fingerprint(root, num_workers=3, seed=3, max_samples=60)
    assert a == b
    assert a.intensity[0].count <= 60


def _write(root: Path, arrays, labels, channels, spacing=(1.0, 1.0, 1.0)) -> Path:
    spec = DatasetSpec("made", channels, {"background": 0, "a": 1, "b": 2})
    with DatasetWriter(root, spec) as w:
        for i, (imgs, lab) in enumerate(zip(arrays, labels, strict=True)):
            w.add_case(f"c{i}", [Volume(a, spacing) for a in imgs], Volume(lab, spacing))
    return root


def test_crop_mask_channel_and_class_counts(tmp_path: Path) -> None:
    shape = (10, 16, 16)
    img = np.zeros(shape, np.float32)
    img[2:8, 4:12, 3:9] = np.linspace(1, 2, 6 * 8 * 6, dtype=np.float32).reshape(6, 8, 6)
    mask = (img > 0).astype(np.float32)
    lab = np.zeros(shape, np.uint8)
    lab[3:5, 5:7, 4:6] = 1
    lab[6, 6, 6] = 2
    root = _write(tmp_path / "d", [[img, mask]], [lab], {0: "SWI", 1: "mask"})
    fp = compute_fingerprint(root, num_workers=1)
    case = fp.cases[0]
    assert case.shape_after_crop == (6, 8, 6)
    assert case.crop_fraction == pytest.approx(6 * 8 * 6 / np.prod(shape))
    assert case.class_voxels == {0: int(np.prod(shape)) - 9, 1: 8, 2: 1}
    assert fp.class_voxels() == case.class_voxels
    assert fp.modalities == ("other", "mask")
    assert fp.intensity[1].min == 1.0 and fp.intensity[1].max == 1.0  # the mask is 1 on the foreground


def test_no_foreground_falls_back_to_nonzero_region(tmp_path: Path) -> None:
    img = np.zeros((8, 8, 8), np.float32)
    img[2:6, 2:6, 2:6] = 5.0
    root = _write(tmp_path / "d", [[img]], [np.zeros((8, 8, 8), np.uint8)], {0: "MRI"})
    fp = compute_fingerprint(root, num_workers=1)
    assert fp.intensity_source == "nonzero"
    assert fp.intensity[0].mean == 5.0 and fp.intensity[0].count == 64


def test_ignore_label_is_not_foreground(tmp_path: Path) -> None:
    img = np.arange(8 * 8 * 8, dtype=np.float32).reshape(8, 8, 8)
    lab = np.full((8, 8, 8), 3, np.uint8)  # mostly "ignore"
    lab[0, 0, :4] = 1
    spec = DatasetSpec("ign", {0: "MRI"}, {"background": 0, "a": 1, "b": 2, "ignore": 3})
    with DatasetWriter(tmp_path / "d", spec) as w:
        w.add_case("c0", [Volume(img, (1.0, 1.0, 1.0))], Volume(lab, (1.0, 1.0, 1.0)))
    fp = compute_fingerprint(tmp_path / "d", num_workers=1)
    assert fp.intensity[0].count == 4 and fp.intensity[0].max == 3.0
    assert fp.ignore_label == 3


def test_2d_dataset(tmp_path: Path) -> None:
    spec = DatasetSpec("flat", {0: "PET"}, {"background": 0, "tumor": 1}, ".png")
    rng = np.random.default_rng(0)
    with DatasetWriter(tmp_path / "d", spec) as w:
        for i in range(2):
            img = rng.integers(0, 200, (40, 30)).astype(np.uint8)
            lab = np.zeros((40, 30), np.uint8)
            lab[10:20, 5:15] = 1
            w.add_case(f"p{i}", [Volume(img, (4.0, 4.0))], Volume(lab, (4.0, 4.0)))
    fp = compute_fingerprint(tmp_path / "d", num_workers=2)
    assert fp.data_ndim == 2 and fp.cases[0].shape == (40, 30)
    assert fp.cases[0].class_voxels[1] == 100


def test_unreadable_case_is_reported_with_its_file(tiny_dataset: Path) -> None:
    bad = tiny_dataset / "imagesTr" / "case_001_0000.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(VoxsegError, match="case_001"):
        compute_fingerprint(tiny_dataset, num_workers=2)


def test_modality_names() -> None:
    assert modality_of("CT") == "ct" and modality_of(" ct ") == "ct"
    assert modality_of("Mask") == "mask"
    assert modality_of("T2") == "other" and modality_of("CTA") == "other"
