"""DICOM: a single file (pydicom's test data) and series folders written with SimpleITK."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from tests.io.helpers import assert_one_line_error, digest, write_dicom_series
from voxseg.errors import InputImageError
from voxseg.io import read_channels, read_image

UID_A = "1.2.826.0.1.3680043.2.1125.1001"
UID_B = "1.2.826.0.1.3680043.2.1125.1002"
SPACING = (2.5, 0.8, 0.7)  # (z, y, x) mm
ORIGIN = (30.0, 20.0, -10.0)
ARRAY = (np.arange(5 * 6 * 7).reshape(5, 6, 7) * 7 - 1000).astype(np.int16)


def test_single_ct_file_is_a_2d_volume_in_hounsfield_units():
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    vol = read_image(path)
    assert vol.ndim == 2
    assert vol.shape == (ds.Rows, ds.Columns)
    np.testing.assert_allclose(vol.spacing, [float(v) for v in ds.PixelSpacing], rtol=1e-6)  # (row, col) = (y, x)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(vol.array, hu)
    x, y, _ = (float(v) for v in ds.ImagePositionPatient)
    np.testing.assert_allclose(vol.origin, (y, x), atol=1e-4)
    assert vol.direction == ((1.0, 0.0), (0.0, 1.0))


def test_single_mr_file():
    path = get_testdata_file("MR_small.dcm")
    ds = pydicom.dcmread(path)
    vol = read_image(path)
    assert vol.shape == (ds.Rows, ds.Columns)
    np.testing.assert_allclose(vol.spacing, [float(v) for v in ds.PixelSpacing], rtol=1e-6)
    np.testing.assert_array_equal(vol.array, ds.pixel_array)


@pytest.mark.parametrize("reverse_names", [False, True], ids=["sorted-names", "reversed-names"])
def test_series_folder_reads_as_3d(tmp_path, reverse_names):
    write_dicom_series(
        tmp_path / "ct", ARRAY, spacing=SPACING, origin=ORIGIN, series_uid=UID_A, reverse_names=reverse_names
    )
    vol = read_image(tmp_path / "ct")
    assert vol.shape == (5, 6, 7)
    assert vol.dtype == np.int16
    np.testing.assert_array_equal(vol.array, ARRAY)  # slices ordered by position, not by file name
    np.testing.assert_allclose(vol.spacing, SPACING, rtol=1e-5)
    np.testing.assert_allclose(vol.origin, ORIGIN, atol=1e-4)
    np.testing.assert_allclose(vol.direction_matrix(), np.eye(3), atol=1e-6)
    assert len(read_channels(tmp_path / "ct")) == 1


def test_series_files_are_not_modified(tmp_path):
    paths = write_dicom_series(tmp_path / "ct", ARRAY, spacing=SPACING, origin=ORIGIN, series_uid=UID_A)
    before = [digest(p) for p in paths]
    read_image(tmp_path / "ct")
    assert [digest(p) for p in paths] == before


def test_two_series_in_one_folder(tmp_path):
    folder = tmp_path / "mixed"
    write_dicom_series(folder, ARRAY, spacing=SPACING, origin=ORIGIN, series_uid=UID_A, prefix="a")
    write_dicom_series(folder, ARRAY[:3] + 1, spacing=(1.0, 0.8, 0.7), origin=ORIGIN, series_uid=UID_B, prefix="b")
    with pytest.raises(InputImageError) as info:
        read_image(folder)
    assert_one_line_error(info.value, folder, "2 DICOM series", UID_A, UID_B, "series_uid")

    a = read_image(folder, series_uid=UID_A)
    b = read_image(folder, series_uid=UID_B)
    np.testing.assert_array_equal(a.array, ARRAY)
    np.testing.assert_array_equal(b.array, ARRAY[:3] + 1)
    assert b.spacing[0] == pytest.approx(1.0)

    with pytest.raises(InputImageError) as info:
        read_image(folder, series_uid="1.2.3.4")
    assert_one_line_error(info.value, folder, "no DICOM series '1.2.3.4'", UID_A)


@pytest.mark.parametrize("content", [None, "notes.txt", "image.png"])
def test_folder_without_dicom(tmp_path, content):
    folder = tmp_path / "nothing"
    folder.mkdir()
    if content:
        (folder / content).write_bytes(b"not dicom")
    with pytest.raises(InputImageError) as info:
        read_image(folder)
    assert_one_line_error(info.value, folder, "no DICOM series")


def test_series_with_a_corrupt_slice_is_refused(tmp_path):
    """GDCM skips a slice it cannot parse; ITK then spreads the rest evenly (wrong spacing)."""
    paths = write_dicom_series(tmp_path / "ct", ARRAY, spacing=SPACING, origin=ORIGIN, series_uid=UID_A)
    paths[2].write_bytes(paths[2].read_bytes()[:-20])
    with pytest.raises(InputImageError) as info:
        read_image(tmp_path / "ct")
    assert_one_line_error(info.value, tmp_path / "ct", "not evenly spaced", "missing")


def test_series_with_a_missing_slice_is_refused(tmp_path):
    paths = write_dicom_series(tmp_path / "ct", ARRAY, spacing=SPACING, origin=ORIGIN, series_uid=UID_A)
    paths[3].unlink()
    with pytest.raises(InputImageError) as info:
        read_image(tmp_path / "ct")
    assert_one_line_error(info.value, tmp_path / "ct", "gaps from 2.5 to 5 mm")


def test_truncated_single_file(tmp_path):
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path)
