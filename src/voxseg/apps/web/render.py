"""Pictures for the web app: one slice with the labels overlaid (filled or contour), and the PNG report.

Slices are shown with their physical aspect ratio (anisotropic voxels are stretched), the
intensity window is the image's 0.5-99.5 percentile range, and label colours are those of
:data:`voxseg.io.pictures.LABEL_COLORS`. Views along axis 1 and 2 of a 3D image put axis 0 (z) up.
numpy + Pillow only.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from voxseg.errors import ConfigError
from voxseg.io import Volume
from voxseg.io.pictures import LABEL_COLORS, ascii_text, render_overview

__all__ = [
    "OVERLAY_MODES",
    "AXIS_NAMES",
    "ascii_text",
    "intensity_window",
    "slice_of",
    "render_slice",
    "report_png",
]

OVERLAY_MODES = ("filled", "contour")
AXIS_NAMES = ("axial (z)", "coronal (y)", "sagittal (x)")


def intensity_window(volume: Volume) -> tuple[float, float]:
    """The 0.5 and 99.5 percentiles of the finite voxels (computed on at most ~1 M voxels)."""
    arr = np.asarray(volume.array)
    step = max(1, arr.size // 1_000_000)
    sample = arr.reshape(-1)[::step].astype(np.float32)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(sample, [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def slice_of(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` along ``axis`` of a 3D array as it is displayed (z up for axes 1 and 2)."""
    if array.ndim == 2:
        return array
    plane = np.take(array, index, axis=axis)
    return plane if axis == 0 else np.flipud(plane)


def _pixel_mm(volume: Volume, axis: int) -> tuple[float, float]:
    sp = volume.spacing
    if volume.ndim == 2:
        return sp[0], sp[1]
    rows_cols = [a for a in range(3) if a != axis]
    return sp[rows_cols[0]], sp[rows_cols[1]]


def _display_size(shape: tuple[int, int], mm: tuple[float, float], size: int) -> tuple[int, int]:
    """(width, height) in pixels with the physical aspect ratio and the longest side ``size``."""
    h_mm, w_mm = shape[0] * mm[0], shape[1] * mm[1]
    scale = size / max(h_mm, w_mm)
    return max(1, round(w_mm * scale)), max(1, round(h_mm * scale))


def _eroded(mask: np.ndarray) -> np.ndarray:
    m = mask.copy()
    m[1:, :] &= mask[:-1, :]
    m[:-1, :] &= mask[1:, :]
    m[:, 1:] &= mask[:, :-1]
    m[:, :-1] &= mask[:, 1:]
    return m


def _colors(labels: np.ndarray) -> np.ndarray:
    idx = labels.astype(np.int64)
    idx = np.where(idx > 0, (idx - 1) % (len(LABEL_COLORS) - 1) + 1, 0)
    return LABEL_COLORS[idx].astype(np.float32)


def render_slice(
    image: Volume,
    labels: Volume | None = None,
    *,
    axis: int = 0,
    index: int | None = None,
    mode: str = "filled",
    opacity: float = 0.5,
    window: tuple[float, float] | None = None,
    size: int = 512,
) -> np.ndarray:
    """An RGB picture (``(H, W, 3)`` uint8) of one slice with the labels overlaid.

    Parameters
    ----------
    image, labels
        The image and a label map on its grid (None: the image alone).
    axis, index
        For 3D: the axis sliced and the slice (default the middle). Ignored for 2D.
    mode
        ``"filled"`` (colour blended with ``opacity``) or ``"contour"`` (outlines; ``opacity``
        blends the outline).
    opacity
        In ``[0, 1]``.
    window
        Intensity range mapped to black..white (default :func:`intensity_window`).
    size
        Pixels along the longest physical side.
    """
    if mode not in OVERLAY_MODES:
        raise ConfigError(f"unknown overlay mode {mode!r} (choose from {', '.join(OVERLAY_MODES)})")
    if not 0 <= opacity <= 1:
        raise ConfigError(f"opacity must be in [0, 1], got {opacity}")
    if labels is not None and labels.shape != image.shape:
        raise ConfigError(f"labels of shape {labels.shape} do not lie on the image's grid {image.shape}")
    if image.ndim == 3:
        if not 0 <= axis < 3:
            raise ConfigError(f"axis must be 0, 1 or 2, got {axis}")
        index = image.shape[axis] // 2 if index is None else min(max(int(index), 0), image.shape[axis] - 1)
    lo, hi = window or intensity_window(image)
    plane = slice_of(np.asarray(image.array), axis, index or 0).astype(np.float32)
    grey = (np.clip((plane - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    wh = _display_size(grey.shape, _pixel_mm(image, axis), size)
    grey = np.asarray(Image.fromarray(grey).resize(wh, Image.Resampling.BILINEAR))
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    if labels is not None:
        lab_plane = slice_of(np.asarray(labels.array), axis, index or 0)
        lab = np.asarray(Image.fromarray(lab_plane.astype(np.int32)).resize(wh, Image.Resampling.NEAREST))
        fg = lab > 0
        if mode == "contour":  # a 2-pixel outline at display resolution
            fg = fg & ~_eroded(_eroded(fg))
        colors = _colors(lab)
        rgb[fg] = (1 - opacity) * rgb[fg] + opacity * colors[fg]
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _text_panel(lines: Sequence[str], width: int) -> Image.Image:
    font = ImageFont.load_default()
    line_h = 14
    panel = Image.new("RGB", (width, 8 + line_h * len(lines)), (20, 20, 20))
    draw = ImageDraw.Draw(panel)
    for k, line in enumerate(lines):
        draw.text((6, 4 + k * line_h), line, fill=(235, 235, 235), font=font)
    return panel


def report_png(
    images: Sequence[Volume],
    labels: Volume,
    *,
    title: str,
    lines: Sequence[str],
    label_names: Mapping[int, str] | None = None,
) -> bytes:
    """The PNG report: the overview picture (slices through the largest label area) and text lines."""
    lines = [ascii_text(line) for line in lines]
    overview = render_overview(list(images)[:1], labels, title=ascii_text(title), label_names=label_names)
    font = ImageFont.load_default()
    width = max(overview.width, *(int(font.getlength(s)) + 12 for s in lines)) if lines else overview.width
    text = _text_panel(lines, width)
    canvas = Image.new("RGB", (width, overview.height + text.height), (20, 20, 20))
    canvas.paste(overview, (0, 0))
    canvas.paste(text, (0, overview.height))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()
