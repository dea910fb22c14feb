"""Reading bundle archives safely: every zip member is checked before a byte is extracted.

Refused, with a one-line :class:`~voxseg.errors.BundleError` naming the member:

- names that escape the target folder (``../x``, ``a/../../x``: zip-slip), absolute names
  (``/etc/x``, ``C:/x``), backslashes, empty or ``.`` components;
- symbolic links (and any member that is not a regular file or a folder);
- encrypted members; duplicate names;
- members larger than ``max_member_bytes``, archives whose members add up to more than
  ``max_total_bytes``, and members compressed more than ``max_ratio`` times (zip bombs);
- files with a pickle suffix (``.pt``, ``.pth``, ``.pkl``, ...): bundles hold safetensors only.

Sizes are checked against the declared sizes first and counted again while extracting, so an
archive that lies about its sizes is still stopped at the cap. No torch here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from voxseg.bundle._util import PICKLE_SUFFIXES
from voxseg.errors import BundleError
from voxseg.io.safe_json import MAX_JSON_BYTES, loads_json

__all__ = [
    "ArchiveLimits",
    "ZipMembers",
    "check_zip",
    "extract_zip",
    "read_zip_members",
    "check_folder",
    "folder_files",
]

_MIB = 1 << 20
_RATIO_FLOOR = 64 << 10  # members this large must not expand more than max_ratio times
_MANIFEST = "bundle.json"


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps applied to bundle archives (defaults fit models up to a few GB).

    Parameters
    ----------
    max_member_bytes
        Largest uncompressed member.
    max_total_bytes
        Largest sum of uncompressed members.
    max_ratio
        Largest compression ratio of a member of 64 KiB or more, and of the whole archive once
        it expands past 1 MiB (zip-bomb guards).
    max_members
        Most members in one archive.

    The two byte caps default to 2 GiB, or to ``VOXSEG_MAX_BUNDLE_BYTES`` when set.
    """

    max_member_bytes: int = field(default_factory=lambda: _env_bytes("VOXSEG_MAX_BUNDLE_BYTES", 2 << 30))
    max_total_bytes: int = field(default_factory=lambda: _env_bytes("VOXSEG_MAX_BUNDLE_BYTES", 2 << 30))
    max_ratio: float = 200.0
    max_members: int = 1_000


