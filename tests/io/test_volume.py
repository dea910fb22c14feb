"""Volume / Geometry: construction, validation, and the axis convention against SimpleITK."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import SimpleITK as sitk

from tests.io.helpers import ORIGIN_3D, SPACING_3D, oblique_direction_2d, oblique_direction_3d
from voxseg.io import Geometry, Volume, read_image, write_image
from voxseg.io.sitk_io import volume_from_sitk, volume_to_sitk

# -- construction and validation ------------------------------------------------------------


def test_defaults_are_unit_spacing_zero_origin_identity():
    vol = Volume(np.zeros((3, 4, 5), np.int16))
    assert vol.ndim == 3
    assert vol.shape == (3, 4, 5)
    assert vol.dtype == np.int16
    assert vol.spacing == (1.0, 1.0, 1.0)
    assert vol.origin == (0.0, 0.0, 0.0)
    assert vol.direction == ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    assert vol.voxel_volume == 1.0
    assert vol.geometry == Geometry.identity(3)


def test_2d_volume_and_values_become_float_tuples():
    vol = Volume(np.zeros((4, 5)), spacing=np.array([0.5, 0.25]), origin=[1, 2], direction=np.eye(2))
    assert vol.ndim == 2
    assert vol.spacing == (0.5, 0.25) and all(type(s) is float for s in vol.spacing)
    assert vol.origin == (1.0, 2.0)
    assert vol.direction == ((1.0, 0.0), (0.0, 1.0))
    assert vol.voxel_volume == pytest.approx(0.125)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"array": np.zeros(5)}, "2D or 3D"),
        ({"array": np.zeros((2, 3, 4, 5))}, "2D or 3D"),
        ({"array": np.zeros((2, 3, 4)), "spacing": (1.0, 1.0)}, "spacing has 2 values"),
        ({"array": np.zeros((2, 3, 4)), "spacing": (1.0, 0.0, 1.0)}, "positive"),
        ({"array": np.zeros((2, 3, 4)), "spacing": (1.0, -2.0, 1.0)}, "positive"),
        ({"array": np.zeros((2, 3, 4)), "spacing": (1.0, np.nan, 1.0)}, "finite"),
        ({"array": np.zeros((2, 3, 4)), "origin": (0.0, 0.0)}, "origin has 2 values"),
        ({"array": np.zeros((2, 3, 4)), "direction": np.eye(2)}, "direction must be 3x3"),
    ],
)
def test_invalid_volume_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Volume(**kwargs)


def test_with_array_keeps_geometry_and_checks_shape():
    vol = Volume(np.zeros((2, 3, 4)), SPACING_3D, ORIGIN_3D, oblique_direction_3d())
    other = vol.with_array(np.ones((2, 3, 4), np.uint8))
    assert other.dtype == np.uint8
    assert other.same_geometry(vol)
    assert other.geometry == vol.geometry
    with pytest.raises(ValueError, match="differs"):
        vol.with_array(np.ones((2, 3, 5)))


def test_like_and_same_geometry():
    vol = Volume(np.zeros((2, 3, 4)), SPACING_3D, ORIGIN_3D)
    assert Volume.like(np.zeros((2, 3, 4)), vol.geometry).same_geometry(vol)
    assert not Volume(np.zeros((2, 3, 5)), SPACING_3D, ORIGIN_3D).same_geometry(vol)  # shape
    assert not Volume(np.zeros((2, 3, 4)), SPACING_3D).same_geometry(vol)  # origin
    # header rounding (float32) is tolerated
    rounded = Volume(np.zeros((2, 3, 4)), np.float32(SPACING_3D), np.float32(ORIGIN_3D))
    assert rounded.same_geometry(vol)


def test_geometry_differences_are_readable():
    a = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), Geometry.identity(3).direction)
    b = Geometry((2.0, 1.0, 1.0), (0.0, 5.0, 0.0), tuple(map(tuple, oblique_direction_3d())))
    diffs = a.differences(b)
    assert len(diffs) == 3
    assert diffs[0].startswith("spacing (1, 1, 1) vs (2, 1, 1)")
    assert diffs[1].startswith("origin")
    assert "direction" in diffs[2]
    assert a.differences(Geometry.identity(2)) == ["dimensions differ (3D vs 2D)"]


def test_microscopy_spacings_are_compared_relatively():
    um = Geometry.identity(3, (0.0002, 0.0001, 0.0001))  # 0.2 / 0.1 um in mm
    double = Geometry.identity(3, (0.0004, 0.0001, 0.0001))
    assert um.differences(double)  # an absolute 1e-4 tolerance would miss this
    assert not um.differences(Geometry.identity(3, (0.0002 * (1 + 1e-6), 0.0001, 0.0001)))


def test_repr_is_short():
    text = repr(Volume(np.zeros((2, 3, 4), np.float32), SPACING_3D))
    assert text == "Volume(shape=(2, 3, 4), dtype=float32, spacing=(2.5, 0.7, 0.3), origin=(0, 0, 0))"


# -- coordinates: the convention against SimpleITK --------------------------------------------


def _itk_image(shape_zyx, spacing_xyz, origin_xyz, direction_xyz) -> sitk.Image:
    """An ITK image built from ITK-order geometry only (independent of voxseg's conversion)."""
    image = sitk.GetImageFromArray(np.zeros(shape_zyx, np.float32))
    image.SetSpacing(spacing_xyz)
    image.SetOrigin(origin_xyz)
    image.SetDirection(tuple(np.asarray(direction_xyz).ravel()))
    return image


def _convention_volume(image: sitk.Image) -> Volume:
    """The documented convention written out: array order = ITK order reversed."""
    n = image.GetDimension()
    d = np.asarray(image.GetDirection()).reshape(n, n)
    return Volume(np.zeros(image.GetSize()[::-1]), image.GetSpacing()[::-1], image.GetOrigin()[::-1], d[::-1, ::-1])


@pytest.mark.parametrize("ndim", [2, 3])
def test_index_to_world_matches_itk_physical_point(ndim):
    direction = oblique_direction_3d() if ndim == 3 else oblique_direction_2d()
    image = _itk_image((5, 6, 7)[-ndim:], (0.3, 0.7, 2.5)[:ndim], (3.125, 20.25, -10.5)[:ndim], direction)
    vol = _convention_volume(image)
    rng = np.random.default_rng(1)
    for index in [np.zeros(ndim), np.array([4, 5, 6][-ndim:]), *rng.uniform(-3, 9, (5, ndim))]:
        expected = image.TransformContinuousIndexToPhysicalPoint(tuple(index[::-1].tolist()))[::-1]
        np.testing.assert_allclose(vol.index_to_world(index), expected, atol=1e-9)
        np.testing.assert_allclose(vol.index_to_itk_point(index), expected[::-1], atol=1e-9)
    integer = (4, 1, 2)[-ndim:]
    expected = image.TransformIndexToPhysicalPoint(integer[::-1])[::-1]
    np.testing.assert_allclose(vol.index_to_world(integer), expected, atol=1e-9)


def test_volume_from_sitk_applies_the_convention_once():
    image = _itk_image((5, 6, 7), (0.3, 0.7, 2.5), (3.125, 20.25, -10.5), oblique_direction_3d())
    vol = volume_from_sitk(image)
    ref = _convention_volume(image)
    assert vol.spacing == ref.spacing == (2.5, 0.7, 0.3)
    assert vol.origin == ref.origin == (-10.5, 20.25, 3.125)
    np.testing.assert_allclose(vol.direction_matrix(), ref.direction_matrix(), atol=1e-12)
    back = volume_to_sitk(vol)
    assert back.GetSpacing() == image.GetSpacing()
    assert back.GetOrigin() == image.GetOrigin()
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-12)


