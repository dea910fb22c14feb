"""Shared building blocks of the phantom generators (numpy + scipy.ndimage only).

Conventions
-----------
* Coordinates are *open grids* (``np.ogrid`` style): one float32 array per axis, shaped to
  broadcast against the others, so a 3D expression costs one pass over the volume.
* Shapes are rendered as *soft occupancies* in ``[0, 1]``: ``clip(0.5 - signed_distance / width)``
  with ``width`` about one voxel, which gives partial-volume edges without supersampling. The
  hard mask of a shape is ``occupancy >= 0.5`` (the inside of its surface).
* Every random draw comes from the ``numpy.random.Generator`` passed in, in a fixed order, so a
  generator is deterministic for a given rng.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "centred_origin",
    "mm_grid",
    "frac_grid",
    "smooth_noise",
    "bias_field",
    "soft",
    "ellipsoid",
    "segment_distance",
    "tube",
    "tube_box",
    "ellipsoid_box",
    "star_blob",
    "blend",
    "box_slices",
    "sample_in_mask",
    "random_unit_vectors",
    "rician",
]

Slices = tuple[slice, ...]


def centred_origin(shape: Sequence[int], spacing: Sequence[float]) -> tuple[float, ...]:
    """Origin (mm, array order) that puts the world point 0 at the centre of the grid."""
    return tuple(-(n - 1) / 2.0 * s for n, s in zip(shape, spacing, strict=True))


def mm_grid(shape: Sequence[int], spacing: Sequence[float]) -> list[np.ndarray]:
    """Open grid of voxel-centre positions in mm, with 0 at the centre of the grid."""
    ndim = len(shape)
    out = []
    for axis, (n, s) in enumerate(zip(shape, spacing, strict=True)):
        view = [1] * ndim
        view[axis] = n
        out.append(((np.arange(n, dtype=np.float32) - np.float32((n - 1) / 2)) * np.float32(s)).reshape(view))
    return out


def frac_grid(shape: Sequence[int]) -> list[np.ndarray]:
    """Open grid of positions as fractions of the field of view: -1 at the first voxel edge, +1 at the last."""
    ndim = len(shape)
    out = []
    for axis, n in enumerate(shape):
        view = [1] * ndim
        view[axis] = n
        out.append(((np.arange(n, dtype=np.float32) + 0.5) / n * 2.0 - 1.0).reshape(view))
    return out


def smooth_noise(rng: np.random.Generator, shape: Sequence[int], sigma: float) -> np.ndarray:
    """Correlated Gaussian noise with zero mean and unit standard deviation (float32).

    ``sigma`` (voxels) is the correlation length. For ``sigma >= 3`` the field is drawn on a
    coarser grid and linearly upsampled, which is much cheaper and looks the same.
    """
    shape = tuple(int(n) for n in shape)
    factor = max(1, int(sigma // 2))
    small = shape if factor == 1 else tuple(max(2, -(-n // factor) + 1) for n in shape)
    field = ndi.gaussian_filter(rng.standard_normal(small, dtype=np.float32), sigma / factor, mode="wrap")
    if factor > 1:
        field = _upsample_linear(field, shape)
    std = float(field.std())
    return ((field - field.mean()) / (std if std > 0 else 1.0)).astype(np.float32, copy=False)


def _upsample_linear(field: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linear interpolation of ``field`` onto ``shape`` (corner-aligned), one axis at a time (fast)."""
    for axis, n in enumerate(shape):
        m = field.shape[axis]
        pos = np.linspace(0.0, m - 1.0, n)
        lo = np.minimum(pos.astype(np.int64), m - 2)
        w = (pos - lo).astype(np.float32).reshape([-1 if a == axis else 1 for a in range(field.ndim)])
        a, b = np.take(field, lo, axis=axis), np.take(field, lo + 1, axis=axis)
        field = a + w * (b - a)
    return field


def bias_field(rng: np.random.Generator, shape: Sequence[int], strength: float, order: int = 2) -> np.ndarray:
    """Smooth multiplicative field ``exp(sum of low-order cosines)`` with log-amplitude ~ ``strength``.

    The field is a random combination of separable cosines ``cos(pi i z) cos(pi j y) cos(pi k x)``
    with ``i + j + k <= order`` (positions scaled to [0, 1]); mean about 1 (float32).
    """
    ndim = len(shape)
    frac = [(g + 1.0) / 2.0 for g in frac_grid(shape)]
    combos = [c for c in np.ndindex(*([order + 1] * ndim)) if 0 < sum(c) <= order]
    log_field = np.zeros([1] * ndim, dtype=np.float32)
    coeffs = rng.normal(0.0, 1.0, size=len(combos)) * strength / np.sqrt(len(combos))
    for coeff, combo in zip(coeffs, combos, strict=True):
        term = np.float32(coeff)
        for axis, freq in enumerate(combo):
            if freq:
                term = term * np.cos(np.float32(np.pi * freq) * frac[axis] + np.float32(rng.uniform(0, 0.5)))
        log_field = log_field + term
    return np.exp(np.broadcast_to(log_field, tuple(shape))).astype(np.float32)


