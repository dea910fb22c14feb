"""TIFF written by other tools: ImageJ and OME metadata, resolution tags, channels."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tifffile

from tests.io.helpers import assert_one_line_error, random_array
from voxseg.errors import InputImageError
from voxseg.io import Volume, read_channels, read_image, write_image

STACK = random_array(np.uint16, (4, 6, 8))
OME_SIZES = {"PhysicalSizeZ": 2.0, "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.5}  # um


@pytest.mark.parametrize("unit", ["um", "micron", "\\u00B5m"])
def test_imagej_spacing_in_microns_becomes_mm(tmp_path, unit):
    """ImageJ stores x/y as pixels per unit (resolution tags) and z as ``spacing``; the ImageJ
    description is ASCII, so Fiji writes micro as the text ``\\u00B5m``."""
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path, STACK, imagej=True, resolution=(1 / 0.5, 1 / 0.25), metadata={"unit": unit, "spacing": 2.0, "axes": "ZYX"}
    )
    vol = read_image(path)
    np.testing.assert_array_equal(vol.array, STACK)
    np.testing.assert_allclose(vol.spacing, (0.002, 0.00025, 0.0005), rtol=1e-6)  # (z, y, x) in mm


def test_imagej_2d_spacing(tmp_path):
    path = tmp_path / "ij2d.tif"
    tifffile.imwrite(path, STACK[0], imagej=True, resolution=(1 / 0.4, 1 / 0.4), metadata={"unit": "nm"})
    np.testing.assert_allclose(read_image(path).spacing, (4e-7, 4e-7), rtol=1e-6)


def test_resolution_in_centimetres(tmp_path):
    path = tmp_path / "cm.tif"
    tifffile.imwrite(path, STACK[0], resolution=(100.0, 50.0), resolutionunit="CENTIMETER")  # px per cm
    np.testing.assert_allclose(read_image(path).spacing, (0.2, 0.1), rtol=1e-6)


def test_dpi_is_not_a_voxel_size(tmp_path, caplog):
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, STACK[0], resolution=(300.0, 300.0), resolutionunit="INCH")
    with caplog.at_level(logging.WARNING, logger="voxseg.io"):
        vol = read_image(path)
    assert vol.spacing == (1.0, 1.0)
    assert any("assuming 1 mm" in r.getMessage() for r in caplog.records)


def test_ome_physical_size(tmp_path):
    path = tmp_path / "stack.ome.tif"
    metadata = {
        "axes": "ZYX",
        "PhysicalSizeX": 0.3,
        "PhysicalSizeXUnit": "\u00b5m",
        "PhysicalSizeY": 0.4,
        "PhysicalSizeYUnit": "\u00b5m",
        "PhysicalSizeZ": 1.5,
        "PhysicalSizeZUnit": "\u00b5m",
    }
    tifffile.imwrite(path, STACK, ome=True, metadata=metadata)
    vol = read_image(path)
    np.testing.assert_array_equal(vol.array, STACK)
    np.testing.assert_allclose(vol.spacing, (0.0015, 0.0004, 0.0003), rtol=1e-6)


def test_ome_physical_size_in_nm_and_default_unit(tmp_path):
    path = tmp_path / "nm.ome.tif"
    tifffile.imwrite(
        path,
        STACK,
        ome=True,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 100,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 100,
            "PhysicalSizeYUnit": "nm",
            "PhysicalSizeZ": 0.5,
        },
    )  # Z in the OME default unit, um
    np.testing.assert_allclose(read_image(path).spacing, (0.0005, 0.0001, 0.0001), rtol=1e-6)


def test_sidecar_wins_over_tiff_metadata(tmp_path):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, STACK, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um", "axes": "ZYX"})
    (tmp_path / "ij.tif.json").write_text('{"spacing": [3, 2, 1]}')
    assert read_image(path).spacing == (3.0, 2.0, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "layout"),
    [
        ({"imagej": True, "metadata": {"axes": "ZCYX"}}, "ZCYX"),
        ({"ome": True, "metadata": {"axes": "ZCYX", **OME_SIZES}}, "ZCYX"),
        ({"ome": True, "metadata": {"axes": "CZYX", **OME_SIZES}}, "CZYX"),
    ],
    ids=["imagej-zcyx", "ome-zcyx", "ome-czyx"],
)
def test_multichannel_tiff(tmp_path, kwargs, layout):
    channels = [STACK * (k + 1) for k in range(3)]
    data = np.stack(channels, axis=layout.index("C"))
    path = tmp_path / "mc.tif"
    tifffile.imwrite(path, data, **kwargs)
    volumes = read_channels(path)
    assert len(volumes) == 3
    for vol, expected in zip(volumes, channels, strict=True):
        assert vol.shape == (4, 6, 8)
        np.testing.assert_array_equal(vol.array, expected)
    assert all(v.same_geometry(volumes[0]) for v in volumes)
    if kwargs.get("ome"):
        np.testing.assert_allclose(volumes[0].spacing, (0.002, 0.0005, 0.0005), rtol=1e-6)
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path, "3 channels", "read_channels")


def test_rgb_tiff_gives_three_channels(tmp_path):
    rgb = random_array(np.uint8, (5, 6, 3))
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    volumes = read_channels(path)
    assert [v.shape for v in volumes] == [(5, 6)] * 3
    for k, vol in enumerate(volumes):
        np.testing.assert_array_equal(vol.array, rgb[..., k])


def test_singleton_axes_are_dropped(tmp_path):
    path = tmp_path / "t1.tif"
    tifffile.imwrite(path, STACK[None], imagej=True, metadata={"axes": "TZYX"})
    vol = read_image(path)
    assert vol.shape == (4, 6, 8)


def test_float32_stack_written_by_voxseg_reads_in_imagej_terms(tmp_path):
    """voxseg writes uint8/uint16/float32 as ImageJ hyperstacks in mm, readable without the sidecar."""
    vol = Volume(random_array(np.float32, (3, 4, 5)), spacing=(2.0, 0.5, 0.25))
    path = write_image(vol, tmp_path / "x.tif")
    (tmp_path / "x.tif.json").unlink()
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "mm"
    back = read_image(path)
    np.testing.assert_allclose(back.spacing, (2.0, 0.5, 0.25), rtol=1e-6)
    np.testing.assert_array_equal(back.array, vol.array)


def test_int16_tiff_written_by_voxseg_keeps_xy_spacing_without_sidecar(tmp_path):
    vol = Volume(random_array(np.int16, (3, 4, 5)), spacing=(2.0, 0.5, 0.25))
    path = write_image(vol, tmp_path / "x.tif")
    (tmp_path / "x.tif.json").unlink()
    back = read_image(path)
    np.testing.assert_allclose(back.spacing[1:], (0.5, 0.25), rtol=1e-6)
    np.testing.assert_array_equal(back.array, vol.array)


@pytest.mark.parametrize("shape", [(3, 6, 8), (4, 6, 8), (6, 8, 3), (6, 8, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
def test_voxseg_tiff_with_3_or_4_slices_or_columns_is_not_taken_for_colour(tmp_path, shape, dtype):
    """tifffile guesses RGB(A) for a leading or trailing axis of 3 or 4 unless told otherwise."""
    vol = Volume(random_array(dtype, shape))
    path = write_image(vol, tmp_path / "small.tif")
    (tmp_path / "small.tif.json").unlink()
    back = read_image(path)
    assert back.shape == shape
    np.testing.assert_array_equal(back.array, vol.array)