def _env_bytes(name: str, default: int) -> int:
    """A byte cap from the environment (``VOXSEG_MAX_BUNDLE_BYTES=4294967296``), else ``default``."""
    text = os.environ.get(name, "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else default


def _member_problem(name: str) -> str | None:
    if not name:
        return "has an empty name"
    if "\\" in name:
        return "has a backslash in its name (Windows path separators could escape the folder)"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    parts = PurePosixPath(name).parts
    if ".." in name.split("/"):
        return "escapes the target folder ('..' in its path: zip-slip)"
    if any(p in ("", ".") for p in name.rstrip("/").split("/")) or not parts:
        return "has an empty or '.' path component"
    if any(ord(c) < 32 for c in name):
        return "has control characters in its name"
    return None


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return info.create_system == 3 and stat.S_ISLNK(mode)


def _is_special(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)  # 0 when an archiver stored permission bits only
    return info.create_system == 3 and kind != 0 and kind not in (stat.S_IFREG, stat.S_IFDIR)


def check_zip(zf: zipfile.ZipFile, *, limits: ArchiveLimits = ArchiveLimits(), source: str = "") -> list[str]:
    """Check every member of ``zf``; return the regular files' names (folders left out).

    Raises
    ------
    BundleError
        At the first unsafe member (see the module docstring), naming it.
    """
    where = f"{source}: " if source else ""
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise BundleError(f"{where}the archive has {len(infos)} members (more than {limits.max_members}); refused")
    seen: set[str] = set()
    files, total, packed = [], 0, 0
    for info in infos:
        name = info.filename
        problem = _member_problem(name)
        if problem is None and _is_symlink(info):
            problem = "is a symbolic link (bundles hold regular files only)"
        elif problem is None and _is_special(info):
            problem = "is not a regular file"
        elif problem is None and info.flag_bits & 0x1:
            problem = "is encrypted"
        key = name.rstrip("/")
        if problem is None and key in seen:
            problem = "appears twice in the archive"
        if problem is None and not info.is_dir():
            if PurePosixPath(key).suffix.lower() in PICKLE_SUFFIXES:
                problem = "is a pickle-based file; bundles hold safetensors weights only (loading never unpickles)"
            elif info.file_size > limits.max_member_bytes:
                problem = f"is {info.file_size} bytes uncompressed, over the {limits.max_member_bytes}-byte cap"
            elif info.file_size >= _RATIO_FLOOR and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                problem = (
                    f"expands {info.file_size / max(info.compress_size, 1):.0f}x "
                    f"(over the {limits.max_ratio:.0f}x cap: a zip bomb?)"
                )
        if problem:
            raise BundleError(f"{where}archive member {name!r} {problem}; refused")
        seen.add(key)
        if not info.is_dir():
            total += info.file_size
            packed += info.compress_size
            files.append(key)
    if total > limits.max_total_bytes:
        raise BundleError(
            f"{where}the archive expands to {total} bytes, over the {limits.max_total_bytes}-byte cap; refused"
        )
    if total > _MIB and total > limits.max_ratio * max(packed, 1):
        raise BundleError(
            f"{where}the archive expands {total / max(packed, 1):.0f}x (over the {limits.max_ratio:.0f}x cap: "
            "a zip bomb?); refused"
        )
    return files


def _listed(zf: zipfile.ZipFile, files: list[str], source: str) -> list[str]:
    """``files`` after checking that each one is listed in the archive's bundle.json (read capped):
    an archive holding anything else is refused before a byte is extracted."""
    if _MANIFEST not in files:
        raise BundleError(f"{source}: not a bundle (no {_MANIFEST}); export one with `voxseg export`")
    info = zf.getinfo(_MANIFEST)
    with zf.open(info) as fh:
        text = fh.read(MAX_JSON_BYTES + 1)
    data = loads_json(text, source=f"{source}: {_MANIFEST}", error=BundleError, fix="export the bundle again")
    listed = data.get("files") if isinstance(data, dict) else None
    if not isinstance(listed, dict):
        raise BundleError(f"{source}: {_MANIFEST} has no 'files' table; refused (export the bundle again)")
    for name in files:
        if name != _MANIFEST and name not in listed:
            raise BundleError(f"{source}: {name!r} is not listed in {_MANIFEST}; refused (tampered bundle?)")
    return files


def _copy_capped(src, dst, name: str, cap: int, where: str) -> int:
    done = 0
    while chunk := src.read(1 << 20):
        done += len(chunk)
        if done > cap:
            raise BundleError(f"{where}archive member {name!r} is larger than it declares; refused")
        dst.write(chunk)
    return done


def extract_zip(path: str | Path, target: str | Path, *, limits: ArchiveLimits = ArchiveLimits()) -> Path:
    """Extract the zip at ``path`` into the new folder ``target``, atomically and safely.

    Everything is checked first (:func:`check_zip`), extracted into a temporary sibling folder and
    renamed onto ``target`` at the end, so ``target`` either holds the complete archive or does
    not exist. ``target`` must not exist.
    """
    path, target = Path(path), Path(target)
    if target.exists():
        raise BundleError(f"{target}: already exists; refusing to extract over it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        with _open_zip(path) as zf:
            names = _listed(zf, check_zip(zf, limits=limits, source=str(path)), str(path))
            total = 0
            for name in names:
                info = zf.getinfo(name)
                dest = tmp.joinpath(*name.split("/"))
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "xb") as dst:
                    total += _copy_capped(src, dst, name, info.file_size, f"{path}: ")
                if total > limits.max_total_bytes:
                    raise BundleError(f"{path}: the archive expands to more than {limits.max_total_bytes} bytes")
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_zip_members(path: str | Path, *, limits: ArchiveLimits = ArchiveLimits()) -> ZipMembers:
    """The regular members of the zip at ``path``, after the same checks as extraction, read
    lazily: a member's bytes are read (capped at its declared size) when asked for, and
    :meth:`ZipMembers.sha256` hashes a member by streaming it."""
    path = Path(path)
    with _open_zip(path) as zf:
        names = _listed(zf, check_zip(zf, limits=limits, source=str(path)), str(path))
        sizes = {name: zf.getinfo(name).file_size for name in names}
    return ZipMembers(path, sizes)


class ZipMembers(Mapping[str, bytes]):
    """Checked members of a zip, read on demand (``members[name]``), never all at once."""

    def __init__(self, path: Path, sizes: dict[str, int]):
        self.path, self.sizes = path, sizes

    def __getitem__(self, name: str) -> bytes:
        return b"".join(self.chunks(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self.sizes)

    def __len__(self) -> int:
        return len(self.sizes)

    def chunks(self, name: str, limit: int | None = None) -> Iterator[bytes]:
        """The member's bytes in 1 MiB chunks (the first ``limit`` bytes when given)."""
        declared = self.sizes[name]
        done = 0
        with _open_zip(self.path) as zf, zf.open(name) as src:
            while chunk := src.read(_MIB):
                done += len(chunk)
                if done > declared:
                    raise BundleError(f"{self.path}: archive member {name!r} is larger than it declares; refused")
                yield chunk
                if limit is not None and done >= limit:
                    return

    def sha256(self, name: str) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks(name):
            digest.update(chunk)
        return digest.hexdigest()

    def head(self, name: str, limit: int) -> bytes:
        return b"".join(self.chunks(name, limit))[:limit]


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise BundleError(f"{path}: no such bundle file") from None
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BundleError(f"{path}: not a readable zip archive ({exc}); download or export it again") from None


def folder_files(root: str | Path) -> Iterator[tuple[str, Path]]:
    """``(relative posix name, path)`` of every file under ``root``, refusing symlinks and specials."""
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for name in sorted(dirnames) + sorted(filenames):
            path = base / name
            rel = path.relative_to(root).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise BundleError(f"{root}: {rel!r} is a symbolic link (bundles hold regular files only); refused")
            if name in filenames and not stat.S_ISREG(mode):
                raise BundleError(f"{root}: {rel!r} is not a regular file; refused")
            if name in filenames:
                yield rel, path
        dirnames.sort()


def check_folder(root: str | Path, *, limits: ArchiveLimits = ArchiveLimits()) -> list[str]:
    """Check a bundle folder like an archive (symlinks, pickles, sizes); return its files' names."""
    root = Path(root)
    names, total = [], 0
    for rel, path in folder_files(root):
        if PurePosixPath(rel).suffix.lower() in PICKLE_SUFFIXES:
            raise BundleError(f"{root}: {rel!r} is a pickle-based file; bundles hold safetensors weights only; refused")
        size = path.stat().st_size
        if size > limits.max_member_bytes:
            raise BundleError(f"{root}: {rel!r} is {size} bytes, over the {limits.max_member_bytes}-byte cap")
        total += size
        names.append(rel)
    if total > limits.max_total_bytes:
        raise BundleError(f"{root}: holds {total} bytes, over the {limits.max_total_bytes}-byte cap")
    return names
