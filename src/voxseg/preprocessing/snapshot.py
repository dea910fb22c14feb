"""Snapshot pictures of preprocessing: raw, resampled and normalized mid-slices of one case."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from voxseg.fingerprint.cropping import crop
from voxseg.io import Volume, atomic_path
from voxseg.io.pictures import render_overview

from .pipeline import PreprocessedCase
from .resampling import resample_to_shape

__all__ = ["snapshot_png", "render_snapshot"]


def _fmt(values: Sequence[float]) -> str:
    return "x".join(f"{v:.3g}" for v in values)


def _resampled_raw(raw: Volume, case: PreprocessedCase) -> np.ndarray:
    """The raw channel cropped and resampled like the case, without normalization."""
    props = case.properties
    region = np.nan_to_num(crop(raw.array, props.crop_box).astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return resample_to_shape(region, props.shape_after_resampling, order=3, lowres_axis=props.lowres_axis)


def render_snapshot(
    case_id: str,
    raw_images: Sequence[Volume],
    preprocessed: PreprocessedCase,
    *,
    raw_label: Volume | None = None,
    label_names: Mapping[int, str] | None = None,
    ignore_label: int | None = None,
) -> Image.Image:
    """Three stacked overviews: raw; cropped + resampled (raw intensities); normalized (the stored data)."""
    props, data = preprocessed.properties, preprocessed.data
    grid = props.preprocessed_geometry()
    label = None if preprocessed.label is None else Volume.like(preprocessed.label, grid)
    stages = [
        (f"{case_id}  raw  {_fmt(props.original_shape)} vox  spacing {_fmt(props.spacing)} mm", raw_images, raw_label),
        (
            f"cropped + resampled  {_fmt(props.shape_after_resampling)} vox  spacing {_fmt(grid.spacing)} mm",
            [Volume.like(_resampled_raw(img, preprocessed), grid) for img in raw_images],
            label,
        ),
        (
            f"normalized (stored)  values {float(np.min(data)):.3g} .. {float(np.max(data)):.3g}",
            [Volume.like(ch, grid) for ch in preprocessed.data],
            label,
        ),
    ]
    pictures = [
        render_overview(imgs, lab, title=title, label_names=label_names, ignore_label=ignore_label)
        for title, imgs, lab in stages
    ]
    width = max(p.width for p in pictures)
    canvas = Image.new("RGB", (width, sum(p.height for p in pictures)), (20, 20, 20))
    y = 0
    for p in pictures:
        canvas.paste(p, (0, y))
        y += p.height
    return canvas


def snapshot_png(
    case_id: str,
    raw_images: Sequence[Volume],
    preprocessed: PreprocessedCase,
    path: str | Path,
    *,
    raw_label: Volume | None = None,
    label_names: Mapping[int, str] | None = None,
    ignore_label: int | None = None,
) -> Path:
    """Write :func:`render_snapshot` as a PNG (atomically) and return its path."""
    picture = render_snapshot(
        case_id, raw_images, preprocessed, raw_label=raw_label, label_names=label_names, ignore_label=ignore_label
    )
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
    return Path(path)
