"""voxseg's pictures (numpy + Pillow): overviews of an image with its label overlaid, and the
training progress curves (``progress.png``).

Used by ``voxseg dataset show``, preprocessing snapshots, the demo, the web app, the docs' phantom
pictures and the training loop.
For 3D images the three orthogonal slices through the largest label area (the middle when the
label is empty) are shown, each scaled to its physical aspect ratio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from voxseg.io import Volume, atomic_path

__all__ = ["overview_png", "render_overview", "LABEL_COLORS", "ascii_text", "plot_history"]

#: Characters Pillow's built-in font lacks (they come out as a missing-glyph box), and what to draw instead.
_ASCII = str.maketrans({"³": "^3", "²": "^2", "×": "x", "≥": ">=", "≤": "<=", "–": "-", "μ": "u"})


def ascii_text(text: str) -> str:
    """``text`` as the report's font can draw it: ``mm³`` -> ``mm^3``, ``0.5 × 0.5`` -> ``0.5 x 0.5``."""
    return text.translate(_ASCII)


LABEL_COLORS = np.array(
    [
        (0, 0, 0),
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 212),
    ],
    dtype=np.uint8,
)
_IGNORE_COLOR = np.array((90, 90, 90), dtype=np.uint8)
_PANEL = 256  # pixels along the longest physical extent of a panel


