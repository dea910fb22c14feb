"""Bad inputs and outputs: every failure is a one-line InputImageError naming the file."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import tifffile

from tests.io.helpers import SPACING_3D, assert_one_line_error, oblique_direction_3d, random_array
from voxseg.errors import InputImageError, VoxsegError
from voxseg.io import Volume, read_channels, read_image, write_image

# -- missing, empty, truncated, corrupt ------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.nii.gz"
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path, "not found")
    assert info.value.path == path
    assert isinstance(info.value, VoxsegError)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".tif", ".png", ".dcm"])
def test_empty_file(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.touch()
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path, "empty")


@pytest.fixture
def float_volume() -> Volume:
    return Volume(random_array(np.float32, (8, 16, 16)), SPACING_3D)


def test_truncated_nii_gz(tmp_path, float_volume):
    good = write_image(float_volume, tmp_path / "good.nii.gz").read_bytes()
    path = tmp_path / "half.nii.gz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path, "truncated", "incomplete")


def test_truncated_nii(tmp_path, float_volume):
    good = write_image(float_volume, tmp_path / "good.nii").read_bytes()
    path = tmp_path / "half.nii"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path, "truncated NIfTI", f"promises {len(good)}")


@pytest.mark.parametrize("cut", [1, 200])
def test_nii_without_data_or_complete_header(tmp_path, float_volume, cut):
    good = write_image(float_volume, tmp_path / "good.nii").read_bytes()
    path = tmp_path / "cut.nii"
    path.write_bytes(good[: len(good) - cut] if cut == 1 else good[:cut])
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path)


def test_truncated_nii_gz_with_valid_gzip_stream(tmp_path, float_volume):
    """A complete gzip stream of an incomplete NIfTI (e.g. re-compressed after a bad copy)."""
    raw = gzip.decompress(write_image(float_volume, tmp_path / "good.nii.gz").read_bytes())
    path = tmp_path / "short.nii.gz"
    path.write_bytes(gzip.compress(raw[: len(raw) - 100]))
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path, "truncated NIfTI")


def test_gzip_with_a_corrupted_byte_in_the_middle(tmp_path, float_volume):
    data = bytearray(write_image(float_volume, tmp_path / "good.nii.gz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "corrupt.nii.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path, "gzip")


def test_uncompressed_nifti_named_nii_gz(tmp_path, float_volume):
    path = tmp_path / "plain.nii.gz"
    path.write_bytes(write_image(float_volume, tmp_path / "plain.nii").read_bytes())
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path, "not a gzip file", "rename")


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".png", ".jpg", ".tif", ".mha", ".nrrd", ".dcm"])
def test_random_bytes(tmp_path, suffix):
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path)


@pytest.mark.parametrize(("suffix", "compress"), [(".mha", True), (".mha", False), (".nrrd", True), (".nrrd", False)])
def test_truncated_itk_formats(tmp_path, float_volume, suffix, compress):
    good = write_image(float_volume, tmp_path / f"good{suffix}", compress=compress).read_bytes()
    path = tmp_path / f"half{suffix}"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path, "cannot read")


@pytest.mark.parametrize(("suffix", "data_name"), [(".mhd", "img.zraw"), (".nhdr", "img.raw.gz")])
def test_truncated_data_file_of_detached_header(tmp_path, float_volume, suffix, data_name):
    path = write_image(float_volume, tmp_path / f"img{suffix}")
    data = tmp_path / data_name
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path, "cannot read")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"imagej": True, "metadata": {"axes": "ZYX"}},
        {"imagej": True, "metadata": {"axes": "ZYX"}, "compression": "zlib"},
        {"photometric": "minisblack"},
        {"ome": True, "metadata": {"axes": "ZYX"}},
    ],
    ids=["imagej", "imagej-zlib", "shaped", "ome"],
)
def test_truncated_tiff_is_refused_not_read_as_one_plane(tmp_path, kwargs):
    """tifffile reads what is left of a cut stack (often just the first plane) with a log line."""
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, random_array(np.float32, (8, 16, 16)), **kwargs)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path)


def test_truncated_png(tmp_path):
    good = write_image(Volume(random_array(np.uint8, (64, 64))), tmp_path / "good.png").read_bytes()
    path = tmp_path / "half.png"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path, "truncated")


# -- channels, non-finite values, shapes and types -------------------------------------------


def _write_4d_nifti(path: Path, channels: list[np.ndarray]) -> None:
    image = sitk.JoinSeries([sitk.GetImageFromArray(c) for c in channels])
    direction = np.eye(4)
    direction[:3, :3] = oblique_direction_3d()
    image.SetDirection(tuple(direction.ravel()))
    image.SetSpacing((0.5, 0.6, 2.0, 1.0))
    image.SetOrigin((1.0, 2.0, 3.0, 0.0))
    sitk.WriteImage(image, str(path))


def test_4d_nifti_is_refused_by_read_image_and_split_by_read_channels(tmp_path):
    base = random_array(np.float32, (4, 5, 6))
    channels = [base * (k + 1) for k in range(3)]
    path = tmp_path / "four.nii.gz"
    _write_4d_nifti(path, channels)
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path, "3 channels", "read_channels")

    volumes = read_channels(path)
    assert len(volumes) == 3
    for vol, expected in zip(volumes, channels, strict=True):
        np.testing.assert_array_equal(vol.array, expected)
        np.testing.assert_allclose(vol.spacing, (2.0, 0.6, 0.5), rtol=1e-6)
        np.testing.assert_allclose(vol.origin, (3.0, 2.0, 1.0), atol=1e-5)
        np.testing.assert_allclose(vol.direction_matrix(), oblique_direction_3d()[::-1, ::-1], atol=1e-5)


def _with_nonfinite(shape=(4, 5, 6)) -> np.ndarray:
    array = random_array(np.float32, shape)
    array[0, 0, 1] = np.nan
    array[1, 2, 3] = -np.inf
    array[-1, -1, -1] = np.inf
    return array


NONFINITE_FORMATS = [".nii.gz", ".nii", ".mha", ".nrrd", ".tif"]


@pytest.mark.parametrize("suffix", NONFINITE_FORMATS)
def test_nonfinite_voxels_warn_by_default_and_are_kept(tmp_path, caplog, suffix):
    array = _with_nonfinite()
    path = write_image(Volume(array, SPACING_3D, direction=oblique_direction_3d()), tmp_path / f"nan{suffix}")
    with caplog.at_level(logging.WARNING, logger="voxseg.io"):
        vol = read_image(path)
    warnings = [r for r in caplog.records if "NaN/Inf" in r.getMessage()]
    assert len(warnings) == 1
    assert str(path) in warnings[0].getMessage() and "3 NaN/Inf voxels of 120" in warnings[0].getMessage()
    # the values are read as stored, at their places (niftilib alone would turn them into 0)
    np.testing.assert_array_equal(vol.array, array)


@pytest.mark.parametrize("suffix", NONFINITE_FORMATS)
def test_nonfinite_voxels_raise_when_asked(tmp_path, suffix):
    path = write_image(Volume(_with_nonfinite()), tmp_path / f"nan{suffix}")
    with pytest.raises(InputImageError) as info:
        read_image(path, nonfinite="error")
    assert_one_line_error(info.value, path, "3 NaN/Inf voxels")


def test_nonfinite_allow_does_not_warn(tmp_path, caplog):
    path = write_image(Volume(_with_nonfinite()), tmp_path / "nan.nii.gz")
    with caplog.at_level(logging.WARNING, logger="voxseg.io"):
        vol = read_image(path, nonfinite="allow")
    assert not [r for r in caplog.records if "NaN" in r.getMessage()]
    assert np.isnan(vol.array[0, 0, 1]) and vol.array[1, 2, 3] == -np.inf


def test_nonfinite_voxels_of_a_4d_float64_nifti_go_back_to_their_channel(tmp_path):
    channels = [random_array(np.float64, (3, 4, 5), seed=k) for k in range(3)]
    channels[2][1, 2, 3] = np.nan
    channels[1][0, 0, 0] = np.inf
    path = tmp_path / "four.nii"
    _write_4d_nifti(path, channels)
    volumes = read_channels(path, nonfinite="allow")
    for vol, expected in zip(volumes, channels, strict=True):
        np.testing.assert_array_equal(vol.array, expected)


def test_zero_size_axis_in_header(tmp_path):
    path = tmp_path / "flat.mha"
    path.write_bytes(
        b"ObjectType = Image\nNDims = 3\nDimSize = 4 4 0\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n"
    )
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path, "zero-size axis")


@pytest.mark.parametrize("suffix", [".nii.gz", ".tif", ".png"])
def test_zero_size_volume_is_not_written(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    with pytest.raises(InputImageError) as info:
        write_image(Volume(np.zeros((0, 4), np.uint8)), path)
    assert_one_line_error(info.value, path, "zero-size axis")
    assert list(tmp_path.iterdir()) == []


def test_complex_image_is_refused(tmp_path):
    path = tmp_path / "complex.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((3, 4, 5), np.complex64)), str(path))
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path, "complex")


@pytest.mark.parametrize("dtype", [np.complex64, object])
def test_unsupported_dtype_is_not_written(tmp_path, dtype):
    path = tmp_path / "x.nii.gz"
    with pytest.raises(InputImageError) as info:
        write_image(Volume(np.ones((3, 4), dtype)), path)
    assert_one_line_error(info.value, path, "voxel type")
    assert not path.exists()


def test_tiff_with_a_time_axis_is_refused(tmp_path):
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, np.zeros((2, 3, 4, 5), np.uint8), imagej=True, metadata={"axes": "TZYX"})
    with pytest.raises(InputImageError) as info:
        read_channels(path)
    assert_one_line_error(info.value, path, "axes")


# -- refused writes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "array", "fragments"),
    [
        (".png", np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4), ["float32", "rescale", ".tif"]),
        (".png", np.arange(-6, 6, dtype=np.int16).reshape(3, 4), ["int16", "8/16-bit unsigned"]),
        (".jpg", np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000, ["uint16", "8-bit"]),
        (".png", np.zeros((2, 3, 4), np.uint8), ["2D images", "(2, 3, 4)", ".nii.gz"]),
        (".jpg", np.zeros((2, 3, 4), np.uint8), ["2D images"]),
    ],
    ids=["float-png", "negative-png", "uint16-jpg", "3d-png", "3d-jpg"],
)
def test_data_the_format_cannot_hold_is_refused_naming_the_target(tmp_path, suffix, array, fragments):
    path = tmp_path / f"out{suffix}"
    with pytest.raises(InputImageError) as info:
        write_image(Volume(array), path)
    assert_one_line_error(info.value, path, *fragments)
    assert info.value.path == path  # not the temporary file
    assert list(tmp_path.iterdir()) == []  # neither image, sidecar nor temporary file


def test_write_to_a_folder(tmp_path):
    folder = tmp_path / "out.nii.gz"
    folder.mkdir()
    with pytest.raises(InputImageError) as info:
        write_image(Volume(np.zeros((3, 4))), folder)
    assert_one_line_error(info.value, folder, "folder")


@pytest.mark.parametrize("relative", ["file.txt/x.nii.gz", "file.txt/sub/x.nii.gz", "file.txt/x.mhd", "file.txt/x.png"])
def test_write_below_a_regular_file(tmp_path, relative):
    """Root ignores chmod, so an unwritable folder is simulated by a parent that is a file."""
    (tmp_path / "file.txt").write_text("not a folder")
    path = tmp_path / relative
    with pytest.raises(InputImageError) as info:
        write_image(Volume(np.zeros((3, 4), np.uint8)), path)
    assert_one_line_error(info.value, path, "file.txt is a file")
    assert (tmp_path / "file.txt").read_text() == "not a folder"


def test_write_creates_missing_folders(tmp_path):
    path = write_image(Volume(np.zeros((3, 4), np.uint8)), tmp_path / "a" / "b" / "x.nii.gz")
    assert read_image(path).shape == (3, 4)


@pytest.mark.parametrize("name", ["image.xyz", "image", "image.gz"])
def test_unknown_suffix(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"data")
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path, "unsupported file type", ".nii.gz")
    with pytest.raises(InputImageError) as info:
        write_image(Volume(np.zeros((3, 4))), tmp_path / f"new_{name}")
    assert_one_line_error(info.value, tmp_path / f"new_{name}", "cannot write", ".nii.gz")


# -- geometry sidecars -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "invalid geometry sidecar"),
        ('{"origin": [0, 0]}', "invalid geometry sidecar"),
        ('{"spacing": ["a", 1]}', "invalid geometry sidecar"),
        ('{"spacing": [1, 1, 1]}', "describes 3 axes but the image has 2"),
    ],
)
def test_bad_sidecar(tmp_path, content, fragment):
    image = write_image(Volume(np.zeros((3, 4), np.uint8)), tmp_path / "x.png")
    sidecar = tmp_path / "x.png.json"
    sidecar.write_text(content)
    with pytest.raises(InputImageError) as info:
        read_image(image)
    assert_one_line_error(info.value, sidecar, fragment)
