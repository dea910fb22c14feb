"""Atomic writes: a failed write leaves the old file and no litter; reads never touch inputs."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

import voxseg.io.png_io
import voxseg.io.sitk_io
import voxseg.io.tiff_io
from tests.io.helpers import SPACING_3D, digest, random_array
from voxseg.errors import InputImageError
from voxseg.io import Volume, atomic_path, read_channels, read_image, write_image, write_json_atomic, write_text_atomic

WRITERS = {
    ".nii.gz": (voxseg.io.sitk_io, "write_sitk"),
    ".mha": (voxseg.io.sitk_io, "write_sitk"),
    ".mhd": (voxseg.io.sitk_io, "write_sitk"),
    ".nhdr": (voxseg.io.sitk_io, "write_sitk"),
    ".tif": (voxseg.io.tiff_io, "write_tiff"),
    ".png": (voxseg.io.png_io, "write_pil"),
}


def _failing_writer(real):
    """Writes the file for real (so it exists, half-done as far as anyone knows), then fails."""

    def writer(volume, path, *, compress=True):
        real(volume, path, compress=compress)
        raise OSError(28, "No space left on device")

    return writer


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("suffix", list(WRITERS))
def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch, suffix):
    old = Volume(np.full((3, 4), 5, np.uint8))
    path = write_image(old, tmp_path / f"img{suffix}")
    before = {name: digest(tmp_path / name) for name in _listing(tmp_path)}

    module, name = WRITERS[suffix]
    monkeypatch.setattr(module, name, _failing_writer(getattr(module, name)))
    with pytest.raises(InputImageError) as info:
        write_image(Volume(np.full((6, 7), 9, np.uint8)), path)
    assert "No space left on device" in str(info.value) and str(path) in str(info.value)

    assert {name: digest(tmp_path / name) for name in _listing(tmp_path)} == before  # same files, same bytes
    np.testing.assert_array_equal(read_image(path).array, old.array)


@pytest.mark.parametrize("suffix", [".nii.gz", ".mhd", ".png"])
def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch, suffix):
    module, name = WRITERS[suffix]
    monkeypatch.setattr(module, name, _failing_writer(getattr(module, name)))
    with pytest.raises(InputImageError):
        write_image(Volume(np.zeros((3, 4), np.uint8)), tmp_path / f"img{suffix}")
    assert _listing(tmp_path) == []


def test_interrupt_is_not_swallowed_and_cleans_up(tmp_path, monkeypatch):
    def interrupted(volume, path, *, compress=True):
        path.write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(voxseg.io.sitk_io, "write_sitk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_image(Volume(np.zeros((3, 4))), tmp_path / "img.nii.gz")
    assert _listing(tmp_path) == []


def _expected_mode() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mhd", ".tif", ".png", ".jpg"])
def test_written_files_get_normal_permissions(tmp_path, suffix):
    write_image(Volume(np.zeros((3, 4), np.uint8)), tmp_path / f"img{suffix}")
    for path in tmp_path.iterdir():  # image, detached data file and sidecar alike
        assert stat.S_IMODE(path.stat().st_mode) == _expected_mode(), path.name  # not mkstemp's 0600


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mhd", ".mha", ".tif", ".png", ".jpg"])
def test_reading_never_modifies_the_input(tmp_path, suffix):
    array = random_array(np.uint8, (6, 8))
    write_image(Volume(array), tmp_path / f"img{suffix}")
    if suffix == ".nii":  # a sibling .nii.gz makes voxseg read through an alias: that must not touch it either
        write_image(Volume(array), tmp_path / "img.nii.gz")
    past = 1_000_000_000  # 2001: any rewrite or touch would change it
    for path in tmp_path.iterdir():
        os.utime(path, (past, past))
    before = {p.name: (digest(p), p.stat().st_mtime, stat.S_IMODE(p.stat().st_mode)) for p in tmp_path.iterdir()}
    read_image(tmp_path / f"img{suffix}")
    read_channels(tmp_path / f"img{suffix}")
    after = {p.name: (digest(p), p.stat().st_mtime, stat.S_IMODE(p.stat().st_mode)) for p in tmp_path.iterdir()}
    assert after == before


def test_reading_a_nifti_with_nan_does_not_modify_it(tmp_path):
    array = random_array(np.float32, (3, 4, 5))
    array[0, 0, 0] = np.nan
    path = write_image(Volume(array, SPACING_3D), tmp_path / "nan.nii.gz")
    before = digest(path)
    vol = read_image(path, nonfinite="allow")
    assert np.isnan(vol.array[0, 0, 0])
    vol.array[0, 0, 0] = 1.0  # the returned array is the caller's own
    assert digest(path) == before
    assert np.isnan(read_image(path, nonfinite="allow").array[0, 0, 0])


def test_writing_does_not_modify_the_volume(tmp_path):
    array = random_array(np.float16, (3, 4, 5))
    vol = Volume(array.copy(), SPACING_3D)
    write_image(vol, tmp_path / "img.nii.gz")
    mask = array > 0
    write_image(Volume(mask), tmp_path / "mask.nrrd")
    assert mask.dtype == bool
    assert vol.dtype == np.float16
    np.testing.assert_array_equal(vol.array, array)


def test_atomic_path_helpers(tmp_path):
    target = tmp_path / "deep" / "notes.txt"
    assert write_text_atomic(target, "héllo\n") == target
    assert target.read_text(encoding="utf-8") == "héllo\n"
    assert stat.S_IMODE(target.stat().st_mode) == _expected_mode()

    data = {"spacing": [1.0, 2.0], "name": "x"}
    write_json_atomic(tmp_path / "a.json", data)
    assert json.loads((tmp_path / "a.json").read_text()) == data
    assert (tmp_path / "a.json").read_text().endswith("\n")

    with atomic_path(tmp_path / "img.nii.gz") as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.endswith(".part") and tmp.name.startswith(f".img.nii.gz.{os.getpid()}.")
        assert not (tmp_path / "img.nii.gz").exists()
        tmp.write_bytes(b"x")
    assert (tmp_path / "img.nii.gz").read_bytes() == b"x"

    with pytest.raises(ValueError, match="boom"), atomic_path(tmp_path / "img.nii.gz") as tmp:
        tmp.write_bytes(b"half")
        raise ValueError("boom")
    assert (tmp_path / "img.nii.gz").read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "deep", "img.nii.gz"]
