"""``progress.png``: training curves drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from voxseg.io import atomic_path

__all__ = ["plot_history"]

_COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189)]


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
        color = _COLORS[j % len(_COLORS)]
        if len(pts) > 1:
            draw.line(pts, fill=color, width=2)
        for p in pts:
            draw.ellipse((p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2), fill=color)
        draw.text((left + 5 + 150 * j, 8), f"{key} [{lo:.3g}, {hi:.3g}]", fill=color, font=font)
    draw.text((left, bottom + 8), f"epochs 1..{n}", fill=(60, 60, 60), font=font)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)
