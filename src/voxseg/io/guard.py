"""Refuse outputs that would destroy inputs or foreign files, checked before anything is written.

Every writer of outputs (``voxseg predict`` and the batch API, ``evaluate``, ``pseudo-labels``,
``extract-slices``, ``dataset convert``, bundle export) calls :func:`check_outputs` with the files
it is about to write and the files and folders it reads. An output is refused when

- it *is* an input: the same file under another name, a symlink or a hard link
  (``os.stat`` identity and ``os.path.realpath``);
- it would be written into a folder read as input (a rerun would collect it as an input);
- it exists, was not written by voxseg (``owned``: e.g. the paths a manifest lists) and
  ``overwrite`` is off.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from pathlib import Path

from voxseg.errors import OutputPathError

__all__ = ["check_outputs", "same_file"]


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` are one file or folder (symlinks and hard links included)."""
    ia, ib = _identity(Path(a)), _identity(Path(b))
    if ia is not None and ia == ib:
        return True
    return os.path.realpath(a) == os.path.realpath(b)


def check_outputs(
    outputs: Iterable[str | Path],
    *,
    inputs: Iterable[str | Path] = (),
    input_dirs: Iterable[str | Path] = (),
    owned: Collection[str | Path] | None = None,
    overwrite: bool = False,
    owner: str = "voxseg",
) -> None:
    """Raise :class:`~voxseg.errors.OutputPathError` (naming both paths) if an output is unsafe.

    Parameters
    ----------
    outputs
        Every file about to be written.
    inputs
        Every file read.
    input_dirs
        Folders whose files are collected as inputs (an output may not land in one).
    owned
        Existing files voxseg wrote before and may replace; ``None`` skips the foreign-file check.
    overwrite
        Replace existing files that voxseg did not write.
    owner
        What ``owned`` comes from, for the message (e.g. ``"OUT/predictions.json"``).
    """
    by_id: dict[tuple[int, int], Path] = {}
    by_real: dict[str, Path] = {}
    for f in map(Path, inputs):
        ident = _identity(f)
        if ident is not None:
            by_id.setdefault(ident, f)
        by_real.setdefault(os.path.realpath(f), f)
    dirs = {ident: Path(d) for d in input_dirs if (ident := _identity(Path(d))) is not None}
    owned_real = None if owned is None else {os.path.realpath(p) for p in owned}
    parents: dict[Path, Path | None] = {}
    for out in map(Path, outputs):
        real = os.path.realpath(out)
        exists = os.path.lexists(out)
        ident = _identity(out) if exists else None
        source = by_id.get(ident) if ident is not None else None
        source = source or by_real.get(real)
        if source is not None:
            raise OutputPathError(
                out, f"this output is the input file {source}", "choose an output path that is not an input"
            )
        if out.parent not in parents:
            parent_id = _identity(out.parent)
            parents[out.parent] = dirs.get(parent_id) if parent_id is not None else None
        folder = parents[out.parent]
        if folder is not None:
            raise OutputPathError(
                out,
                f"this output would be written into the input folder {folder} (a rerun would read it as an input)",
                "choose an output folder outside the input folder",
            )
        if exists and owned_real is not None and not overwrite and real not in owned_real:
            raise OutputPathError(
                out,
                f"this file exists and was not written by voxseg (it is not in {owner})",
                "move it away, choose another output folder, or pass --overwrite",
            )
