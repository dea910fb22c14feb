"""Uploads: type and size checks, every accepted format read with voxseg's readers, safe zips."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.apps.web.helpers import as_uint8, pet_case
from tests.io.helpers import write_dicom_series
from voxseg.apps.web.uploads import check_upload, extract_zip_safely, read_upload, upload_kind
from voxseg.errors import InputImageError
from voxseg.io import Volume, write_image

MB = 1 << 20


def _bytes_of(volume: Volume, name: str, tmp_path: Path) -> bytes:
    return write_image(volume, tmp_path / "src" / name).read_bytes()


def _one_line(exc: pytest.ExceptionInfo, *fragments: str) -> str:
    text = str(exc.value)
    assert "\n" not in text
    for f in fragments:
        assert f.lower() in text.lower(), text
    return text


def test_kinds_by_suffix():
    assert upload_kind("a.NII.GZ") == (".nii.gz", "nifti")
    assert upload_kind("scan.nii") == (".nii", "nifti")
    assert upload_kind("x.tiff")[1] == upload_kind("x.tif")[1] == "tiff"
    assert upload_kind("series.zip") == (".zip", "dicom")
    assert upload_kind("notes.txt") is None


def test_check_refuses_unsupported_empty_and_oversized():
    with pytest.raises(InputImageError) as exc:
        check_upload("photo.gif", 10, max_bytes=MB)
    _one_line(exc, "photo.gif", "unsupported file type", ".nii.gz")
    with pytest.raises(InputImageError) as exc:
        check_upload("a.png", 0, max_bytes=MB)
    _one_line(exc, "a.png", "empty")
    with pytest.raises(InputImageError) as exc:
        check_upload("big.nii.gz", 3 * MB, max_bytes=2 * MB)
    _one_line(exc, "big.nii.gz", "3.0 MB", "upload limit of 2.0 MB", "--max-upload-mb")
    assert check_upload("ok.nrrd", 2 * MB, max_bytes=2 * MB) == (".nrrd", "nrrd")


@pytest.mark.parametrize("name", ["pet.nii.gz", "pet.nii", "pet.nrrd", "pet.mha", "pet.tif"])
def test_2d_formats_round_trip_array_and_spacing(tmp_path, name):
    image, _ = pet_case(0)
    up = read_upload(name, _bytes_of(image, name, tmp_path), tmp_path / "in", max_bytes=64 * MB)
    assert up.name == name and up.ndim == 2 and len(up.channels) == 1
    np.testing.assert_array_equal(up.image.array, image.array)
    assert up.image.spacing == pytest.approx(image.spacing)


def test_png_upload_is_2d_uint8(tmp_path):
    image = as_uint8(pet_case(1)[0])
    up = read_upload("My scan (1).png", _bytes_of(image, "x.png", tmp_path), tmp_path / "in", max_bytes=MB)
    assert up.kind == "png" and up.image.dtype == np.uint8
    np.testing.assert_array_equal(up.image.array, image.array)
    assert up.stem == "My_scan__1"


def test_3d_nifti_and_rgb_png_channels(tmp_path):
    vol = Volume(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), (2.0, 0.5, 0.5), (1.0, 2.0, 3.0))
    up = read_upload("v.nii.gz", _bytes_of(vol, "v.nii.gz", tmp_path), tmp_path / "a", max_bytes=MB)
    assert up.ndim == 3 and up.image.origin == pytest.approx(vol.origin)
    np.testing.assert_array_equal(up.image.array, vol.array)
    from PIL import Image

    rgb = np.zeros((8, 9, 3), np.uint8)
    rgb[..., 0] = 200
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    up = read_upload("rgb.png", buf.getvalue(), tmp_path / "b", max_bytes=MB)
    assert len(up.channels) == 3


def test_corrupt_and_truncated_files_name_the_upload(tmp_path):
    image, _ = pet_case(0)
    data = _bytes_of(image, "p.nii.gz", tmp_path)
    for name, payload in [("p.nii.gz", data[: len(data) // 2]), ("q.png", b"\x89PNG not really"), ("r.tif", b"II*")]:
        with pytest.raises(InputImageError) as exc:
            read_upload(name, payload, tmp_path / "in", max_bytes=MB)
        text = _one_line(exc, name)
        assert str(tmp_path) not in text  # the temporary path is not shown, the upload's name is


def _series_zip(tmp_path: Path, *, nested: str = "study/series1/") -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(0)
    arr = rng.integers(-100, 400, size=(5, 12, 10)).astype(np.int16)
    files = write_dicom_series(
        tmp_path / "dcm", arr, spacing=(2.5, 0.7, 0.7), origin=(10.0, -5.0, 3.0), series_uid="1.2.3.4.5"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("__MACOSX/._junk", b"resource fork")
        for f in files:
            zf.write(f, nested + f.name)
    return buf.getvalue(), arr


def test_zip_of_a_dicom_series(tmp_path):
    data, arr = _series_zip(tmp_path)
    up = read_upload("CT series.zip", data, tmp_path / "in", max_bytes=16 * MB)
    assert up.kind == "dicom" and up.ndim == 3
    np.testing.assert_array_equal(up.image.array, arr)
    assert up.image.spacing == pytest.approx((2.5, 0.7, 0.7))


def _zip_with(members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for info, payload in members:
            zf.writestr(info, payload)
    return buf.getvalue()


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("member", "fragment"),
    [
        ("../evil.dcm", "escapes"),
        ("a/../../evil.dcm", "escapes"),
        ("/etc/evil.dcm", "absolute"),
        ("C:/evil.dcm", "absolute"),
        ("a\\..\\evil.dcm", "windows"),
        (_symlink_info("link.dcm"), "link"),
    ],
)
def test_unsafe_zip_members_are_refused_before_extraction(tmp_path, member, fragment):
    data = _zip_with([("ok.dcm", b"x"), (member, b"/etc/passwd")])
    with pytest.raises(InputImageError) as exc:
        read_upload("s.zip", data, tmp_path / "in", max_bytes=MB)
    _one_line(exc, "s.zip", fragment)
    assert not (tmp_path / "evil.dcm").exists() and not Path("/etc/evil.dcm").exists()
    assert not list((tmp_path / "in").rglob("*.dcm"))  # nothing was extracted


def test_zip_bomb_stops_at_the_cap(tmp_path):
    data = _zip_with([("a.dcm", b"\0" * (3 * MB))])
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(data)
    with pytest.raises(InputImageError) as exc:
        extract_zip_safely(archive, tmp_path / "out", max_total_bytes=MB, label="bomb.zip")
    _one_line(exc, "bomb.zip", "more than 1.0 MB")
    assert sum(f.stat().st_size for f in (tmp_path / "out").rglob("*") if f.is_file()) <= MB


def test_zip_without_dicom_and_not_a_zip(tmp_path):
    with pytest.raises(InputImageError) as exc:
        read_upload("notes.zip", _zip_with([("readme.txt", b"hello")]), tmp_path / "in", max_bytes=MB)
    _one_line(exc, "notes.zip", "dicom")
    with pytest.raises(InputImageError) as exc:
        read_upload("fake.zip", b"PK but no archive", tmp_path / "in", max_bytes=MB)
    _one_line(exc, "fake.zip", "zip")
    with pytest.raises(InputImageError) as exc:
        read_upload("empty.zip", _zip_with([("__MACOSX/._x", b"x")]), tmp_path / "in", max_bytes=MB)
    _one_line(exc, "empty.zip", "no files")


def test_zip_of_a_real_ct_series_in_a_subfolder_without_suffixes(tmp_path):
    from tests.dicom_helpers import write_series, zip_folder

    write_series(tmp_path / "ct", slices=4, suffix="")  # DICOM files named without .dcm: found by the magic
    data = zip_folder(tmp_path / "ct", inside="patient/CT 2.5mm")
    up = read_upload("chest ct.zip", data, tmp_path / "upload", max_bytes=50 * MB)
    assert up.kind == "dicom" and up.image.shape == (4, 128, 128)
    assert up.image.spacing[0] == pytest.approx(2.5)


def test_zip_of_a_study_with_two_series_is_refused_in_one_line(tmp_path):
    from tests.dicom_helpers import MR, write_series, zip_folder

    write_series(tmp_path / "study", prefix="ct", description="Chest")
    write_series(tmp_path / "study", source=MR, prefix="mr", description="T1")
    with pytest.raises(InputImageError) as info:
        read_upload("study.zip", zip_folder(tmp_path / "study"), tmp_path / "upload", max_bytes=50 * MB)
    _one_line(info, "study.zip", "2 DICOM series", "Chest", "T1", "zip one series")