def soft(signed_distance: np.ndarray, width: float = 1.0) -> np.ndarray:
    """Soft occupancy from a signed distance (negative inside): 1 inside, 0 outside, linear edge."""
    return np.clip(np.float32(0.5) - signed_distance / np.float32(width), 0.0, 1.0).astype(np.float32, copy=False)


def ellipsoid(
    grid: Sequence[np.ndarray], centre: Sequence[float], radii: Sequence[float], width: float = 1.0
) -> np.ndarray:
    """Soft occupancy of an axis-aligned ellipsoid (units of ``grid``; ``width`` in the same units).

    The signed distance is approximated as ``(rho - 1) * min(radii)`` with ``rho`` the
    normalised radius, good enough for partial-volume edges.
    """
    rho2 = None
    for g, c, r in zip(grid, centre, radii, strict=True):
        term = ((g - np.float32(c)) / np.float32(r)) ** 2
        rho2 = term if rho2 is None else rho2 + term
    return soft((np.sqrt(rho2) - 1.0) * np.float32(min(radii)), width)


def segment_distance(grid: Sequence[np.ndarray], p0: Sequence[float], p1: Sequence[float]) -> np.ndarray:
    """Distance from every grid point to the segment ``p0 -> p1`` (units of ``grid``)."""
    d = np.asarray(p1, dtype=np.float64) - np.asarray(p0, dtype=np.float64)
    length2 = float(d @ d) or 1e-12
    t = None
    for g, a, da in zip(grid, p0, d, strict=True):
        term = (g - np.float32(a)) * np.float32(da / length2)
        t = term if t is None else t + term
    t = np.clip(t, 0.0, 1.0)
    dist2 = None
    for g, a, da in zip(grid, p0, d, strict=True):
        term = (g - np.float32(a) - t * np.float32(da)) ** 2
        dist2 = term if dist2 is None else dist2 + term
    return np.sqrt(dist2)


def tube(
    grid: Sequence[np.ndarray], p0: Sequence[float], p1: Sequence[float], radius: float, width: float = 1.0
) -> np.ndarray:
    """Soft occupancy of a capsule (segment with radius)."""
    return soft(segment_distance(grid, p0, p1) - np.float32(radius), width)


def tube_box(
    shape: Sequence[int], p0: Sequence[float], p1: Sequence[float], radius: float, width: float = 1.0
) -> tuple[Slices, np.ndarray]:
    """Soft occupancy of a capsule computed only in its bounding box (voxel index coordinates).

    Returns
    -------
    slices, occupancy
        The box (slices of the full grid) and the float32 occupancy inside it.
    """
    lo = np.minimum(p0, p1) - radius - 2
    hi = np.maximum(p0, p1) + radius + 2
    sl = box_slices(shape, (lo + hi) / 2, (hi - lo) / 2)
    local = [np.arange(s.start, s.stop, dtype=np.float32) for s in sl]
    ndim = len(shape)
    local = [g.reshape([-1 if a == i else 1 for a in range(ndim)]) for i, g in enumerate(local)]
    return sl, tube(local, p0, p1, radius, width)


def ellipsoid_box(
    shape: Sequence[int], centre: Sequence[float], radii: Sequence[float], width: float = 1.0
) -> tuple[Slices, np.ndarray]:
    """Soft occupancy of an axis-aligned ellipsoid computed only in its bounding box (voxel index units)."""
    sl = box_slices(shape, centre, [r + 2 for r in radii])
    ndim = len(shape)
    local = [np.arange(s.start, s.stop, dtype=np.float32) for s in sl]
    local = [g.reshape([-1 if a == i else 1 for a in range(ndim)]) for i, g in enumerate(local)]
    return sl, ellipsoid(local, centre, radii, width)


def random_unit_vectors(rng: np.random.Generator, n: int, ndim: int) -> np.ndarray:
    """``n`` directions uniformly distributed on the unit sphere (circle in 2D), shape ``(n, ndim)``."""
    v = rng.standard_normal((n, ndim))
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def box_slices(shape: Sequence[int], centre_vox: Sequence[float], half_extent_vox: Sequence[float]) -> Slices:
    """Slices of the box around ``centre_vox`` (voxel units), clipped to the grid (never empty)."""
    out = []
    for n, c, h in zip(shape, centre_vox, half_extent_vox, strict=True):
        lo = int(np.clip(np.floor(c - h), 0, n - 1))
        hi = int(np.clip(np.ceil(c + h) + 1, lo + 1, n))
        out.append(slice(lo, hi))
    return tuple(out)


