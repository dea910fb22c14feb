"""Finding the cases of "a folder of images and a folder of masks" (or a CSV/TSV of pairs).

Names are matched the way people name their files::

    images/liver_01.nii.gz        masks/liver_01_seg.nrrd         (mask suffixes: _seg, _mask, _label(s), _gt, -seg ...)
    images/p7_0000.nii.gz         masks/p7.nii.gz                 (_0000, _0001: channels of one case)
    images/p7_0001.mha
    images/slide3.tif             masks/slide3.png                (extensions may differ)
    images/ct_12/  (DICOM series) masks/ct_12_mask.nii.gz         (a sub-folder is a DICOM series)

Nothing is read here but folder listings and the CSV: the images are checked by
:mod:`voxseg.dataset.importer`. Every file that cannot be placed is listed as a
:class:`~voxseg.dataset.verify.Problem`, never dropped silently.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from voxseg.dataset.problem import CHANNEL_RE, Problem
from voxseg.errors import DatasetFormatError
from voxseg.io import image_suffix, is_image_file

__all__ = [
    "SourceCase",
    "Pairing",
    "MASK_SUFFIXES",
    "IMAGE_DIR_NAMES",
    "MASK_DIR_NAMES",
    "pair_folders",
    "pair_single_folder",
    "pair_table",
    "mask_key",
    "looks_like_image_mask_folder",
    "import_hint",
    "input_digest",
]

MASK_SUFFIXES = (
    "_segmentation",
    "_seg",
    "_masks",
    "_mask",
    "_labels",
    "_label",
    "_gt",
    "-seg",
    "-mask",
    "-label",
    "-gt",
)
IMAGE_DIR_NAMES = ("images", "image", "imgs", "img", "volumes", "scans", "raw")
MASK_DIR_NAMES = ("masks", "mask", "labels", "label", "segmentations", "segs", "seg", "gt", "annotations")
_TABLE_SUFFIXES = (".csv", ".tsv")
_CASE_COLUMNS = ("case", "case_id", "id", "name")


@dataclass(frozen=True)
class SourceCase:
    """One case to import: its image files (one per channel file, in channel order) and mask."""

    case_id: str
    images: tuple[Path, ...]
    mask: Path | None


@dataclass
class Pairing:
    """Cases found, plus the problems of files that could not be paired."""

    cases: list[SourceCase] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _stem(path: Path) -> str:
    suffix = image_suffix(path) if path.is_file() else ""
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


def mask_key(stem: str) -> str:
    """``stem`` without a mask suffix (``liver_01_seg`` -> ``liver_01``), case-insensitively."""
    lower = stem.lower()
    for suffix in MASK_SUFFIXES:
        if lower.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def safe_case_id(text: str) -> str:
    """A case id usable in file names: runs of other characters than letters, digits, ``.-_`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "case"


def _entries(folder: Path, problems: list[Problem]) -> list[Path]:
    """Image files and sub-folders (DICOM series) of ``folder``; other files listed as warnings."""
    if not folder.is_dir():
        raise DatasetFormatError(f"{folder}: folder not found (give a folder of images and a folder of masks)")
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.name.lower().endswith(".json"):  # hidden files, geometry sidecars
            continue
        if p.is_dir() or is_image_file(p):
            out.append(p)
        else:
            problems.append(Problem(p, "not an image file voxseg reads: left out", "warning"))
    return out


def _group_images(images: list[Path], keys: set[str], problems: list[Problem]) -> dict[str, dict[int, Path]]:
    """{case: {channel: path}}: a ``_XXXX`` ending is a channel unless the whole stem names a mask."""
    groups: dict[str, dict[int, Path]] = {}
    for path in images:
        stem = _stem(path)
        m = CHANNEL_RE.match(stem)
        if stem in keys or m is None:
            case, channel = stem, 0
        else:
            case, channel = m["case"], int(m["channel"])
        chans = groups.setdefault(case, {})
        if channel in chans:  # the problem names the kept file, so the case is refused
            problems.append(
                Problem(chans[channel], f"case {case} channel {channel} is also {path.name}: keep one of the two")
            )
            continue
        chans[channel] = path
    return groups


def _match_masks(masks: list[Path], image_cases: set[str], problems: list[Problem]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in masks:
        stem = _stem(path)
        case = next((k for k in (stem, mask_key(stem)) if k in image_cases), mask_key(stem))
        if case in out:  # the problem names the kept mask, so the case is refused
            problems.append(Problem(out[case], f"second mask for case {case} ({path.name}): keep one of the two"))
            continue
        out[case] = path
    return out


def _build(groups: dict[str, dict[int, Path]], masks: dict[str, Path], problems: list[Problem]) -> Pairing:
    pairing = Pairing(problems=problems)
    for case in sorted(set(groups) | set(masks)):
        if case not in groups:
            problems.append(Problem(masks[case], f"mask without an image (no image named {case}.* or {case}_0000.*)"))
            continue
        chans = groups[case]
        pairing.cases.append(SourceCase(case, tuple(chans[k] for k in sorted(chans)), masks.get(case)))
    return pairing


def pair_folders(images_dir: Path, masks_dir: Path) -> Pairing:
    """Pair the images in ``images_dir`` with the masks in ``masks_dir`` by name (module docstring)."""
    problems: list[Problem] = []
    images = _entries(Path(images_dir), problems)
    masks = _entries(Path(masks_dir), problems)
    keys = {mask_key(_stem(m)) for m in masks} | {_stem(m) for m in masks}
    groups = _group_images(images, keys, problems)
    return _build(groups, _match_masks(masks, set(groups), problems), problems)


def pair_single_folder(folder: Path) -> Pairing:
    """One folder holding images and masks side by side, masks told apart by their suffix (``_seg`` ...)."""
    problems: list[Problem] = []
    entries = _entries(Path(folder), problems)
    masks = [p for p in entries if mask_key(_stem(p)) != _stem(p)]
    images = [p for p in entries if p not in masks]
    keys = {mask_key(_stem(m)) for m in masks}
    groups = _group_images(images, keys, problems)
    return _build(groups, _match_masks(masks, set(groups), problems), problems)


def looks_like_image_mask_folder(folder: Path) -> tuple[Path, Path] | Path | None:
    """``(images_dir, masks_dir)`` sub-folders, the folder itself when it holds ``*_seg`` files next to
    images, or None."""
    if not folder.is_dir():
        return None
    subdirs = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
    images = next((subdirs[n] for n in IMAGE_DIR_NAMES if n in subdirs), None)
    masks = next((subdirs[n] for n in MASK_DIR_NAMES if n in subdirs), None)
    if images is not None and masks is not None:
        return images, masks
    stems = [_stem(p) for p in folder.iterdir() if is_image_file(p)]
    if any(mask_key(s) != s for s in stems) and any(mask_key(s) == s for s in stems):
        return folder
    return None


def _read_rows(table: Path) -> list[list[str]]:
    try:
        text = table.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"{table}: cannot read the table of pairs ({exc})") from None
    if table.suffix.lower() == ".tsv":
        delimiter = "\t"
    else:
        try:
            delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t").delimiter
        except csv.Error:
            delimiter = ","
    rows = [[c.strip() for c in row] for row in csv.reader(text.splitlines(), delimiter=delimiter)]
    return [r for r in rows if any(r) and not r[0].startswith("#")]


def _resolve(base: Path, cell: str) -> Path:
    p = Path(cell).expanduser()
    return p if p.is_absolute() else base / p


def _header(rows: list[list[str]], base: Path) -> list[str] | None:
    """The first row, if it names columns rather than files (none of its cells exists)."""
    first = rows[0]
    if any(c and _resolve(base, c).exists() for c in first):
        return None
    return [c.lower() for c in first]


def pair_table(table: Path) -> Pairing:
    """Cases from a CSV/TSV: ``image[,image2,...],mask`` per row, an optional header (a ``case``
    column names the case), paths relative to the table's folder, an empty mask cell for none."""
    table = Path(table)
    if not table.is_file():
        raise DatasetFormatError(f"{table}: table of pairs not found")
    rows = _read_rows(table)
    if not rows:
        raise DatasetFormatError(f"{table}: no rows (expected image[,image2...],mask per line)")
    header = _header(rows, table.parent)
    body = rows[1:] if header else rows
    case_col = next((header.index(c) for c in _CASE_COLUMNS if header and c in header), None)
    pairing = Pairing()
    seen: dict[str, int] = {}
    for n, row in enumerate(body, start=2 if header else 1):
        cells = [c for k, c in enumerate(row) if k != case_col]
        if len(cells) < 2:
            pairing.problems.append(Problem(table, f"line {n}: expected image[,image2...],mask, got {row}"))
            continue
        images = tuple(_resolve(table.parent, c) for c in cells[:-1])
        mask = _resolve(table.parent, cells[-1]) if cells[-1] else None
        missing = [p for p in (*images, mask) if p is not None and not p.exists()]
        if missing:
            pairing.problems.append(Problem(missing[0], f"listed on line {n} of {table.name} but not found"))
            continue
        if case_col is not None and row[case_col]:
            case = row[case_col]
        else:
            case = mask_key(_stem(mask)) if mask is not None else _stem(images[0])
            m = CHANNEL_RE.match(case)
            case = m["case"] if m and mask is None else case
        case = safe_case_id(case)
        if case in seen:
            pairing.problems.append(
                Problem(table, f"line {n}: case name {case} also on line {seen[case]} (add a 'case' column)")
            )
            continue
        seen[case] = n
        pairing.cases.append(SourceCase(case, images, mask))
    return pairing


def is_table(path: Path) -> bool:
    return Path(path).suffix.lower() in _TABLE_SUFFIXES


def case_problems(problems: Iterable[Problem], case: SourceCase) -> list[Problem]:
    """The pairing problems about one of ``case``'s files (a duplicate channel or mask)."""
    files = {*case.images, case.mask}
    return [p for p in problems if p.path in files and p.severity == "error"]


def import_hint(folder: Path) -> str:
    """For a folder that is not a dataset yet: the ``voxseg dataset import`` command that makes one
    (empty when the folder does not look like images and masks)."""
    found = looks_like_image_mask_folder(Path(folder))
    if found is None:
        return ""
    out = Path(folder).parent / f"{Path(folder).name}_dataset"
    if isinstance(found, tuple):
        return f"voxseg dataset import {found[0]} {found[1]} -o {out}"
    return f"voxseg dataset import {found} -o {out}"


def input_digest(paths: Sequence[Path]) -> str:
    """sha1 of the names, sizes and modification times of every input file."""
    h = hashlib.sha1()
    for top in paths:
        files = sorted(top.rglob("*")) if top.is_dir() else [top]
        for f in files:
            if f.is_file():
                st = f.stat()
                h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()
