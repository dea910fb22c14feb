"""Simulated user prompts from a ground-truth mask: extreme points and corrective clicks.

These are the prompts InteractiveNet-style models are trained and evaluated with. Both functions
are pure and seeded: the same mask, arguments and seed give the same prompt.

Coordinates are voxel indices in array order (``(z, y, x)`` / ``(y, x)``), like ``Volume.array``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from voxseg.errors import ConfigError

__all__ = ["Click", "extreme_points", "jitter_points", "corrective_click", "as_rng"]

RngLike = np.random.Generator | int | None


def as_rng(rng: RngLike) -> np.random.Generator | None:
    """``None`` stays None (deterministic choices); an int seeds a new generator."""
    if rng is None or isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise ConfigError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")


def _per_axis(value: float | Sequence[float], ndim: int, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number or {ndim} numbers, got {value!r}") from None
    if arr.ndim == 0:
        arr = np.full(ndim, float(arr))
    elif arr.shape != (ndim,):
        raise ConfigError(f"{name} needs 1 or {ndim} values, got {arr.size}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ConfigError(f"{name} must be finite and non-negative, got {arr.tolist()}")
    return arr


def _binary_mask(mask: np.ndarray, what: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim not in (2, 3):
        raise ConfigError(f"the {what} must be 2D or 3D, got shape {mask.shape}")
    return mask != 0


def _pick(candidates: np.ndarray, target: np.ndarray, scale: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """The candidate nearest ``target`` (physical distance), or a random one with ``rng``."""
    if rng is not None:
        return candidates[int(rng.integers(len(candidates)))]
    d2 = np.sum(((candidates - target) * scale) ** 2, axis=1)
    return candidates[int(np.argmin(d2))]  # first in C order among ties: deterministic


def _move_inward(point: np.ndarray, centre: np.ndarray, step: float, mask: np.ndarray) -> np.ndarray:
    """``point`` moved up to ``step`` voxels toward ``centre``, on the last position inside ``mask``.

    Tries the full step first and shortens it by half voxels until the rounded position is in
    the object (the start is), so the point never leaves a concave or thin object.
    """
    direction = centre - point
    norm = float(np.linalg.norm(direction))
    if step <= 0 or norm == 0:
        return point.astype(np.int64)
    direction /= norm
    for length in np.arange(min(step, norm), 0, -0.5):
        pos = np.rint(point + length * direction).astype(np.int64)
        if mask[tuple(pos)]:
            return pos
    return point.astype(np.int64)


def extreme_points(
    mask: np.ndarray,
    *,
    rng: RngLike = None,
    inward: float | Sequence[float] = 2,
    jitter: float | Sequence[float] = 0.0,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Extreme points of the object in ``mask``: the two ends of the object along every axis.

    For each axis end, the candidates are the object voxels on its extreme plane. Without
    ``rng`` the candidate nearest the centroid of that plane's object voxels is taken
    (deterministic); with ``rng`` a random candidate. The point then moves ``inward`` voxels
    toward the object's centre of mass, staying inside the object (users click just inside
    the border, not on it), and finally, with ``jitter``, a Gaussian offset mimics a person's
    imprecision (rounded to a voxel and clipped to the image; it may leave the object).

    A mask with several objects is treated as one: the points are the extremes of the union,
    so different points may lie on different objects. Prompt one object at a time by passing
    ``mask == k`` or one connected component.

    Parameters
    ----------
    mask
        2D or 3D array; nonzero is the object.
    rng
        ``None`` for deterministic points, or a Generator / int seed for random candidates
        and jitter. Jitter needs an ``rng``.
    inward
        How far (voxels, one value or one per axis) each point moves toward the centre; the
        value of the axis the point is an extreme of applies.
    jitter
        Standard deviation of the Gaussian offset per axis: voxels, or mm when ``spacing`` is
        given. 0 disables it.
    spacing
        Voxel size (mm, array order): distances to the plane centroid are physical and
        ``jitter`` is in mm.

    Returns
    -------
    numpy.ndarray
        ``(2 * ndim, ndim)`` int64 voxel indices, ordered axis-0 min, axis-0 max, axis-1 min, ...
        (6 points in 3D, 4 in 2D).
    """
    obj = _binary_mask(mask)
    if not obj.any():
        raise ConfigError("the mask is empty: extreme points need an object (a nonzero voxel)")
    ndim = obj.ndim
    generator = as_rng(rng)
    steps = _per_axis(inward, ndim, "inward")
    sigma = _per_axis(jitter, ndim, "jitter")
    scale = np.ones(ndim) if spacing is None else _per_axis(spacing, ndim, "spacing")
    if spacing is not None and np.any(scale <= 0):
        raise ConfigError(f"spacing must be positive, got {scale.tolist()}")
    if np.any(sigma > 0) and generator is None:
        raise ConfigError("jitter needs a random generator: pass rng=<seed or numpy Generator>")
    coords = np.argwhere(obj)
    centre = coords.mean(axis=0)
    points = []
    for axis in range(ndim):
        for end in (coords[:, axis].min(), coords[:, axis].max()):
            candidates = coords[coords[:, axis] == end]
            chosen = _pick(candidates, candidates.mean(axis=0), scale, generator)
            points.append(_move_inward(chosen.astype(np.float64), centre, float(steps[axis]), obj))
    out = np.asarray(points, dtype=np.int64)
    if np.any(sigma > 0):
        out = jitter_points(out, obj.shape, rng=generator, jitter=sigma, spacing=spacing)
    return out