def test_stepping_along_an_array_axis_moves_by_its_spacing_along_its_direction_column():
    d = oblique_direction_3d()
    vol = Volume(np.zeros((5, 6, 7)), SPACING_3D, ORIGIN_3D, d)
    for axis in range(3):
        step = np.zeros(3)
        step[axis] = 1
        np.testing.assert_allclose(
            vol.index_to_world(step) - vol.index_to_world(np.zeros(3)), SPACING_3D[axis] * d[:, axis], atol=1e-12
        )


def test_world_to_index_inverts_index_to_world_in_batches():
    vol = Volume(np.zeros((5, 6, 7)), SPACING_3D, ORIGIN_3D, oblique_direction_3d())
    indices = np.random.default_rng(2).uniform(-2, 8, (4, 10, 3))
    world = vol.index_to_world(indices)
    assert world.shape == (4, 10, 3)
    np.testing.assert_allclose(vol.world_to_index(world), indices, atol=1e-9)
    np.testing.assert_allclose(vol.world_to_index(vol.origin), np.zeros(3), atol=1e-12)


def _nifti_sform(path) -> np.ndarray:
    """The 3x4 sform (RAS) of a .nii.gz, read from the header bytes (srow_x, srow_y, srow_z)."""
    with gzip.open(path, "rb") as fh:
        head = fh.read(348)
    assert struct.unpack("<i", head[:4])[0] == 348
    return np.array(struct.unpack("<12f", head[280:328])).reshape(3, 4)


