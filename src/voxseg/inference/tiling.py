"""Tiling rules of the sliding window (:mod:`voxseg.inference.window`): tile starts, Gaussian
weights, overlap slices, fixed-shape crop/pad, tiles per call. numpy only (no torch)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from voxseg.errors import ConfigError

__all__ = [
    "FLOAT16_ABOVE_BYTES",
    "fit_shape",
    "unfit_shape",
    "MIN_WEIGHT",
    "TILE_BATCH_VOXELS",
    "MAX_AUTO_BATCH",
    "auto_batch_size",
    "tile_starts",
    "tile_grid",
    "overlap_slices",
    "gaussian_weights",
    "CONFIDENT_PROBABILITY",
    "confident_tiles",
    "confident_core",
]

#: Predictions accumulate class probabilities in float16 when ``K * voxels * 4`` bytes would exceed
#: this (the Predictor; the pre-flight's memory estimate follows the same rule).
FLOAT16_ABOVE_BYTES = 1 << 28

#: Smallest Gaussian weight relative to the map's own scale, as MONAI: tile borders keep a
#: positive weight so that every voxel is covered and no division by zero can happen.
MIN_WEIGHT = 1e-3

#: Voxels per network call that ``batch_size="auto"`` fills (tiles x patch voxels). On the 2-core
#: CPU a DynUNet 8-64 on 40^3 tiles ran 3.5x faster with 4 tiles per call than with 1, and 8 or 16
#: tiles were slower again (benchmarks/README.md, "Tiles per network call"): per-call overheads
#: dominate small calls, caches suffer in large ones.
TILE_BATCH_VOXELS = 2**18  # 262,144: four 40^3 tiles

#: Confident-tile mirror TTA (``tta_confident``): a tile's other mirrorings are skipped when its
#: un-flipped pass gives every voxel of its core (:func:`confident_core`) a most probable class of at
#: least this probability. A voxel's averaged logits can then change class only if the other passes
#: disagree by more than ``log(0.95 / 0.05) / 7`` on average (3D): agreement with full TTA in
#: benchmarks/README.md.
CONFIDENT_PROBABILITY = 0.95

#: Most tiles per call that ``batch_size="auto"`` uses (small 2D patches).
MAX_AUTO_BATCH = 8


def auto_batch_size(patch_size: Sequence[int], voxels: int = TILE_BATCH_VOXELS, most: int = MAX_AUTO_BATCH) -> int:
    """Tiles per network call for ``batch_size="auto"``: as many as fit ``voxels``, 1 to ``most``.

    >>> auto_batch_size((40, 40, 40)), auto_batch_size((128, 128, 128)), auto_batch_size((256, 128))
    (4, 1, 8)
    """
    return max(1, min(int(most), int(voxels) // max(1, math.prod(int(p) for p in patch_size))))


def tile_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start indices of the tiles along one axis of length ``size >= patch``.

    ``n = ceil((size - patch) / (patch * (1 - overlap))) + 1`` starts spread evenly from 0 to
    ``size - patch`` (rounded half up), so neighbouring tiles overlap by at least ``overlap``.

    >>> tile_starts(160, 96, 0.5), tile_starts(96, 96, 0.5), tile_starts(100, 64, 0.0)
    ([0, 32, 64], [0], [0, 36])
    """
    if size < patch:
        raise ConfigError(f"tile_starts needs size >= patch, got size {size} < patch {patch} (pad the axis first)")
    if size == patch:
        return [0]
    step = patch * (1.0 - overlap)
    n = math.ceil((size - patch) / step - 1e-9) + 1
    gap = (size - patch) / (n - 1)
    return [int(i * gap + 0.5) for i in range(n)]


def tile_grid(shape: Sequence[int], patch_size: Sequence[int], overlap: float) -> tuple[tuple[int, ...], ...]:
    """Per-axis tile starts for an image of spatial ``shape``, in image coordinates.

    An axis shorter than the patch gets one tile with a negative start: ``-(patch - size) // 2``
    voxels of padding before the image (the rest after it).
    """
    if len(shape) != len(patch_size):
        raise ConfigError(f"shape {tuple(shape)} and patch_size {tuple(patch_size)} have different lengths")
    starts = []
    for size, patch in zip(shape, patch_size, strict=True):
        padded = max(size, patch)
        before = (padded - size) // 2
        starts.append(tuple(s - before for s in tile_starts(padded, patch, overlap)))
    return tuple(starts)


