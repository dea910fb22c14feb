"""Interactive prompts on the web page: points clicked on displayed slices -> voxels -> a mask.

With an interactive model (``plan.interactive``, e.g. the ``interactive-soft-tissue`` bundle)
the page shows the slices as clickable pictures. The first six clicks are the object's extreme
points (its two ends along z, y and x, on whichever slices show them); later clicks are
corrective clicks, positive (add) or negative (remove). :func:`click_to_voxel` inverts
:func:`voxseg.apps.web.render.render_slice`'s picture geometry (physical aspect ratio, z up for
the coronal and sagittal views); :func:`segment_points` and :func:`refine_clicks` run
:func:`voxseg.interactive.pipeline.segment_from_points` / ``refine`` under the shared model's lock.
numpy + Pillow here; no Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from voxseg.apps.web.logic import LoadedModel, SegmentationResult, _objects, check_channels, summarize
from voxseg.apps.web.uploads import UploadedImage
from voxseg.errors import ConfigError, InputImageError
from voxseg.interactive.roles import points_status

__all__ = ["Prompts", "click_to_voxel", "draw_prompts", "segment_points", "refine_clicks", "POINT_COLORS"]

POINT_COLORS = {"point": (255, 215, 0), "positive": (50, 220, 50), "negative": (230, 40, 200)}


@dataclass
class Prompts:
    """The session's prompts: extreme points, then clicks ``(voxel, positive)``, in voxel indices."""

    points: list[tuple[int, ...]] = field(default_factory=list)
    clicks: list[tuple[tuple[int, ...], bool]] = field(default_factory=list)

    def add(self, voxel: tuple[int, ...], *, positive: bool = True) -> str:
        """A new click: an extreme point while fewer than six, else a corrective click; says which."""
        voxel = tuple(int(v) for v in voxel)
        if len(self.points) < 2 * len(voxel):
            self.points.append(voxel)
            return "point"
        self.clicks.append((voxel, bool(positive)))
        return "positive" if positive else "negative"

    def undo(self) -> None:
        """Remove the last click (or the last point when there is no click)."""
        if self.clicks:
            self.clicks.pop()
        elif self.points:
            self.points.pop()

    def clear(self) -> None:
        self.points.clear()
        self.clicks.clear()

    def complete(self, ndim: int = 3) -> bool:
        return len(self.points) == 2 * ndim

    def status(self, upload: UploadedImage) -> str:
        line = points_status(np.asarray(self.points, dtype=np.float64).reshape(-1, upload.ndim), upload.image)
        if self.clicks:
            pos = sum(1 for _, p in self.clicks if p)
            line += f" Clicks: {pos} positive, {len(self.clicks) - pos} negative."
        return line


def click_to_voxel(
    shape: tuple[int, ...], axis: int, index: int, x: float, y: float, width: float, height: float
) -> tuple[int, ...]:
    """The voxel under pixel ``(x, y)`` of a ``width`` x ``height`` picture of slice ``index`` along ``axis``.

    The picture shows the slice's rows top to bottom and columns left to right, stretched to the
    picture; for ``axis`` 1 and 2 of a 3D image the rows are z flipped (z up), as in
    :func:`voxseg.apps.web.render.slice_of`.

    Raises
    ------
    ConfigError
        The pixel lies outside the picture.
    """
    if not (0 <= x < width and 0 <= y < height):
        raise ConfigError(f"click ({x:g}, {y:g}) is outside the {width:g} x {height:g} picture")
    if len(shape) == 2:
        rows, cols = shape
        return (min(int(y / height * rows), rows - 1), min(int(x / width * cols), cols - 1))
    plane = [n for a, n in enumerate(shape) if a != axis]
    row = min(int(y / height * plane[0]), plane[0] - 1)
    col = min(int(x / width * plane[1]), plane[1] - 1)
    if axis != 0:
        row = plane[0] - 1 - row
    voxel = [row, col]
    voxel.insert(axis, int(index))
    return tuple(voxel)


def draw_prompts(picture: np.ndarray, shape: tuple[int, ...], axis: int, index: int, prompts: Prompts) -> np.ndarray:
    """``picture`` (of slice ``index`` along ``axis``) with the prompts on that slice drawn as dots."""
    img = Image.fromarray(picture)
    draw = ImageDraw.Draw(img)
    h, w = picture.shape[:2]
    plane = [n for a, n in enumerate(shape) if a != axis] if len(shape) == 3 else list(shape)
    radius = max(3, round(min(h, w) / 80))
    marks = [(p, "point") for p in prompts.points]
    marks += [(v, "positive" if pos else "negative") for v, pos in prompts.clicks]
    for voxel, kind in marks:
        if len(shape) == 3 and voxel[axis] != index:
            continue
        rc = [v for a, v in enumerate(voxel) if a != axis] if len(shape) == 3 else list(voxel)
        row = plane[0] - 1 - rc[0] if len(shape) == 3 and axis != 0 else rc[0]
        cx, cy = (rc[1] + 0.5) / plane[1] * w, (row + 0.5) / plane[0] * h
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=POINT_COLORS[kind], outline=(0, 0, 0))
    return np.asarray(img)


def _answer(model: LoadedModel, upload: UploadedImage, prompts: Prompts, *, clicks: bool) -> SegmentationResult:
    """Check the model, image and prompts; segment (six points) or refine (with the clicks); measure."""
    import time

    from voxseg.interactive import Click
    from voxseg.interactive.pipeline import refine

    if not model.predictor.plan.interactive:
        raise ConfigError(f"model {model.name!r} is not interactive: use the Segment button")
    if upload.ndim != 3:
        raise InputImageError(
            upload.name, f"a {upload.ndim}D image; interactive models segment 3D images", "upload a volume"
        )
    check_channels(model, upload)
    if not prompts.complete(upload.ndim):
        raise ConfigError(f"{prompts.status(upload)} Six extreme points are needed")
    if clicks and not prompts.clicks:
        raise ConfigError("no corrective click yet: click where the mask is wrong, then refine")
    corrections = [Click(v, p) for v, p in prompts.clicks] if clicks else []
    started = time.perf_counter()
    with model.lock:  # no clicks: refine is segment_from_points
        mask = refine(
            list(upload.channels),
            None,
            corrections,
            model=model.predictor,
            points=np.asarray(prompts.points),
            space="voxel",
        )
    rows = _objects(mask, upload.image, instances=False)
    return SegmentationResult(mask, tuple(rows), summarize(rows, mask.ndim), {"total": time.perf_counter() - started})


def segment_points(model: LoadedModel, upload: UploadedImage, prompts: Prompts) -> SegmentationResult:
    """The object marked by the six extreme points (voxel indices of the upload)."""
    return _answer(model, upload, prompts, clicks=False)


def refine_clicks(model: LoadedModel, upload: UploadedImage, prompts: Prompts) -> SegmentationResult:
    """The object of the six points corrected by the clicks."""
    return _answer(model, upload, prompts, clicks=True)
