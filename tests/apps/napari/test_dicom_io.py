"""The napari reader opens DICOM: a series folder, a zipped series (in a subfolder) and a DICOM SEG."""

from __future__ import annotations

import numpy as np
import pytest

from tests.dicom_helpers import bright_block, write_series, zip_folder
from voxseg.apps.napari._io import napari_get_reader, read_layers
from voxseg.io import read_image


def test_reader_claims_dicom_folders_zips_and_dcm_files(tmp_path):
    write_series(tmp_path / "ct", slices=3)
    (tmp_path / "empty").mkdir()
    assert napari_get_reader(str(tmp_path / "ct")) is not None
    assert napari_get_reader(str(tmp_path / "empty")) is None  # a folder without DICOM is not ours
    assert napari_get_reader("series.zip") is not None and napari_get_reader("a.dcm") is not None


def test_series_folder_and_zip_open_as_one_image_layer_with_the_series_geometry(tmp_path):
    write_series(tmp_path / "ct", slices=4)
    (tmp_path / "ct.zip").write_bytes(zip_folder(tmp_path / "ct", inside="DICOM/series1"))
    expected = read_image(tmp_path / "ct")
    for path in (tmp_path / "ct", tmp_path / "ct.zip"):
        [(data, kwargs, kind)] = napari_get_reader(str(path))(str(path))
        assert kind == "image" and kwargs["name"] == "ct"
        np.testing.assert_array_equal(data, expected.array)
        np.testing.assert_allclose(kwargs["scale"], expected.spacing, rtol=1e-6)
        np.testing.assert_allclose(kwargs["translate"], expected.origin, atol=1e-4)


def test_dicom_seg_opens_as_labels(tmp_path):
    pytest.importorskip("highdicom")
    from voxseg.io.dicom_seg import SegAlgorithm, write_dicom_seg

    files = write_series(tmp_path / "ct", slices=4)
    image = read_image(tmp_path / "ct")
    mask = np.stack([bright_block(128, 128, k, 4) for k in range(4)]).astype(np.uint8)
    algorithm = SegAlgorithm("test", "1", "voxseg")
    write_dicom_seg(image.with_array(mask), tmp_path / "result.dcm", source_files=files,
                    label_names={1: "nodule"}, algorithm=algorithm)  # fmt: skip
    [(data, _kwargs, kind)] = read_layers(tmp_path / "result.dcm")
    assert kind == "labels"
    np.testing.assert_array_equal(data, mask)
