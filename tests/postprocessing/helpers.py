"""Crafted shapes for the postprocessing and evaluation tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def ball(
    shape: Sequence[int],
    center: Sequence[float],
    radius: float,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Boolean ball (disc in 2D) of ``radius`` (mm, with ``spacing``) around ``center`` (voxel index)."""
    sp = np.ones(len(shape)) if spacing is None else np.asarray(spacing, float)
    grids = np.indices(shape, dtype=np.float64)
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, center, sp, strict=True))
    return d2 <= radius**2


def box(shape: Sequence[int], lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
    """Boolean box covering index ``lo`` to ``hi`` (exclusive)."""
    out = np.zeros(shape, dtype=bool)
    out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    return out


def random_blobs(rng: np.random.Generator, shape: Sequence[int], n: int, radii=(2, 6)) -> np.ndarray:
    """Union of ``n`` random balls: an irregular shape for metric comparisons."""
    out = np.zeros(shape, dtype=bool)
    for _ in range(n):
        center = [rng.uniform(0.2 * s, 0.8 * s) for s in shape]
        out |= ball(shape, center, rng.uniform(*radii))
    return out
