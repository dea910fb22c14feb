"""Crop to the nonzero region of a case, and pad back.

The nonzero region is where any channel holds a finite value other than 0, joined with the
label's foreground (every label value other than 0, the ignore label included) so a label is
never cut. NaN/Inf voxels count as empty. Cropping removes the empty border (air-free MRI
backgrounds, black microscopy margins); CT, whose air is -1000, is rarely cropped.

The *nonzero mask* (for z-score normalization inside the nonzero region) is the nonzero region
with its enclosed holes filled, as nnU-Net does: a dark ventricle inside a skull-stripped brain
belongs to the brain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["CropBox", "nonzero_region", "fill_holes", "crop_to_nonzero", "crop", "uncrop"]


@dataclass(frozen=True)
class CropBox:
    """A box of voxels ``[start, stop)`` per spatial axis (array order)."""

    start: tuple[int, ...]
    stop: tuple[int, ...]

    def __post_init__(self) -> None:
        start = tuple(int(v) for v in self.start)
        stop = tuple(int(v) for v in self.stop)
        if len(start) != len(stop) or any(a < 0 or b <= a for a, b in zip(start, stop, strict=True)):
            raise ValueError(f"invalid crop box start={start} stop={stop}")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "stop", stop)

    @classmethod
    def full(cls, shape: Sequence[int]) -> CropBox:
        """The box covering a whole array of ``shape``."""
        return cls(tuple(0 for _ in shape), tuple(int(s) for s in shape))

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop, strict=True))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(b - a for a, b in zip(self.start, self.stop, strict=True))

    def is_full(self, shape: Sequence[int]) -> bool:
        return self == CropBox.full(shape)

    def to_json(self) -> list[list[int]]:
        return [[a, b] for a, b in zip(self.start, self.stop, strict=True)]

    @classmethod
    def from_json(cls, data: Any) -> CropBox:
        pairs = [tuple(p) for p in data]
        return cls(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))


def nonzero_region(images: Sequence[np.ndarray], label: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of voxels where any channel is finite and nonzero, or the label is nonzero."""
    region = None
    for img in images:
        arr = np.asarray(img)
        nz = arr != 0
        if arr.dtype.kind in "fc":
            nz &= np.isfinite(arr)
        region = nz if region is None else np.logical_or(region, nz, out=region)
    if region is None:
        raise ValueError("no image channel given")
    if label is not None:
        region |= np.asarray(label) != 0
    return region


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with enclosed background filled (background components not touching the border).

    Linear time (one connected-component labelling), unlike ``scipy.ndimage.binary_fill_holes``,
    whose iterated dilation grows with the object's size.
    """
    if mask.all() or not mask.any():
        return mask.copy()
    background, _ = ndimage.label(~mask)
    border = set()
    for axis in range(mask.ndim):
        for index in (0, -1):
            border.update(np.unique(np.take(background, index, axis=axis)).tolist())
    border.discard(0)
    outside = np.isin(background, np.fromiter(border, dtype=background.dtype))
    return ~outside


def _bounding_box(mask: np.ndarray) -> CropBox:
    if not mask.any():
        return CropBox.full(mask.shape)
    start, stop = [], []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        start.append(int(hits[0]))
        stop.append(int(hits[-1]) + 1)
    return CropBox(tuple(start), tuple(stop))


def crop_to_nonzero(
    images: Sequence[np.ndarray], label: np.ndarray | None = None, *, fill: bool = True
) -> tuple[CropBox, np.ndarray]:
    """Bounding box of the nonzero region and the nonzero mask inside it.

    Parameters
    ----------
    images
        Channel arrays of one shape (a ``(C, *spatial)`` array works too).
    label
        Optional label of the same shape; its foreground is always inside the box.
    fill
        Fill enclosed holes of the returned mask (see :func:`fill_holes`).

    Returns
    -------
    box, mask
        The box (the whole array when everything is empty) and the boolean nonzero mask of the
        images (holes filled; the label does not count) cropped to the box.
    """
    image_region = nonzero_region(images)
    region = image_region if label is None else (image_region | (np.asarray(label) != 0))
    box = _bounding_box(region)
    mask = image_region[box.slices]
    return box, (fill_holes(mask) if fill else mask.copy())


def crop(array: np.ndarray, box: CropBox) -> np.ndarray:
    """View of ``array`` inside ``box``; leading axes (channels) are kept whole."""
    array = np.asarray(array)
    lead = array.ndim - len(box.start)
    if lead < 0:
        raise ValueError(f"a {len(box.start)}D crop box does not fit an array of shape {array.shape}")
    return array[(slice(None),) * lead + box.slices]


def uncrop(array: np.ndarray, box: CropBox, shape: Sequence[int], *, fill: float = 0) -> np.ndarray:
    """Place ``array`` (the box's contents) into a new array of spatial ``shape`` filled with ``fill``.

    Leading axes (channels) are kept; the inverse of :func:`crop`.
    """
    array = np.asarray(array)
    shape = tuple(int(s) for s in shape)
    lead = array.ndim - len(shape)
    if lead < 0 or array.shape[lead:] != box.shape or any(b > s for b, s in zip(box.stop, shape, strict=True)):
        raise ValueError(f"array of shape {array.shape} does not fit crop box {box.to_json()} in {shape}")
    out = np.full(array.shape[:lead] + shape, fill, dtype=array.dtype)
    out[(slice(None),) * lead + box.slices] = array
    return out