def star_blob(
    rng: np.random.Generator,
    shape: Sequence[int],
    spacing: Sequence[float],
    centre_vox: Sequence[float],
    radius_mm: float,
    *,
    lobes: int = 4,
    lobulation: float = 0.3,
    elongation: float = 0.0,
) -> tuple[Slices, np.ndarray]:
    """A lobulated star-shaped object (always one connected piece), as a soft occupancy in its box.

    The surface radius along direction ``u`` is ``radius_mm * (1 + sum_k a_k exp(kappa_k (u.v_k - 1)))``
    normalised to mean 1: von Mises bumps at random directions ``v_k`` make lobules (``a_k > 0``)
    and clefts (``a_k < 0``); ``elongation`` stretches it along one random axis.

    Returns
    -------
    slices, occupancy
        The box (slices of the full grid) and the float32 occupancy inside it.
    """
    ndim = len(shape)
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    dirs = random_unit_vectors(rng, lobes, ndim)
    amps = rng.uniform(-0.6, 1.0, size=lobes) * lobulation
    kappas = rng.uniform(2.0, 6.0, size=lobes)
    axis = random_unit_vectors(rng, 1, ndim)[0]
    stretch = 1.0 + elongation * rng.uniform(0.3, 1.0)
    reach = radius_mm * (1.0 + np.abs(amps).sum()) * stretch + 2 * spacing_arr.max()
    sl = box_slices(shape, centre_vox, reach / spacing_arr)
    grid = [
        (np.arange(s.start, s.stop, dtype=np.float32) - np.float32(c)) * np.float32(sp)
        for s, c, sp in zip(sl, centre_vox, spacing_arr, strict=True)
    ]
    grid = [g.reshape([-1 if a == i else 1 for a in range(ndim)]) for i, g in enumerate(grid)]
    # stretch along `axis`: shrink the coordinate along it before measuring the radius
    along = sum(g * np.float32(a) for g, a in zip(grid, axis, strict=True))
    pts = [g - along * np.float32(a * (1 - 1 / stretch)) for g, a in zip(grid, axis, strict=True)]
    dist = np.sqrt(sum(p * p for p in pts)) + np.float32(1e-6)
    cos = [sum(p * np.float32(v) for p, v in zip(pts, d, strict=True)) / dist for d in dirs]
    radial = np.ones_like(dist)
    bump_mean = 0.0
    for a, k, c in zip(amps, kappas, cos, strict=True):
        radial = radial + np.float32(a) * np.exp(np.float32(k) * (c - 1.0))
        bump_mean += a * (1 - np.exp(-2 * k)) / (2 * k)  # mean of exp(k(c-1)) on the sphere (3D; ~2D)
    radial = np.maximum(radial / np.float32(1.0 + bump_mean), 0.25) * np.float32(radius_mm)
    # partial-volume width: extent of one voxel along the radial direction
    width = np.sqrt(sum((p / dist * np.float32(sp)) ** 2 for p, sp in zip(pts, spacing_arr, strict=True)))
    width = np.maximum(width, np.float32(spacing_arr.min()))
    return sl, soft((dist - radial) / width, 1.0)


def blend(image: np.ndarray, sl: Slices, occupancy: np.ndarray, value: np.ndarray | float) -> None:
    """In place: ``image[sl] = image[sl] * (1 - occupancy) + value * occupancy``."""
    region = image[sl]
    region += occupancy * (np.asarray(value, dtype=np.float32) - region)


def sample_in_mask(rng: np.random.Generator, mask: np.ndarray, n: int) -> np.ndarray:
    """``n`` random voxel indices (rows of an ``(n, ndim)`` int array) where ``mask`` is true."""
    flat = np.flatnonzero(mask)
    if flat.size == 0 or n <= 0:
        return np.zeros((0, mask.ndim), dtype=np.int64)
    picks = flat[rng.integers(0, flat.size, size=n)]
    return np.stack(np.unravel_index(picks, mask.shape), axis=1)


def rician(rng: np.random.Generator, signal: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of ``signal`` plus complex Gaussian noise: Rician noise, as in MR magnitude images."""
    real = signal + rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)
    imag = rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)
    return np.sqrt(real * real + imag * imag).astype(np.float32, copy=False)