def overlap_slices(start: Sequence[int], patch: Sequence[int], shape: Sequence[int]):
    """Slices of the image and of the tile that a tile starting at ``start`` shares."""
    img, tile = [], []
    for s, p, n in zip(start, patch, shape, strict=True):
        lo, hi = max(s, 0), min(s + p, n)
        img.append(slice(lo, hi))
        tile.append(slice(lo - s, hi - s))
    return tuple(img), tuple(tile)


def gaussian_weights(patch_size: Sequence[int], sigma_scale: Sequence[float]) -> np.ndarray:
    """Gaussian tile weights (float32): ``exp(-d**2 / (2 * (scale * patch)**2))`` per axis from the
    patch centre, multiplied over the axes, clamped below at :data:`MIN_WEIGHT` (MONAI's map)."""
    weights = np.ones((), dtype=np.float32)
    for patch, scale in zip(patch_size, sigma_scale, strict=True):
        x = np.arange(patch, dtype=np.float64) - (patch - 1) / 2.0
        g = np.exp(-0.5 * (x / (scale * patch)) ** 2).astype(np.float32)
        weights = weights[..., None] * g
    return np.maximum(weights, max(float(weights.min()), MIN_WEIGHT)).astype(np.float32)


def fit_slices(size: int, fixed: int) -> tuple[slice, slice]:
    """(source slice, target slice) centring an axis of ``size`` in ``fixed`` (crop or pad)."""
    if size >= fixed:
        start = (size - fixed) // 2
        return slice(start, start + fixed), slice(0, fixed)
    start = (fixed - size) // 2
    return slice(0, size), slice(start, start + size)


def fit_shape(data: np.ndarray, fixed: Sequence[int]) -> np.ndarray:
    """Centre-crop / zero-pad ``(C, *spatial)`` to ``(C, *fixed)``."""
    pairs = [fit_slices(s, f) for s, f in zip(data.shape[1:], fixed, strict=True)]
    out = np.zeros((data.shape[0], *fixed), dtype=np.float32)
    out[(slice(None), *(t for _, t in pairs))] = data[(slice(None), *(s for s, _ in pairs))]
    return out


def unfit_shape(probs: np.ndarray, spatial: Sequence[int], *, background: int | None) -> np.ndarray:
    """Inverse of :func:`fit_shape` for probabilities: cropped-away voxels become background."""
    pairs = [fit_slices(s, f) for s, f in zip(spatial, probs.shape[1:], strict=True)]
    out = np.zeros((probs.shape[0], *spatial), dtype=probs.dtype)
    if background is not None:
        out[background] = 1
    out[(slice(None), *(s for s, _ in pairs))] = probs[(slice(None), *(t for _, t in pairs))]
    return out


def confident_core(spatial: Sequence[int]) -> tuple[slice, ...]:
    """The part of a tile that must be confident: all but ``size // 8`` voxels (the sliding
    window's Gaussian sigma) at each face. Those border voxels weigh <= exp(-4.5) ~ 1% of a tile
    centre in the blend, and toy networks are unsure there even on a constant tile (zero padding)."""
    return tuple(slice(s // 8, s - s // 8) for s in spatial)


def confident_tiles(logits: np.ndarray, level: float = CONFIDENT_PROBABILITY) -> np.ndarray:
    """Per tile of ``(B, K, *patch)`` logits: whether every voxel of the tile's core
    (:func:`confident_core`) has a most probable class of probability >= ``level`` (sigmoid for
    ``K == 1``, softmax otherwise). Returns ``(B,)`` bool."""
    if not 0.5 < level < 1:
        raise ConfigError(f"a confidence level must be in (0.5, 1), got {level}")
    core = logits[(slice(None), slice(None), *confident_core(logits.shape[2:]))]
    flat = core.reshape(core.shape[0], core.shape[1], -1)
    if flat.shape[1] == 1:  # sigmoid: |logit| >= logit(level)
        return np.all(np.abs(flat[:, 0]) >= math.log(level / (1 - level)), axis=1)
    # softmax: max p = 1 / sum(exp(l - max l)) >= level
    spread = np.exp(flat - flat.max(axis=1, keepdims=True)).sum(axis=1)
    return np.all(spread <= 1.0 / level, axis=1)
