"""Crop the images and label of each case to an index range or to the label's bounding box.

Used to drop badly annotated end slices of pseudo-labelled volumes (the spinal-cord seed's
``crop_image_and_mask.py``) or to cut volumes down to the labelled region plus a margin. The
cropped volumes keep their world position: the new origin is the world position of the first
kept voxel (``origin + direction @ (start * spacing)``), so any physical point maps to the same
intensity before and after, whatever the direction matrix.

Boxes are in array order (``z, y, x``), Python-style: ``"10:50,:,:"``, ``"5:-5,:,:"``.
Margins are voxels (``5``) or millimetres (``2mm``; ``um`` for micrometres), one value for all
axes or one per axis (``"2mm,0,0"``).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from voxseg.dataset.layout import Case, DatasetWriter, read_dataset
from voxseg.dataset.slices import check_output_folder
from voxseg.errors import ConfigError, DatasetFormatError
from voxseg.io import Volume, read_image, write_json_atomic

__all__ = [
    "Box",
    "CroppedCase",
    "EmptyCropError",
    "crop_case",
    "crop_dataset",
    "crop_volume",
    "label_bbox",
    "parse_box",
    "parse_margin",
]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
Box = tuple[tuple[int, int], ...]  # per axis (start, stop), stop exclusive
MarginText = int | float | str | Sequence[int | float | str]
CROP_JSON = "crop.json"
_MARGIN_RE = re.compile(r"^\s*(?P<value>[0-9]*\.?[0-9]+)\s*(?P<unit>mm|um|µm|vox|)\s*$")


def parse_box(box: str | Sequence[slice | tuple[int | None, int | None]], shape: Sequence[int]) -> Box:
    """Resolve a box (``"10:50,:,:"`` or slices) against ``shape`` to ``((start, stop), ...)``.

    Negative indices count from the end, omitted bounds are the ends, as in Python slicing.
    Raises ConfigError for malformed text, the wrong number of axes, or an empty range.
    """
    text = box if isinstance(box, str) else None
    parts = [p.strip() for p in box.split(",")] if isinstance(box, str) else list(box)
    if len(parts) != len(shape):
        raise ConfigError(f"box {box!r}: {len(parts)} axes for a {len(shape)}D image (e.g. '10:50,:,:')")
    out = []
    for axis, (part, n) in enumerate(zip(parts, shape, strict=True)):
        sl = _parse_range(part, text or str(box)) if isinstance(part, str) else _as_slice(part)
        if sl.step not in (None, 1):
            raise ConfigError(f"box {box!r}: steps are not supported (axis {axis})")
        start, stop, _ = sl.indices(n)
        if stop <= start:
            raise ConfigError(
                f"box {box!r}: axis {axis} range {part} selects no voxel of {n} (image shape {tuple(shape)})"
            )
        out.append((start, stop))
    return tuple(out)


def _as_slice(part: slice | tuple[int | None, int | None]) -> slice:
    return part if isinstance(part, slice) else slice(*part)


def _parse_range(part: str, text: str) -> slice:
    try:
        if ":" not in part:
            raise ValueError
        lo, hi = part.split(":")
        return slice(int(lo) if lo.strip() else None, int(hi) if hi.strip() else None)
    except ValueError:
        raise ConfigError(f"box {text!r}: {part!r} is not a range like 10:50, 5:, :-5 or :") from None


def parse_margin(margin: MarginText, spacing: Sequence[float]) -> tuple[int, ...]:
    """Margin per axis in voxels: ``5`` voxels, ``"2mm"`` (rounded up with the axis spacing), per axis.

    Raises ConfigError for a negative or malformed value.
    """
    ndim = len(spacing)
    if isinstance(margin, str):
        items: list[Any] = [p for p in margin.split(",")]
    elif isinstance(margin, (int, float)):
        items = [margin]
    else:
        items = list(margin)
    if len(items) == 1:
        items = items * ndim
    if len(items) != ndim:
        raise ConfigError(f"margin {margin!r}: give one value or {ndim} (one per axis)")
    return tuple(_margin_voxels(item, sp, margin) for item, sp in zip(items, spacing, strict=True))


def _margin_voxels(item: int | float | str, spacing: float, whole: Any) -> int:
    if isinstance(item, (int, float)):
        value, unit = float(item), ""
    else:
        m = _MARGIN_RE.match(str(item))
        if m is None:
            raise ConfigError(f"margin {whole!r}: {item!r} is not a voxel count (5) or a length (2mm, 50um)")
        value, unit = float(m["value"]), m["unit"]
    if value < 0 or not math.isfinite(value):
        raise ConfigError(f"margin {whole!r}: must be zero or positive")
    if unit in ("", "vox"):
        if value != int(value):
            raise ConfigError(f"margin {whole!r}: {item!r} voxels is not a whole number (add 'mm' for a length)")
        return int(value)
    mm = value / 1000.0 if unit in ("um", "µm") else value
    return math.ceil(mm / spacing - 1e-6)


def label_bbox(label: np.ndarray, *, ignore_label: int | None = None) -> Box | None:
    """Bounding box of the foreground (labels other than 0 and ``ignore_label``), or None if empty."""
    fg = label != 0
    if ignore_label is not None:
        fg &= label != ignore_label
    if not fg.any():
        return None
    out = []
    for axis in range(label.ndim):
        other = tuple(a for a in range(label.ndim) if a != axis)
        hits = np.flatnonzero(fg.any(axis=other))
        out.append((int(hits[0]), int(hits[-1]) + 1))
    return tuple(out)


def crop_volume(volume: Volume, box: Box) -> Volume:
    """``volume`` cut to ``box``, its origin moved so every voxel keeps its world position."""
    index = tuple(slice(a, b) for a, b in box)
    origin = volume.index_to_world([a for a, _ in box])
    return Volume(np.ascontiguousarray(volume.array[index]), volume.spacing, origin, volume.direction)


class EmptyCropError(ConfigError):
    """Cropping to the label found no foreground: the result would be empty."""


@dataclass(frozen=True)
class CroppedCase:
    """A cropped case: its channel images, label (or None), the box used and the source shape."""

    images: list[Volume]
    label: Volume | None
    box: Box
    source_shape: tuple[int, ...]


def crop_case(
    images: Sequence[Volume],
    label: Volume | None = None,
    *,
    box: str | Sequence[slice | tuple[int | None, int | None]] | None = None,
    to_label: bool = False,
    margin: MarginText = 0,
    ignore_label: int | None = None,
    name: str = "case",
) -> CroppedCase:
    """Crop one case's channels and label to ``box`` and/or the label's bounding box plus ``margin``.

    With both, the label's bounding box is taken inside ``box`` and the margin is clipped to it.

    Parameters
    ----------
    images
        The channel Volumes (one geometry).
    label
        The label Volume (required with ``to_label``).
    box
        Index ranges in array order, see :func:`parse_box`.
    to_label
        Crop to the bounding box of the foreground (the ignore label excluded).
    margin
        Added around the label's bounding box: voxels or ``"2mm"``, see :func:`parse_margin`.
    ignore_label
        Label value of unannotated voxels (not foreground).
    name
        Case name for error messages.

    Raises
    ------
    ConfigError
        Nothing to crop with, a bad box or margin, or an empty result (an empty label with
        ``to_label``).
    """
    if not images:
        raise ConfigError(f"{name}: no image to crop")
    ref = images[0]
    for vol in [*images[1:], *([label] if label is not None else [])]:
        if not vol.same_geometry(ref):
            raise DatasetFormatError(f"{name}: channels and label differ in geometry; run 'voxseg dataset verify'")
    if box is None and not to_label:
        raise ConfigError(f"{name}: give a box (e.g. '10:50,:,:') or crop to the label")
    try:
        outer = parse_box(box, ref.shape) if box is not None else tuple((0, n) for n in ref.shape)
        pad = parse_margin(margin, ref.spacing)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    if not to_label and any(pad):
        raise ConfigError(f"{name}: a margin only applies when cropping to the label")
    final = outer
    if to_label:
        if label is None:
            raise EmptyCropError(f"{name}: has no label to crop to")
        inner = tuple(slice(a, b) for a, b in outer)
        found = label_bbox(label.array[inner], ignore_label=ignore_label)
        if found is None:
            where = " inside the box" if box is not None else ""
            raise EmptyCropError(f"{name}: label has no foreground{where} to crop to")
        final = tuple(
            (max(lo, lo + a - p), min(hi, lo + b + p)) for (lo, hi), (a, b), p in zip(outer, found, pad, strict=True)
        )
    cropped_label = crop_volume(label, final) if label is not None else None
    return CroppedCase([crop_volume(v, final) for v in images], cropped_label, final, ref.shape)


def _crop_one(case: Case, *, box, to_label, margin, ignore) -> CroppedCase:
    images = [read_image(p) for p in case.images]
    label = read_image(case.label) if case.label is not None else None
    name = f"{case.images[0].parent.parent.name}: case {case.case_id}"
    return crop_case(images, label, box=box, to_label=to_label, margin=margin, ignore_label=ignore, name=name)


def crop_dataset(
    data: str | Path,
    out: str | Path,
    *,
    box: str | None = None,
    to_label: bool = False,
    margin: MarginText = 0,
    empty: Literal["error", "skip"] = "error",
    progress: Progress | None = None,
) -> Path:
    """Write a copy of a dataset with every case cropped (see :func:`crop_case`); return ``out``.

    Training and test cases are cropped alike; ``crop.json`` records each case's box in source
    indices and its original shape. ``dataset.json`` is written last.

    Parameters
    ----------
    data
        Source dataset folder (nnU-Net v2 layout); only read.
    out
        New dataset folder (must not hold a dataset yet).
    box, to_label, margin
        See :func:`crop_case`; the ignore label comes from dataset.json.
    empty
        A case whose crop would be empty (no foreground with ``to_label``): ``"error"`` refuses
        the dataset, ``"skip"`` leaves the case out (logged and recorded in ``crop.json``).
    progress
        Called as ``progress(done, total)`` after each case.
    """
    src, out = Path(data), Path(out)
    ds = read_dataset(src)
    check_output_folder(src, out)
    if empty not in ("error", "skip"):
        raise ConfigError(f"empty={empty!r}: must be 'error' or 'skip'")
    if box is None and not to_label:
        raise ConfigError(f"{src}: give a box (--box 10:50,:,:) or --to-label")
    cases = [*ds.training, *ds.test]
    record: dict[str, Any] = {"source": str(src.resolve()), "box": box, "to_label": to_label, "margin": margin}
    record["cases"], record["skipped"] = {}, []
    writer = DatasetWriter(out, ds.spec)
    for i, case in enumerate(cases):
        test = i >= len(ds.training)
        try:
            cropped = _crop_one(case, box=box, to_label=to_label, margin=margin, ignore=ds.spec.ignore_label)
        except EmptyCropError as exc:
            if empty == "error":
                raise EmptyCropError(f"{exc} (leave such cases out with empty='skip' / --skip-empty)") from None
            log.warning("%s: %s; skipped", src, exc)
            record["skipped"].append(case.case_id)
        else:
            writer.add_case(case.case_id, cropped.images, cropped.label, test=test)
            record["cases"][case.case_id] = {
                "start": [a for a, _ in cropped.box],
                "stop": [b for _, b in cropped.box],
                "source_shape": list(cropped.source_shape),
                "test": test,
            }
        if progress is not None:
            progress(i + 1, len(cases))
    if not record["cases"]:
        raise ConfigError(f"{src}: every case was empty after cropping; nothing written")
    write_json_atomic(out / CROP_JSON, record)
    writer.close()
    return out
