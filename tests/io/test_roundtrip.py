"""write_image -> read_image round trips for every writable format, dtype and dimensionality."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from tests.io.helpers import (
    ORIGIN_2D,
    ORIGIN_3D,
    SPACING_2D,
    SPACING_3D,
    oblique_direction_2d,
    oblique_direction_3d,
    random_array,
)
from voxseg.io import READ_SUFFIXES, WRITE_SUFFIXES, Volume, image_suffix, is_image_file, read_image, write_image

HEADER_FORMATS = [".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd"]
VOLUME_FORMATS = [*HEADER_FORMATS, ".tif"]  # hold 3D images
ALL_FORMATS = [*VOLUME_FORMATS, ".png", ".jpg"]
DTYPES = [np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64]
FORMAT_DTYPES = {".png": [np.uint8, np.uint16], ".jpg": [np.uint8]}  # what 8/16-bit formats hold


CASES = [
    pytest.param(suffix, ndim, dtype, id=f"{suffix}-{ndim}d-{np.dtype(dtype).name}")
    for suffix in ALL_FORMATS
    for ndim in (2, 3)
    if ndim == 2 or suffix in VOLUME_FORMATS
    for dtype in FORMAT_DTYPES.get(suffix, DTYPES)
]


def _volume(ndim: int, array: np.ndarray) -> Volume:
    if ndim == 3:
        return Volume(array, SPACING_3D, ORIGIN_3D, oblique_direction_3d())
    return Volume(array, SPACING_2D, ORIGIN_2D, oblique_direction_2d())


def _assert_same_geometry(read: Volume, written: Volume) -> None:
    np.testing.assert_allclose(read.spacing, written.spacing, rtol=1e-6)
    np.testing.assert_allclose(read.origin, written.origin, atol=1e-5)
    np.testing.assert_allclose(read.direction_matrix(), written.direction_matrix(), atol=1e-6)
    assert read.same_geometry(written)


@pytest.mark.parametrize(("suffix", "ndim", "dtype"), CASES)
def test_round_trip_keeps_array_and_geometry(tmp_path, suffix, ndim, dtype):
    shape = (5, 7, 9) if ndim == 3 else (7, 9)
    array = random_array(dtype, shape)
    if suffix == ".jpg":  # smooth content: JPEG is lossy, and worst on noise
        array = (np.add.outer(np.arange(shape[0]) * 9, np.arange(shape[1]) * 12) + 20).astype(np.uint8)
    vol = _volume(ndim, array)
    path = write_image(vol, tmp_path / f"img{suffix}")
    assert path == tmp_path / f"img{suffix}"

    back = read_image(path)
    assert back.shape == shape
    assert back.dtype == np.dtype(dtype)
    if suffix == ".jpg":
        assert np.abs(back.array.astype(int) - array).max() <= 8
    else:
        np.testing.assert_array_equal(back.array, array)
    _assert_same_geometry(back, vol)


@pytest.mark.parametrize("suffix", ALL_FORMATS)
def test_bool_is_written_as_uint8(tmp_path, suffix):
    array = random_array(bool, (6, 8))
    back = read_image(write_image(Volume(array, SPACING_2D), tmp_path / f"mask{suffix}"))
    assert back.dtype == np.uint8
    if suffix != ".jpg":
        np.testing.assert_array_equal(back.array, array.astype(np.uint8))


@pytest.mark.parametrize("suffix", VOLUME_FORMATS)
def test_float16_is_written_as_float32(tmp_path, suffix):
    array = random_array(np.float16, (3, 6, 8))
    back = read_image(write_image(Volume(array, SPACING_3D), tmp_path / f"half{suffix}"))
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back.array, array.astype(np.float32))


@pytest.mark.parametrize("suffix", HEADER_FORMATS)
@pytest.mark.parametrize("dtype", [np.int8, np.uint32, np.int64, np.uint64])
def test_other_integer_types_round_trip_in_header_formats(tmp_path, suffix, dtype):
    array = random_array(dtype, (3, 4, 5))
    back = read_image(write_image(Volume(array), tmp_path / f"img{suffix}"))
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.array, array)


@pytest.mark.parametrize("dtype", [np.int8, np.uint32, np.int64, np.uint64])
def test_other_integer_types_round_trip_in_tiff(tmp_path, dtype):
    array = random_array(dtype, (3, 4, 5))
    back = read_image(write_image(Volume(array), tmp_path / "img.tif"))
    assert back.dtype == np.dtype(dtype)
    assert back.dtype.type is np.dtype(dtype).type  # tifffile gives np.longlong for int64
    np.testing.assert_array_equal(back.array, array)


@pytest.mark.parametrize("dtype", [">i2", ">f4", np.longlong, np.ulonglong])
def test_non_native_dtypes_are_written_in_native_form(tmp_path, dtype):
    array = np.arange(24).reshape(2, 3, 4).astype(dtype)
    back = read_image(write_image(Volume(array), tmp_path / "img.nii.gz"))
    assert back.dtype.isnative
    assert back.dtype.type is np.dtype(np.dtype(dtype).str.replace(">", "<")).type
    np.testing.assert_array_equal(back.array, array)


def test_png_accepts_wider_integers_whose_values_fit(tmp_path):
    small = np.arange(12, dtype=np.int32).reshape(3, 4)
    assert read_image(write_image(Volume(small), tmp_path / "a.png")).dtype == np.uint8
    wide = small * 1000
    back = read_image(write_image(Volume(wide), tmp_path / "b.png"))
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back.array, wide)


@pytest.mark.parametrize("suffix", [".tiff", ".jpeg", ".ome.tif"])
def test_suffix_variants(tmp_path, suffix):
    array = np.full((6, 8), 100, np.uint8)
    array[2:4, 3:6] = 200
    vol = Volume(array, SPACING_2D, ORIGIN_2D)
    back = read_image(write_image(vol, tmp_path / f"img{suffix}"))
    assert back.shape == (6, 8)
    assert np.abs(back.array.astype(int) - array).max() <= (12 if suffix == ".jpeg" else 0)
    _assert_same_geometry(back, vol)


@pytest.mark.parametrize(
    ("suffix", "compress", "data_file"),
    [
        (".mhd", True, "img.zraw"),
        (".mhd", False, "img.raw"),
        (".nhdr", True, "img.raw.gz"),
        (".nhdr", False, "img.raw"),
    ],
)
def test_detached_header_formats_write_header_and_data_only(tmp_path, suffix, compress, data_file):
    array = random_array(np.int16, (3, 4, 5))
    write_image(Volume(array, SPACING_3D), tmp_path / f"img{suffix}", compress=compress)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"img{suffix}", data_file])
    assert data_file in (tmp_path / f"img{suffix}").read_text(errors="replace")
    np.testing.assert_array_equal(read_image(tmp_path / f"img{suffix}").array, array)


@pytest.mark.parametrize("suffix", [".nii.gz", ".mhd", ".tif", ".png"])
def test_overwrite_replaces_the_old_image(tmp_path, suffix):
    path = tmp_path / f"img{suffix}"
    write_image(Volume(np.zeros((4, 4), np.uint8)), path)
    new = Volume(np.full((6, 5), 7, np.uint8), SPACING_2D, ORIGIN_2D)
    write_image(new, path)
    back = read_image(path)
    np.testing.assert_array_equal(back.array, new.array)
    _assert_same_geometry(back, new)


def test_compression_flag_changes_size_not_content(tmp_path):
    array = np.zeros((20, 30, 40), np.int16)
    array[5:10] = 3
    small = write_image(Volume(array), tmp_path / "c.nrrd", compress=True)
    large = write_image(Volume(array), tmp_path / "u.nrrd", compress=False)
    assert small.stat().st_size < large.stat().st_size
    np.testing.assert_array_equal(read_image(small).array, read_image(large).array)


@pytest.mark.parametrize("suffix", [".tif", ".png", ".jpg"])
def test_sidecar_holds_geometry_in_array_order(tmp_path, suffix):
    vol = Volume(np.full((6, 8), 9, np.uint8), SPACING_2D, ORIGIN_2D, oblique_direction_2d())
    write_image(vol, tmp_path / f"img{suffix}")
    sidecar = json.loads((tmp_path / f"img{suffix}.json").read_text())
    assert sidecar["spacing"] == list(SPACING_2D)
    assert sidecar["origin"] == list(ORIGIN_2D)
    np.testing.assert_allclose(sidecar["direction"], oblique_direction_2d())
    assert sidecar["axis_order"] == "array (y, x)"
    assert sidecar["units"] == "mm"


def test_header_formats_get_no_sidecar(tmp_path):
    write_image(Volume(np.zeros((3, 4), np.uint8)), tmp_path / "img.nii.gz")
    assert [p.name for p in tmp_path.iterdir()] == ["img.nii.gz"]


def test_hand_written_sidecar_without_direction(tmp_path):
    """A user can add ``x.json`` (or ``x.tif.json``) to give a TIFF/PNG its spacing."""
    write_image(Volume(np.zeros((3, 4, 5), np.uint16)), tmp_path / "stack.tif")
    (tmp_path / "stack.tif.json").unlink()
    (tmp_path / "stack.json").write_text(json.dumps({"spacing": [2.0, 0.5, 0.25], "origin": [1, 2, 3]}))
    vol = read_image(tmp_path / "stack.tif")
    assert vol.spacing == (2.0, 0.5, 0.25)
    assert vol.origin == (1.0, 2.0, 3.0)
    assert vol.direction == Volume(np.zeros((1, 1, 1))).direction


def test_nii_gz_next_to_a_nii_of_the_same_name_reads_its_own_data(tmp_path):
    """niftilib takes the voxel data of x.nii.gz from x.nii when both exist; voxseg must not."""
    a = np.full((3, 4, 5), 7, np.uint8)
    b = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    write_image(Volume(a), tmp_path / "img.nii")
    write_image(Volume(b), tmp_path / "img.nii.gz")
    np.testing.assert_array_equal(read_image(tmp_path / "img.nii.gz").array, b)
    np.testing.assert_array_equal(read_image(tmp_path / "img.nii").array, a)
    # different shapes: the header comes from one file, so the mix-up would also zero-fill
    write_image(Volume(np.ones((2, 4, 5), np.uint8)), tmp_path / "img.nii")
    np.testing.assert_array_equal(read_image(tmp_path / "img.nii.gz").array, b)


def test_nifti_with_scaling_is_not_mistaken_for_truncated(tmp_path):
    """An int16 NIfTI with scl_slope/scl_inter is read as float by ITK (4 bytes a voxel where the
    file has 2); the completeness check must use the header's own bitpix."""
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    path = tmp_path / "scaled.nii"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    raw = bytearray(path.read_bytes())
    raw[112:120] = np.array([2.0, -1024.0], "<f4").tobytes()  # scl_slope, scl_inter
    path.write_bytes(bytes(raw))
    vol = read_image(path)
    np.testing.assert_array_equal(vol.array, array * 2.0 - 1024.0)


def test_suffix_helpers(tmp_path):
    assert image_suffix("a/B.NII.GZ") == ".nii.gz"
    assert image_suffix("x.ome.tif") == ".ome.tif"
    assert image_suffix("x.tar.gz") == ".gz"
    assert image_suffix("noext") == ""
    assert set(WRITE_SUFFIXES) <= set(READ_SUFFIXES)
    assert ".dcm" in READ_SUFFIXES and ".dcm" not in WRITE_SUFFIXES
    write_image(Volume(np.zeros((2, 2), np.uint8)), tmp_path / "a.png")
    (tmp_path / ".hidden.png").write_bytes((tmp_path / "a.png").read_bytes())
    (tmp_path / "notes.txt").write_text("x")
    assert is_image_file(tmp_path / "a.png")
    assert not is_image_file(tmp_path / "a.png.json")
    assert not is_image_file(tmp_path / ".hidden.png")
    assert not is_image_file(tmp_path / "notes.txt")
    assert not is_image_file(tmp_path / "missing.nii.gz")
