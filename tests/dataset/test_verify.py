import json
import shutil

import numpy as np

from tests.conftest import ORIGIN, SPACING, write_tiny_dataset
from voxseg.dataset import errors_only, verify_dataset
from voxseg.io import Volume, read_image, write_image


def _messages(problems):
    return [f"{p.path.name}: {p.message}" for p in problems]


def test_valid_dataset_has_no_problems(tiny_dataset):
    assert verify_dataset(tiny_dataset) == []


def test_empty_label_is_a_warning_unless_all_are_empty(tmp_path):
    ds = write_tiny_dataset(tmp_path / "a", empty=(1,))
    problems = verify_dataset(ds)
    assert [p.severity for p in problems] == ["warning"]
    assert "empty" in problems[0].message and problems[0].path.name == "case_001.nii.gz"
    ds2 = write_tiny_dataset(tmp_path / "b", cases=2, empty=(0, 1))
    assert any("nothing to learn" in p.message for p in errors_only(verify_dataset(ds2)))


def test_broken_dataset_lists_every_problem(tiny_dataset):
    img_dir, lab_dir = tiny_dataset / "imagesTr", tiny_dataset / "labelsTr"
    (lab_dir / "case_001.nii.gz").unlink()  # missing label
    data = (img_dir / "case_002_0000.nii.gz").read_bytes()
    (img_dir / "case_002_0000.nii.gz").write_bytes(data[: len(data) // 2])  # truncated
    lab = read_image(lab_dir / "case_003.nii.gz")
    arr = lab.array.copy()
    arr[0, 0, 0] = 5
    write_image(lab.with_array(arr), lab_dir / "case_003.nii.gz")  # undeclared value
    img0 = read_image(img_dir / "case_000_0000.nii.gz")
    write_image(Volume(np.zeros((10, 20, 20), np.float32), SPACING, ORIGIN), img_dir / "case_004_0000.nii.gz")
    write_image(Volume(np.zeros((12, 20, 20), np.uint8), SPACING, ORIGIN), lab_dir / "case_004.nii.gz")  # shape
    write_image(Volume(img0.array + 1, SPACING, ORIGIN), img_dir / "case_005_0000.nii.gz")
    write_image(Volume(np.ones(img0.shape, np.uint8), (2.0, 0.5, 0.5), ORIGIN), lab_dir / "case_005.nii.gz")
    flipped = np.diag([1.0, -1.0, 1.0])
    write_image(Volume(img0.array + 2, SPACING, ORIGIN), img_dir / "case_006_0000.nii.gz")
    write_image(Volume(np.ones(img0.shape, np.uint8), SPACING, ORIGIN, flipped), lab_dir / "case_006.nii.gz")
    nan = img0.array + 3
    nan[1, 2, 3] = np.nan
    write_image(Volume(nan, SPACING, ORIGIN), img_dir / "case_007_0000.nii.gz")
    shutil.copy(lab_dir / "case_000.nii.gz", lab_dir / "case_007.nii.gz")
    shutil.copy(img_dir / "case_000_0000.nii.gz", img_dir / "case_008_0000.nii.gz")  # duplicate
    shutil.copy(lab_dir / "case_000.nii.gz", lab_dir / "case_008.nii.gz")
    shutil.copy(lab_dir / "case_000.nii.gz", lab_dir / "ghost.nii.gz")  # orphan label
    write_image(img0, img_dir / "case_009_0000.nrrd")  # wrong ending
    shutil.copy(img_dir / "case_000_0000.nii.gz", img_dir / "badname.nii.gz")

    problems = verify_dataset(tiny_dataset)
    text = "\n".join(_messages(problems))
    expected = [
        ("dataset.json", "numTraining is 4 but imagesTr holds 9 cases"),
        ("case_001.nii.gz", "label file missing"),
        ("case_002_0000.nii.gz", "truncated"),
        ("case_003.nii.gz", "label values [5] are not declared"),
        ("case_004.nii.gz", "shape (12, 20, 20) differs"),
        ("case_005.nii.gz", "spacing"),
        ("case_006.nii.gz", "orientation"),
        ("case_007_0000.nii.gz", "1 NaN/Inf voxels"),
        ("case_008_0000.nii.gz", "same image as case case_000"),
        ("ghost.nii.gz", "label has no image"),
        ("case_009_0000.nrrd", "file ending .nrrd differs"),
        ("badname.nii.gz", "CASE_XXXX"),
    ]
    for name, fragment in expected:
        assert any(p.path.name == name and fragment in p.message and p.severity == "error" for p in problems), (
            f"no error for {name} containing {fragment!r} in:\n{text}"
        )
    # every problem is one line and names a real path inside the dataset
    for p in problems:
        assert "\n" not in str(p)
        assert str(p.path).startswith(str(tiny_dataset))


def test_missing_and_undeclared_channels(tmp_path):
    root = write_tiny_dataset(tmp_path / "mc", cases=3, n_channels=2)
    (root / "imagesTr" / "case_001_0001.nii.gz").unlink()
    shutil.copy(root / "imagesTr" / "case_002_0000.nii.gz", root / "imagesTr" / "case_002_0002.nii.gz")
    msgs = _messages(errors_only(verify_dataset(root)))
    assert any("case_001_0001.nii.gz: missing channel 1 (MR1) of case case_001" in m for m in msgs), msgs
    assert any("case_002_0002.nii.gz: channel 2 is not declared" in m for m in msgs), msgs


def test_bad_dataset_json_declarations(tiny_dataset):
    dj = tiny_dataset / "dataset.json"
    data = json.loads(dj.read_text())
    data["labels"] = {"background": 0, "tumor": 2}
    data["channel_names"] = {"1": "CT"}
    dj.write_text(json.dumps(data))
    msgs = "\n".join(_messages(verify_dataset(tiny_dataset)))
    assert "consecutive" in msgs
    assert "channel_names keys must be 0..N-1" in msgs
    assert "not declared" in msgs  # labels with value 1 are now undeclared


def test_missing_dataset_json_is_one_problem(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    problems = verify_dataset(tmp_path)
    assert len(problems) == 1 and problems[0].path.name == "dataset.json"
    assert "MSD" in problems[0].message


def test_verify_never_modifies_inputs(tiny_dataset):
    before = {p: p.read_bytes() for p in tiny_dataset.rglob("*") if p.is_file()}
    verify_dataset(tiny_dataset)
    after = {p: p.read_bytes() for p in tiny_dataset.rglob("*") if p.is_file()}
    assert before == after
