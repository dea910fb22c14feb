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

import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from voxseg.bundle._util import PICKLE_SUFFIXES
from voxseg.errors import BundleError

__all__ = ["ArchiveLimits", "check_zip", "extract_zip", "read_zip_members", "check_folder", "folder_files"]

_MIB = 1 << 20


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
        Largest compression ratio of a member bigger than 1 MiB (zip-bomb guard).
    max_members
        Most members in one archive.
    """

    max_member_bytes: int = 4 << 30
    max_total_bytes: int = 8 << 30
    max_ratio: float = 200.0
    max_members: int = 10_000


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
    files, total = [], 0
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
            elif info.file_size > _MIB and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                problem = (
                    f"expands {info.file_size / max(info.compress_size, 1):.0f}x "
                    f"(over the {limits.max_ratio:.0f}x cap: a zip bomb?)"
                )
        if problem:
            raise BundleError(f"{where}archive member {name!r} {problem}; refused")
        seen.add(key)
        if not info.is_dir():
            total += info.file_size
            files.append(key)
    if total > limits.max_total_bytes:
        raise BundleError(
            f"{where}the archive expands to {total} bytes, over the {limits.max_total_bytes}-byte cap; refused"
        )
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
            names = check_zip(zf, limits=limits, source=str(path))
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


def read_zip_members(path: str | Path, *, limits: ArchiveLimits = ArchiveLimits()) -> dict[str, bytes]:
    """All regular members of the zip at ``path`` in memory, after the same checks as extraction."""
    path = Path(path)
    out: dict[str, bytes] = {}
    with _open_zip(path) as zf:
        for name in check_zip(zf, limits=limits, source=str(path)):
            info = zf.getinfo(name)
            with zf.open(info) as src:
                data = src.read(info.file_size + 1)
            if len(data) > info.file_size:
                raise BundleError(f"{path}: archive member {name!r} is larger than it declares; refused")
            out[name] = data
    return out


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
