"""``voxseg predict`` on DICOM: series folders made from pydicom's real CT/MR slices, NIfTI and DICOM SEG out."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from tests.bright_model import write_bright_work
from tests.dicom_helpers import MR, bright_block, write_series
from voxseg.cli.main import main
from voxseg.io import read_image

CT_SPACING = (2.5, 0.661468, 0.661468)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """Foreground where HU > -500: the helper's bright block (raw 1000 -> -24 HU) on -1024 HU."""
    root = tmp_path_factory.mktemp("dicom_model") / "work"
    return write_bright_work(root, level=-500.0, spacing=CT_SPACING, labels={"background": 0, "nodule": 1})


def expected_mask(n=5, rows=128, cols=128) -> np.ndarray:
    return np.stack([bright_block(rows, cols, k, n) for k in range(n)]).astype(np.uint8)


def predict(*args: str) -> int:
    return main(["predict", "--fast", *args])


def test_series_folder_is_one_case_with_a_file_output(model, tmp_path, capsys):
    write_series(tmp_path / "ct_series")
    out = tmp_path / "mask.nii.gz"
    assert predict("-i", str(tmp_path / "ct_series"), "-o", str(out), "-m", str(model)) == 0
    assert out.is_file()  # a file, not a folder
    pred, image = read_image(out), read_image(tmp_path / "ct_series")
    assert pred.shape == (5, 128, 128) and pred.same_geometry(image)
    np.testing.assert_array_equal(pred.array, expected_mask())
    assert "wrote" in capsys.readouterr().out


def test_folder_of_two_series_folders_gives_two_outputs(model, tmp_path):
    write_series(tmp_path / "study" / "s1")
    write_series(tmp_path / "study" / "s2", slices=4, suffix="")  # files without a suffix: found by the magic
    out = tmp_path / "out"
    assert predict("-i", str(tmp_path / "study"), "-o", str(out), "-m", str(model)) == 0
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["s1.nii.gz", "s2.nii.gz"]
    assert read_image(out / "s2.nii.gz").shape == (4, 128, 128)
    manifest = json.loads((out / "predictions.json").read_text())
    assert set(manifest["cases"]) == {"s1", "s2"} and manifest["skipped_series"] == []


def test_mixed_study_with_series_ct_skips_the_mr_and_the_scout(model, tmp_path, capsys):
    study = tmp_path / "study"
    write_series(study, prefix="ct", description="Chest 2.5mm")
    write_series(study, source=MR, prefix="mr", description="T1 axial")
    write_series(study, prefix="scout", slices=2, description="Scout")
    out = tmp_path / "out"
    assert predict("-i", str(study), "-o", str(out), "-m", str(model), "--series", "CT") == 0
    outputs = list(out.glob("*.nii.gz"))
    assert len(outputs) == 1 and "Chest" in outputs[0].name
    manifest = json.loads((out / "predictions.json").read_text())
    reasons = {s["description"]: s["reason"] for s in manifest["skipped_series"]}
    assert "not selected by --series 'CT'" in reasons["T1 axial"]
    assert "too few" in reasons["Scout"]
    captured = capsys.readouterr()
    assert "skipped DICOM series MR 'T1 axial'" in captured.err
    assert "1 predicted" in captured.out


def test_list_file_naming_a_series_folder(model, tmp_path):
    write_series(tmp_path / "series_a")
    (tmp_path / "cases.txt").write_text("# one series\nseries_a\n")
    out = tmp_path / "out"
    assert predict("-i", str(tmp_path / "cases.txt"), "-o", str(out), "-m", str(model)) == 0
    np.testing.assert_array_equal(read_image(out / "series_a.nii.gz").array, expected_mask())


def test_dcm_output_is_a_dicom_seg_matching_the_nifti(model, tmp_path):
    highdicom = pytest.importorskip("highdicom")
    files = write_series(tmp_path / "ct")
    nifti, seg_path = tmp_path / "mask.nii.gz", tmp_path / "mask.dcm"
    assert predict("-i", str(tmp_path / "ct"), "-o", str(nifti), "-m", str(model)) == 0
    assert predict("-i", str(tmp_path / "ct"), "-o", str(seg_path), "-m", str(model)) == 0

    seg = highdicom.seg.segread(seg_path)
    source = [pydicom.dcmread(f) for f in files]
    assert seg.SegmentationType == "BINARY"
    assert seg.FrameOfReferenceUID == source[0].FrameOfReferenceUID
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["nodule"]
    algo = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "bright-spheres" and "voxseg" in algo.AlgorithmSource
    series = seg.ReferencedSeriesSequence
    referenced = {r.ReferencedSOPInstanceUID for s in series for r in s.ReferencedInstanceSequence}
    assert referenced == {ds.SOPInstanceUID for ds in source}
    pixel = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    np.testing.assert_allclose([float(v) for v in pixel], [float(v) for v in source[0].PixelSpacing])
    frames = seg.PerFrameFunctionalGroupsSequence
    frame_z = sorted(float(f.PlanePositionSequence[0].ImagePositionPatient[2]) for f in frames)
    assert frame_z == sorted(float(ds.ImagePositionPatient[2]) for ds in source)

    back, ref = read_image(seg_path), read_image(nifti)
    assert back.same_geometry(ref)
    np.testing.assert_array_equal(back.array, ref.array)


def test_dicom_seg_batch_and_non_dicom_refused(model, tmp_path, capsys):
    pytest.importorskip("highdicom")
    write_series(tmp_path / "study" / "a")
    out = tmp_path / "out"
    assert predict("-i", str(tmp_path / "study"), "-o", str(out), "-m", str(model), "--output-format", "dicom-seg") == 0
    np.testing.assert_array_equal(read_image(out / "a.dcm").array, expected_mask())

    from voxseg.io import Volume, write_image

    write_image(Volume(np.zeros((5, 8, 8), np.float32), CT_SPACING), tmp_path / "img.nii.gz")
    capsys.readouterr()
    code = predict("-i", str(tmp_path / "img.nii.gz"), "-o", str(tmp_path / "x.dcm"), "-m", str(model))
    err = capsys.readouterr().err
    assert code == 1 and "DICOM SEG output needs a DICOM series input" in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    assert not (tmp_path / "x.dcm").exists()


def test_two_series_and_one_output_file_is_a_one_line_error(model, tmp_path, capsys):
    write_series(tmp_path / "study" / "a")
    write_series(tmp_path / "study" / "b")
    code = predict("-i", str(tmp_path / "study"), "-o", str(tmp_path / "mask.nii.gz"), "-m", str(model))
    err = capsys.readouterr().err
    assert code == 1 and "holds 2 cases" in err and "--series" in err