def _window(arr: np.ndarray) -> tuple[float, float]:
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return 0.0, 1.0
    sample = finite if finite.size <= 200_000 else finite[:: finite.size // 200_000]
    lo, hi = np.percentile(sample, [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _slice_indices(shape: tuple[int, ...], label: np.ndarray | None) -> list[int]:
    if label is None or not np.any(label > 0):
        return [s // 2 for s in shape]
    fg = label > 0
    out = []
    for axis in range(fg.ndim):
        other = tuple(a for a in range(fg.ndim) if a != axis)
        out.append(int(np.argmax(fg.sum(axis=other))))
    return out


def _panels(vol: Volume, index: list[int]) -> list[tuple[np.ndarray, tuple[float, float]]]:
    """2D slices (rows, cols) with their pixel size (mm) along rows and columns."""
    a, sp = vol.array, vol.spacing
    if vol.ndim == 2:
        return [(a, (sp[0], sp[1]))]
    z, y, x = index
    return [
        (a[z], (sp[1], sp[2])),
        (np.flipud(a[:, y, :]), (sp[0], sp[2])),
        (np.flipud(a[:, :, x]), (sp[0], sp[1])),
    ]


def _resize(arr: np.ndarray, size_mm: tuple[float, float], nearest: bool) -> np.ndarray:
    h_mm, w_mm = arr.shape[0] * size_mm[0], arr.shape[1] * size_mm[1]
    scale = _PANEL / max(h_mm, w_mm)
    size = (max(1, round(w_mm * scale)), max(1, round(h_mm * scale)))
    img = Image.fromarray(arr)
    return np.asarray(img.resize(size, Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR))


def _colorize(grey: np.ndarray, label: np.ndarray | None, ignore_label: int | None, alpha: float) -> np.ndarray:
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    if label is not None:
        lab = label.astype(np.int64)
        colors = LABEL_COLORS[np.clip(lab, 0, len(LABEL_COLORS) - 1)].astype(np.float32)
        if ignore_label is not None:
            colors[lab == ignore_label] = _IGNORE_COLOR
        fg = (lab > 0)[..., None]
        a = np.where(lab == ignore_label, alpha * 0.5, alpha)[..., None] if ignore_label is not None else alpha
        rgb = np.where(fg, (1 - a) * rgb + a * colors, rgb)
        edge = fg[..., 0] & ~_eroded(lab > 0)
        rgb[edge] = colors[edge]
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _eroded(mask: np.ndarray) -> np.ndarray:
    m = mask.copy()
    m[1:, :] &= mask[:-1, :]
    m[:-1, :] &= mask[1:, :]
    m[:, 1:] &= mask[:, :-1]
    m[:, :-1] &= mask[:, 1:]
    return m


def render_overview(
    images: Sequence[Volume],
    label: Volume | None = None,
    *,
    title: str = "",
    label_names: Mapping[int, str] | None = None,
    ignore_label: int | None = None,
    alpha: float = 0.45,
) -> Image.Image:
    """Render channel images (one row each) with the label overlaid on the first row."""
    first = images[0]
    lab_arr = label.array if label is not None else None
    fg_for_slices = None if lab_arr is None else np.where(lab_arr == ignore_label, 0, lab_arr)
    index = _slice_indices(first.shape, fg_for_slices)
    rows = []
    for row, vol in enumerate(images):
        lo, hi = _window(vol.array)
        tiles = []
        lab_panels = _panels(label, index) if (label is not None and row == 0) else None
        for k, (arr, mm) in enumerate(_panels(vol, index)):
            grey = (np.clip((arr.astype(np.float32) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
            grey = _resize(grey, mm, nearest=False)
            lab = None
            if lab_panels is not None:
                lab = _resize(lab_panels[k][0].astype(np.uint8), mm, nearest=True)
            tiles.append(_colorize(grey, lab, ignore_label, alpha))
        rows.append(tiles)
    return _compose(rows, title, label_names, ignore_label)


def _compose(
    rows: list[list[np.ndarray]], title: str, label_names: Mapping[int, str] | None, ignore_label: int | None
) -> Image.Image:
    gap, header = 4, 18 if title else 0
    title = ascii_text(title)
    legend = [(v, ascii_text(n)) for v, n in sorted((label_names or {}).items()) if v > 0]
    legend_h = 16 if legend else 0
    font = ImageFont.load_default()
    text_w = int(font.getlength(title)) + 2 * gap if title else 0
    legend_w = sum(24 + 7 * len(f"{v} {n}") for v, n in legend) + gap
    width = max(*(sum(t.shape[1] for t in r) + gap * (len(r) + 1) for r in rows), text_w, legend_w)
    height = header + legend_h + sum(max(t.shape[0] for t in r) + gap for r in rows) + gap
    canvas = Image.new("RGB", (width, height), (20, 20, 20))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((gap, 3), title, fill=(235, 235, 235), font=font)
    y = header + gap
    for r in rows:
        x = gap
        for t in r:
            canvas.paste(Image.fromarray(t), (x, y))
            x += t.shape[1] + gap
        y += max(t.shape[0] for t in r) + gap
    x = gap
    for value, name in legend:
        color = tuple(
            int(c) for c in (_IGNORE_COLOR if value == ignore_label else LABEL_COLORS[value % len(LABEL_COLORS)])
        )
        draw.rectangle((x, y + 2, x + 10, y + 12), fill=color)
        draw.text((x + 14, y + 1), f"{value} {name}", fill=(235, 235, 235), font=font)
        x += 24 + 7 * len(f"{value} {name}")
    return canvas


def overview_png(
    images: Sequence[Volume],
    label: Volume | None,
    path: str | Path,
    *,
    title: str = "",
    label_names: Mapping[int, str] | None = None,
    ignore_label: int | None = None,
) -> Path:
    """Write :func:`render_overview` as a PNG to ``path`` atomically; return the path."""
    img = render_overview(images, label, title=title, label_names=label_names, ignore_label=ignore_label)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)


# ---- training progress (progress.png) ----------------------------------------------------------
_CURVE_COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189)]


def plot_history(history: Sequence[dict], path: str | Path, *, size: tuple[int, int] = (640, 360)) -> Path:
    """Plot every numeric series of ``history`` (loss, val_dice, ...) against epoch; each series
    is scaled to its own min-max so losses and Dice share one plot (the legend gives the ranges)."""
    w, h = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    keys = [k for k in (history[0] if history else {}) if k not in ("epoch", "seconds", "lr")]
    keys = [k for k in keys if all(isinstance(e.get(k), (int, float)) for e in history)]
    left, right, top, bottom = 40, w - 10, 30, h - 30
    draw.rectangle((left, top, right, bottom), outline=(120, 120, 120))
    n = len(history)
    for j, key in enumerate(keys):
        values = [float(e[key]) for e in history]
        lo, hi = min(values), max(values)
        span = hi - lo or 1.0
        pts = [
            (left + (right - left) * (i / max(n - 1, 1)), bottom - (bottom - top) * ((v - lo) / span))
            for i, v in enumerate(values)
        ]
        color = _CURVE_COLORS[j % len(_CURVE_COLORS)]
        if len(pts) > 1:
            draw.line(pts, fill=color, width=2)
        for p in pts:
            draw.ellipse((p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2), fill=color)
        draw.text((left + 5 + 150 * j, 8), f"{key} [{lo:.3g}, {hi:.3g}]", fill=color, font=font)
    draw.text((left, bottom + 8), f"epochs 1..{n}", fill=(60, 60, 60), font=font)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)