def jitter_points(
    points: np.ndarray,
    shape: Sequence[int],
    *,
    rng: RngLike,
    jitter: float | Sequence[float],
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Points moved by a seeded Gaussian offset, rounded to voxels and clipped to ``shape``.

    ``jitter`` is the standard deviation per axis: voxels, or mm when ``spacing`` is given.
    Returns ``(N, ndim)`` int64 indices.
    """
    pts = np.asarray(points, dtype=np.float64)
    ndim = len(shape)
    sigma = _per_axis(jitter, ndim, "jitter")
    generator = as_rng(rng)
    if generator is None:
        raise ConfigError("jitter needs a random generator: pass rng=<seed or numpy Generator>")
    if spacing is not None:
        sp = _per_axis(spacing, ndim, "spacing")
        if np.any(sp <= 0):
            raise ConfigError(f"spacing must be positive, got {sp.tolist()}")
        sigma = sigma / sp
    moved = np.rint(pts + generator.normal(0.0, 1.0, pts.shape) * sigma).astype(np.int64)
    return np.clip(moved, 0, np.asarray(shape, dtype=np.int64) - 1)


@dataclass(frozen=True)
class Click:
    """A user click: a voxel index (array order) and its sign (True adds, False removes)."""

    position: tuple[int, ...]
    positive: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "position", tuple(int(v) for v in self.position))
        object.__setattr__(self, "positive", bool(self.positive))

    def to_json(self) -> dict[str, Any]:
        return {"position": list(self.position), "positive": self.positive}

    @classmethod
    def from_json(cls, data: Any) -> Click:
        try:
            return cls(tuple(data["position"]), bool(data["positive"]))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"a click is {{'position': [z, y, x], 'positive': true}}, got {data!r}") from None


def _largest_component(region: np.ndarray) -> tuple[np.ndarray, int]:
    labels, n = ndi.label(region)
    if n == 0:
        return np.zeros_like(region), 0
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (1 + int(np.argmax(sizes))), int(sizes.max())


def corrective_click(
    prediction: np.ndarray,
    reference: np.ndarray,
    *,
    rng: RngLike = None,
    spacing: Sequence[float] | None = None,
) -> Click | None:
    """The click a user would make next: in the middle of the largest error region.

    Error regions are the connected components (face connectivity) of the false negatives
    (``reference & ~prediction``) and of the false positives (``prediction & ~reference``). The
    largest one is chosen (a false-negative one on a tie): a false negative gets a positive
    click, a false positive a negative one. The click goes to the voxel farthest from the
    region's border (Euclidean distance transform, physical with ``spacing``; the image edge
    counts as border), the point a person would aim at.

    Parameters
    ----------
    prediction, reference
        Masks of one shape (nonzero is the object).
    rng
        Breaks ties between equally deep voxels at random (seeded); ``None`` takes the one
        nearest the region's centre of mass (then the first in C order).
    spacing
        Voxel size (mm, array order) for the distance transform.

    Returns
    -------
    Click or None
        None when the prediction equals the reference.
    """
    pred, ref = _binary_mask(prediction, "prediction"), _binary_mask(reference, "reference")
    if pred.shape != ref.shape:
        raise ConfigError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    fn, fn_size = _largest_component(ref & ~pred)
    fp, fp_size = _largest_component(pred & ~ref)
    if fn_size == 0 and fp_size == 0:
        return None
    positive = fn_size >= fp_size
    region = fn if positive else fp
    padded = np.pad(region, 1)  # the image edge is a border
    depth = ndi.distance_transform_edt(padded, sampling=spacing)[tuple(slice(1, -1) for _ in range(region.ndim))]
    best = np.argwhere(depth == depth.max())
    generator = as_rng(rng)
    if generator is None:  # among equally deep voxels (a band, a slab), the most central one
        centre = np.argwhere(region).mean(axis=0)
        scale = np.ones(region.ndim) if spacing is None else np.asarray(spacing, dtype=np.float64)
        chosen = best[int(np.argmin(np.sum(((best - centre) * scale) ** 2, axis=1)))]
    else:
        chosen = best[int(generator.integers(len(best)))]
    return Click(tuple(int(v) for v in chosen), positive)
