import json

import numpy as np
import pytest
import SimpleITK as sitk

from tests.conftest import write_tiny_dataset
from voxseg.dataset import convert_dataset, read_dataset, verify_dataset
from voxseg.errors import DatasetFormatError
from voxseg.io import read_image


def _write_msd_task(root, n=3):
    """A tiny MSD task: 4D two-channel NIfTI images (written with SimpleITK directly)."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "imagesTs").mkdir()
    rng = np.random.default_rng(0)
    training = []
    for i in range(n):
        chans = [sitk.GetImageFromArray(rng.normal(size=(6, 8, 10)).astype(np.float32) + 10 * c) for c in range(2)]
        for c in chans:
            c.SetSpacing((0.9, 0.9, 3.0))
            c.SetOrigin((1.0, 2.0, 3.0))
        img4 = sitk.JoinSeries(chans)
        sitk.WriteImage(img4, str(root / "imagesTr" / f"BRATS_{i:03d}.nii.gz"))
        lab = sitk.GetImageFromArray((rng.random((6, 8, 10)) > 0.7).astype(np.uint8))
        lab.SetSpacing((0.9, 0.9, 3.0))
        lab.SetOrigin((1.0, 2.0, 3.0))
        sitk.WriteImage(lab, str(root / "labelsTr" / f"BRATS_{i:03d}.nii.gz"))
        training.append({"image": f"./imagesTr/BRATS_{i:03d}.nii.gz", "label": f"./labelsTr/BRATS_{i:03d}.nii.gz"})
    sitk.WriteImage(sitk.JoinSeries([chans[1], chans[0]]), str(root / "imagesTs" / "BRATS_900.nii.gz"))
    (root / "imagesTr" / "._BRATS_000.nii.gz").write_bytes(b"macos junk")
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "name": "BRATS",
                "modality": {"0": "FLAIR", "1": "T1w"},
                "labels": {"0": "background", "1": "edema"},
                "numTraining": n,
                "training": training,
                "test": ["./imagesTs/BRATS_900.nii.gz"],
            }
        )
    )
    return root


def test_import_msd_splits_channels_and_keeps_geometry(tmp_path):
    src = _write_msd_task(tmp_path / "Task01_BrainTumour")
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    out = convert_dataset(src, tmp_path / "Dataset001_BrainTumour")
    ds = read_dataset(out)
    assert ds.spec.channel_names == {0: "FLAIR", 1: "T1w"}
    assert ds.spec.labels == {"background": 0, "edema": 1}
    assert ds.case_ids == ["BRATS_000", "BRATS_001", "BRATS_002"]
    assert [c.case_id for c in ds.test] == ["BRATS_900"]
    ch1 = read_image(ds.case("BRATS_001").images[1])
    assert ch1.shape == (6, 8, 10)
    assert ch1.spacing == pytest.approx((3.0, 0.9, 0.9))
    assert ch1.origin == pytest.approx((3.0, 2.0, 1.0))
    assert ch1.array.mean() > 5  # channel 1 (offset +10), not channel 0
    assert [p for p in verify_dataset(out) if p.severity == "error"] == []
    assert before == {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}  # source untouched


def test_convert_nnunet_changes_file_ending(tmp_path):
    src = write_tiny_dataset(tmp_path / "src", cases=2)
    out = convert_dataset(src, tmp_path / "out", file_ending=".nrrd")
    ds = read_dataset(out)
    assert ds.spec.file_ending == ".nrrd"
    assert ds.case("case_000").images[0].name == "case_000_0000.nrrd"
    a = read_image(src / "imagesTr" / "case_001_0000.nii.gz")
    b = read_image(out / "imagesTr" / "case_001_0000.nrrd")
    assert np.array_equal(a.array, b.array) and a.same_geometry(b)


def test_convert_refuses_bad_targets(tmp_path):
    src = write_tiny_dataset(tmp_path / "src", cases=2)
    with pytest.raises(DatasetFormatError, match="differ from the source"):
        convert_dataset(src, src)
    with pytest.raises(DatasetFormatError, match="already holds"):
        convert_dataset(src, write_tiny_dataset(tmp_path / "other", cases=2))
    (tmp_path / "weird").mkdir()
    (tmp_path / "weird" / "dataset.json").write_text("{}")
    with pytest.raises(DatasetFormatError, match="neither"):
        convert_dataset(tmp_path / "weird", tmp_path / "o2")
