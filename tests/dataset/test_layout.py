import json

import numpy as np
import pytest

from tests.conftest import write_tiny_dataset
from voxseg.dataset import DatasetSpec, read_dataset
from voxseg.errors import DatasetFormatError
from voxseg.io import read_image


def test_writer_produces_nnunet_v2_layout(tiny_dataset):
    dj = json.loads((tiny_dataset / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": "CT"}
    assert dj["labels"] == {"background": 0, "tumor": 1}
    assert dj["numTraining"] == 4
    assert dj["file_ending"] == ".nii.gz"
    assert sorted(p.name for p in (tiny_dataset / "imagesTr").iterdir())[0] == "case_000_0000.nii.gz"
    assert (tiny_dataset / "labelsTr" / "case_000.nii.gz").is_file()


def test_read_dataset_groups_channels(tmp_path):
    root = write_tiny_dataset(tmp_path / "ds", cases=3, n_channels=2)
    ds = read_dataset(root)
    assert ds.case_ids == ["case_000", "case_001", "case_002"]
    case = ds.case("case_001")
    assert [p.name for p in case.images] == ["case_001_0000.nii.gz", "case_001_0001.nii.gz"]
    assert case.label is not None and case.label.name == "case_001.nii.gz"
    assert ds.spec.num_channels == 2
    vol = read_image(case.label)
    assert vol.dtype == np.uint8


def test_spec_roundtrip_keeps_unknown_keys_and_ignore():
    data = {
        "channel_names": {"0": "MRI"},
        "labels": {"background": 0, "wm": 1, "gm": 2, "ignore": 3},
        "numTraining": 2,
        "file_ending": ".nii.gz",
        "reference": "x",
    }
    spec = DatasetSpec.from_json(data)
    assert spec.ignore_label == 3
    assert spec.to_json()["reference"] == "x"
    assert DatasetSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    "data, match",
    [
        ([], "JSON object"),
        ({"labels": {"background": 0}, "file_ending": ".nii.gz"}, "channel_names"),
        ({"channel_names": {"0": "CT"}, "labels": {"background": 0}, "file_ending": "nii.gz"}, "dot"),
        ({"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1.5}, "file_ending": ".nii"}, "integer"),
        ({"channel_names": {"0": "CT"}, "labels": {"background": 0, "r": [1, 2]}, "file_ending": ".nii"}, "region"),
    ],
)
def test_spec_rejects_bad_dataset_json(data, match):
    with pytest.raises(DatasetFormatError, match=match):
        DatasetSpec.from_json(data)


def test_read_dataset_errors(tmp_path):
    with pytest.raises(DatasetFormatError, match="not found"):
        read_dataset(tmp_path / "missing")
    (tmp_path / "imagesTr").mkdir()
    with pytest.raises(DatasetFormatError, match="MSD"):
        read_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetFormatError, match="not valid JSON"):
        read_dataset(tmp_path)
