"""Atomic file writing: write to a temporary file in the target folder, then rename.

A reader never sees a half-written file, and an interrupted write leaves the old file (if any)
untouched. The temporary name keeps the target's suffix so format-by-suffix writers work.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()

__all__ = ["atomic_path", "write_text_atomic", "write_json_atomic", "full_suffix"]


def full_suffix(path: str | Path) -> str:
    """The image suffix of ``path``, lower-case, with double suffixes like ``.nii.gz`` kept."""
    name = Path(path).name.lower()
    for double in (".nii.gz", ".ome.tiff", ".ome.tif", ".seg.nrrd"):
        if name.endswith(double):
            return double
    return Path(name).suffix


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success rename it onto ``target``.

    The parent folder is created if needed. On error the temporary file is removed and the
    original ``target`` (if any) is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = full_suffix(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
