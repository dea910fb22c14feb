"""Unsafe archives are refused before anything is written: zip-slip, absolute paths, symlinks,
oversized members, zip bombs, duplicates, pickles (by suffix or disguised as safetensors)."""

from __future__ import annotations

import json
import os
import pickle
import stat
import warnings
import zipfile
from pathlib import Path

import pytest

from voxseg.bundle import ArchiveLimits, install, open_bundle, verify_bundle
from voxseg.bundle._util import sha256_bytes
from voxseg.bundle.archive import extract_zip
from voxseg.errors import BundleError


def _members(bundle_zip: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle_zip) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _write(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for info, data in members:
                zf.writestr(info, data)
    return path


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _bad_archive(kind: str, good: dict[str, bytes]) -> tuple[list, str]:
    members = list(good.items())
    if kind == "zip-slip":
        return [*members, ("weights/../../evil.txt", b"x")], "'weights/../../evil.txt' escapes the target folder"
    if kind == "dotdot":
        return [*members, ("../evil.txt", b"x")], "'../evil.txt' escapes the target folder"
    if kind == "absolute":
        return [*members, ("/tmp/evil.txt", b"x")], "'/tmp/evil.txt' has an absolute path"
    if kind == "drive":
        return [*members, ("C:/evil.txt", b"x")], "has an absolute path"
    if kind == "backslash":
        return [*members, ("..\\evil.txt", b"x")], "has a backslash"
    if kind == "symlink":
        return [*members, (_symlink("weights/link"), b"/etc/passwd")], "'weights/link' is a symbolic link"
    if kind == "duplicate":
        return [*members, ("README.md", b"other")], "'README.md' appears twice"
    if kind == "pickle":
        return [*members, ("weights/fold_0.pt", pickle.dumps({"w": 1}))], "'weights/fold_0.pt' is a pickle-based file"
    if kind == "bomb":
        return [*members, ("zeros.bin.txt", b"\0" * (20 << 20))], "'zeros.bin.txt' expands"
    raise AssertionError(kind)


KINDS = ["zip-slip", "dotdot", "absolute", "drive", "backslash", "symlink", "duplicate", "pickle", "bomb"]


@pytest.mark.parametrize("kind", KINDS)
def test_unsafe_archives_are_refused_everywhere(kind, bundle_zip, tmp_path):
    members, needle = _bad_archive(kind, _members(bundle_zip))
    bad = _write(tmp_path / f"{kind}.zip", members)
    for attempt in (
        lambda: open_bundle(bad),
        lambda: open_bundle(bad, cache=tmp_path / "cache"),
        lambda: install(bad, cache=tmp_path / "cache", models=tmp_path / "models"),
    ):
        with pytest.raises(BundleError) as err:
            attempt()
        assert needle in str(err.value) and "refused" in str(err.value)
        assert "\n" not in str(err.value)
    assert verify_bundle(bad) and needle in verify_bundle(bad)[0]
    # nothing was written anywhere: no escaped file, no cache entry, no half-installed model
    assert not (tmp_path.parent / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))
    models = tmp_path / "models"
    assert not models.exists() or not any(models.iterdir())


def test_oversized_members_and_totals_are_refused(bundle_zip, tmp_path):
    good = bundle_zip
    largest = max(len(v) for v in _members(good).values())
    with pytest.raises(BundleError, match=r"over the 100-byte cap; refused"):
        open_bundle(good, limits=ArchiveLimits(max_member_bytes=100))
    with pytest.raises(BundleError, match=r"the archive expands to .* over the"):
        open_bundle(good, limits=ArchiveLimits(max_total_bytes=largest + 10))
    with pytest.raises(BundleError, match="members"):
        extract_zip(good, tmp_path / "x", limits=ArchiveLimits(max_members=2))
    assert not (tmp_path / "x").exists()


def test_pickle_disguised_as_safetensors_is_refused(bundle_zip, tmp_path):
    members = _members(bundle_zip)
    evil = pickle.dumps({"weight": [1.0, 2.0]})
    members["weights/fold_0.safetensors"] = evil
    manifest = json.loads(members["bundle.json"])
    manifest["files"]["weights/fold_0.safetensors"] = sha256_bytes(evil)  # hashes all match
    members["bundle.json"] = json.dumps(manifest).encode()
    bad = _write(tmp_path / "disguised.zip", list(members.items()))
    with pytest.raises(BundleError, match=r"weights/fold_0\.safetensors is refused: it is a Python pickle"):
        open_bundle(bad)
    with pytest.raises(BundleError, match="it is a Python pickle"):
        open_bundle(bad, cache=tmp_path / "cache")


def test_folder_with_a_symlink_is_refused(bundle_zip, tmp_path):
    folder = tmp_path / "folder"
    with zipfile.ZipFile(bundle_zip) as zf:
        zf.extractall(folder)
    os.symlink("/etc/passwd", folder / "weights" / "link")
    with pytest.raises(BundleError, match="'weights/link' is a symbolic link"):
        open_bundle(folder)


def test_not_a_zip(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"this is not a zip")
    with pytest.raises(BundleError, match="not a readable zip archive"):
        open_bundle(junk)
    with pytest.raises(BundleError, match="no such bundle"):
        open_bundle(tmp_path / "missing.zip")


def test_archive_caps_default_to_2_gib_and_follow_the_environment(monkeypatch):
    assert ArchiveLimits().max_total_bytes == ArchiveLimits().max_member_bytes == 2 << 30
    monkeypatch.setenv("VOXSEG_MAX_BUNDLE_BYTES", str(5 << 30))
    assert ArchiveLimits().max_total_bytes == 5 << 30


def test_zip_bomb_of_one_mib_members_is_refused_before_extracting(bundle_zip, tmp_path):
    """400 members of exactly 1 MiB of zeros: under the member cap, each compressed ~1000x."""
    members = [*_members(bundle_zip).items()] + [(f"z/{i}.txt", bytes(1 << 20)) for i in range(400)]
    bad = _write(tmp_path / "bomb.zip", members)
    with pytest.raises(BundleError, match=r"expands \d+x .*zip bomb"):
        install(bad, cache=tmp_path / "cache", models=tmp_path / "models")
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").rglob("*.txt"))
    problems = verify_bundle(bad)
    assert problems and "zip bomb" in problems[0]


def test_members_not_listed_in_bundle_json_are_refused_before_extracting(bundle_zip, tmp_path):
    bad = _write(tmp_path / "extra.zip", [*_members(bundle_zip).items(), ("notes/extra.txt", b"x")])
    with pytest.raises(BundleError, match=r"'notes/extra.txt' is not listed in bundle.json; refused"):
        extract_zip(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
