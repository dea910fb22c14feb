"""Atomic file writing: write to a temporary file in the target folder, then rename.

A reader never sees a half-written file, and an interrupted write leaves the old file (if any)
untouched. Temporary names are ``.NAME.PID.RANDOM.part``: hidden, and never ending in the
target's suffix, so a ``*.nii.gz`` glob (a rerun collecting inputs, a user's script) never picks
one up. A process killed mid-write leaves its ``.part`` behind; the next write of the same target
removes it once the process that owned it (the PID in the name) is gone.
:func:`atomic_dir` is the same for writers that choose the format by the file name (ITK, tifffile):
they write ``.NAME.PID.RANDOM.part/NAME`` and that file is renamed onto the target.
A full disk (``ENOSPC``/``EDQUOT``) is reported as :class:`~voxseg.errors.DiskFullError` naming the
target, with nothing partial left.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from voxseg.errors import DiskFullError


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()
_PART = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^./]+\.part$")
_LEGACY = re.compile(r"^\.(?P<name>.+)\.[^./]{8}\.tmp(\.[^/]*)?$")  # voxseg <= 0.x: .NAME.XXXXXXXX.tmpSUFFIX
_LEGACY_AGE_S = 3600.0  # an old-style temporary carries no PID: remove it only when it is this old
DISK_FULL = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)

log = logging.getLogger(__name__)

__all__ = [
    "atomic_path",
    "atomic_dir",
    "write_text_atomic",
    "write_json_atomic",
    "full_suffix",
    "clean_stale_parts",
    "is_disk_full",
    "nearly_full",
    "DISK_FULL",
]


def full_suffix(path: str | Path) -> str:
    """The image suffix of ``path``, lower-case, with double suffixes like ``.nii.gz`` kept."""
    name = Path(path).name.lower()
    for double in (".nii.gz", ".ome.tiff", ".ome.tif", ".seg.nrrd"):
        if name.endswith(double):
            return double
    return Path(name).suffix


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_stale_parts(folder: str | Path, name: str | None = None) -> list[Path]:
    """Remove temporaries left in ``folder`` by killed writers (of target ``name`` only, if given).

    A ``.NAME.PID.RANDOM.part`` file or folder goes when process PID no longer runs; an old-style
    ``.NAME.XXXXXXXX.tmp...`` one (no PID) when it is over an hour old. Returns what was removed.
    """
    folder = Path(folder)
    pattern = f".{glob_escape(name)}.*" if name else ".*"
    removed = []
    now = time.time()
    for entry in folder.glob(pattern):
        m = _PART.match(entry.name)
        try:
            if m and (name is None or m["name"] == name):
                stale = not _pid_alive(int(m["pid"]))
            else:
                legacy = _LEGACY.match(entry.name)
                stale = bool(legacy and (name is None or legacy["name"] == name))
                stale = stale and now - entry.lstat().st_mtime > _LEGACY_AGE_S
            if not stale:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:  # another process cleaned it first
            continue
        except OSError as exc:
            log.warning("%s: cannot remove a stale temporary file (%s)", entry, exc)
            continue
        log.info("removed %s, left by an interrupted write", entry)
        removed.append(entry)
    return removed


def glob_escape(text: str) -> str:
    """``text`` with glob wildcards escaped."""
    import glob

    return glob.escape(text)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the user's quota) is full; ITK only says it in its message."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return True
    text = str(exc)
    return "No space left on device" in text or "Disk quota exceeded" in text


def nearly_full(folder: Path) -> bool:
    """Whether the filesystem of ``folder`` has under 1 MiB left (ITK's write errors do not say why)."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs (Windows)
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)


def disk_full_error(target: Path) -> DiskFullError:
    return DiskFullError(
        target,
        "disk full while writing this file (No space left on device)",
        "free disk space (or raise the quota) and run the command again",
    )


def _prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success rename it onto ``target``.

    The parent folder is created if needed. On error the temporary file is removed and the
    original ``target`` (if any) is left as it was; a full disk raises :class:`DiskFullError`.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_parts(target.parent, target.name)
    fd, tmp_name = tempfile.mkstemp(prefix=_prefix(target), suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, target)
    except BaseException as exc:
        full = is_disk_full(exc) or (isinstance(exc, (OSError, RuntimeError)) and nearly_full(tmp.parent))
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if full:
            raise disk_full_error(target) from None
        raise


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield ``.NAME.PID.RANDOM.part/NAME`` next to ``target`` for a writer that picks the format by
    name; on success move what it wrote next to ``target`` (extra data files first, ``NAME`` last).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_parts(target.parent, target.name)
    folder = Path(tempfile.mkdtemp(prefix=_prefix(target), suffix=".part", dir=target.parent))
    try:
        tmp = folder / target.name
        yield tmp
        for produced in sorted(folder.iterdir()):
            if produced.name != target.name:
                os.chmod(produced, _FILE_MODE)
                os.replace(produced, target.parent / produced.name)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except BaseException as exc:
        full = is_disk_full(exc) or (isinstance(exc, (OSError, RuntimeError)) and nearly_full(folder))
        shutil.rmtree(folder, ignore_errors=True)
        if full:
            raise disk_full_error(target) from None
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