def test_nifti_written_by_voxseg_has_itk_geometry_reversed_and_ras_affine(tmp_path):
    direction = oblique_direction_3d()
    array = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    vol = Volume(array, SPACING_3D, ORIGIN_3D, direction)
    path = write_image(vol, tmp_path / "img.nii.gz")

    image = sitk.ReadImage(str(path))  # SimpleITK directly, no voxseg
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), array)
    np.testing.assert_allclose(image.GetSpacing(), SPACING_3D[::-1], rtol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), ORIGIN_3D[::-1], atol=1e-5)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), direction[::-1, ::-1], atol=1e-6)
    index = (4, 1, 5)  # array order (z, y, x)
    np.testing.assert_allclose(
        image.TransformIndexToPhysicalPoint(index[::-1]), vol.index_to_itk_point(index), atol=1e-4
    )

    # NIfTI stores RAS = diag(-1, -1, 1) @ LPS; the sform maps the (i, j, k) = (x, y, z) index
    sform = _nifti_sform(path)
    ras = sform @ np.array([*index[::-1], 1.0])
    np.testing.assert_allclose(ras, np.array([-1.0, -1.0, 1.0]) * vol.index_to_itk_point(index), atol=1e-4)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_file_written_by_simpleitk_reads_with_reversed_geometry(tmp_path, suffix):
    direction_xyz = oblique_direction_3d()
    image = sitk.GetImageFromArray(np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7))
    image.SetSpacing((0.3, 0.7, 2.5))
    image.SetOrigin((3.0, 20.0, -10.0))
    image.SetDirection(tuple(direction_xyz.ravel()))
    sitk.WriteImage(image, str(tmp_path / f"x{suffix}"))

    vol = read_image(tmp_path / f"x{suffix}")
    assert vol.shape == (5, 6, 7)
    np.testing.assert_allclose(vol.spacing, (2.5, 0.7, 0.3), rtol=1e-6)
    np.testing.assert_allclose(vol.origin, (-10.0, 20.0, 3.0), atol=1e-5)
    np.testing.assert_allclose(vol.direction_matrix(), direction_xyz[::-1, ::-1], atol=1e-6)
    for index in [(0, 0, 0), (4, 5, 6), (2, 3, 1)]:
        itk = image.TransformIndexToPhysicalPoint(index[::-1])
        np.testing.assert_allclose(vol.index_to_world(index), itk[::-1], atol=1e-4)
        assert vol.array[index] == sitk.GetArrayViewFromImage(image)[index]


# -- spacing that cannot be physical (hostile headers, bad API arguments) ------------------------


@pytest.mark.parametrize("bad", [0.0, -0.0, -1.0, float("nan"), float("inf"), 1e9, 1e-9])
def test_volume_refuses_unphysical_spacing(bad):
    from voxseg.errors import GeometryError

    with pytest.raises(GeometryError) as err:
        Volume(np.zeros((2, 3, 4), np.uint8), spacing=(1.0, bad, 1.0))
    assert isinstance(err.value, ValueError)  # callers catching ValueError keep working
    assert "axis 1" in str(err.value) and "\n" not in str(err.value)


def test_negative_nifti_pixdim_is_read_as_its_magnitude(tmp_path):
    path = tmp_path / "neg.nii"
    write_image(Volume(np.ones((2, 3, 4), np.uint8), spacing=(2.0, 1.0, 0.5)), path, compress=False)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<f", raw, 76 + 4 * 1, -0.5)  # pixdim[1]: x, the last array axis
    path.write_bytes(bytes(raw))
    assert read_image(path).spacing == pytest.approx((2.0, 1.0, 0.5))


def test_zero_pixdim_is_refused_naming_the_file(tmp_path):
    from voxseg.errors import GeometryError

    path = tmp_path / "zero.nii.gz"
    write_image(Volume(np.ones((2, 3, 4), np.uint8), spacing=(2.0, 1.0, 0.5)), path)
    raw = bytearray(gzip.decompress(path.read_bytes()))
    struct.pack_into("<f", raw, 76 + 4 * 3, 0.0)  # pixdim[3]: z
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(GeometryError, match=rf"^{path}: voxel spacing \(0, 1, 0.5\)"):
        read_image(path)
