"""Make many cases from one real subject: smooth deformation, resampling, bias, contrast, noise.

One random draw (:func:`draw`) gives a :class:`Variant`; :func:`warp` warps the image (linear) and
every label map (nearest neighbour) with the same displacement field onto one new grid, so the labels
stay aligned with the image. Randomness is separate from application: a variant is plain data.

The warp and the output grid are one ``map_coordinates`` call: output voxel ``i`` (spacing ``s_out``)
samples the input at ``A (i * s_out - c) + c + u(i)`` (mm), with ``A`` a small rotation/scale about the
centre ``c`` and ``u`` a smooth displacement (cubic upsampling of a coarse random grid). A thick output
axis is blurred first (Gaussian, FWHM = the new spacing) so a resampled slice is an average over its
thickness, as a scanner's thick slice is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline

__all__ = ["Variant", "draw", "warp", "intensity"]


@dataclass(frozen=True)
class Variant:
    """One random case recipe (array axis order, mm)."""

    seed: int
    spacing: tuple[float, ...]
    rotation_deg: tuple[float, ...]
    scale: float
    displacement_mm: float
    control_mm: float
    bias: float
    gamma: float
    noise: float


def draw(
    seed: int,
    *,
    spacing: Sequence[float],
    anisotropy: tuple[float, float] = (1.0, 2.5),
    displacement_mm: tuple[float, float] = (1.5, 4.0),
    rotation_deg: float = 10.0,
    bias: float = 0.3,
    noise: float = 0.05,
) -> Variant:
    """Draw one variant: one random axis gets ``anisotropy`` × its spacing, the others ±10 %."""
    rng = np.random.default_rng(seed)
    ndim = len(spacing)
    out = [float(s) * rng.uniform(0.9, 1.1) for s in spacing]
    thick = int(rng.integers(ndim))
    out[thick] = float(spacing[thick]) * rng.uniform(*anisotropy)
    n_rot = 3 if ndim == 3 else 1
    return Variant(
        seed=seed,
        spacing=tuple(round(s, 4) for s in out),
        rotation_deg=tuple(float(r) for r in rng.uniform(-rotation_deg, rotation_deg, n_rot)),
        scale=float(rng.uniform(0.92, 1.08)),
        displacement_mm=float(rng.uniform(*displacement_mm)),
        control_mm=float(rng.uniform(30.0, 50.0)),
        bias=float(rng.uniform(0.0, bias)),
        gamma=float(np.exp(rng.uniform(np.log(0.7), np.log(1.4)))),
        noise=float(rng.uniform(0.01, noise)),
    )


def _rotation(angles: Sequence[float]) -> np.ndarray:
    a = np.deg2rad(np.asarray(angles, dtype=np.float64))
    if a.size == 1:
        c, s = np.cos(a[0]), np.sin(a[0])
        return np.array([[c, -s], [s, c]])
    out = np.eye(3)
    for axis, ang in enumerate(a):
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i] = r[j, j] = np.cos(ang)
        r[i, j], r[j, i] = -np.sin(ang), np.sin(ang)
        out = out @ r
    return out


def _smooth_field(rng: np.random.Generator, shape: Sequence[int], step: Sequence[float], amplitude: float):
    """A smooth random field of ``shape``: Gaussian values on a coarse grid, cubic-spline upsampled.

    The upsampling is separable (one small interpolation matrix per axis), so it costs about one
    pass over the output instead of a 3D spline evaluation per voxel.
    """
    coarse = [max(2, int(np.ceil(n / max(st, 1.0))) + 1) for n, st in zip(shape, step, strict=True)]
    field = rng.normal(0.0, amplitude, coarse)
    for axis, (n, c) in enumerate(zip(shape, coarse, strict=True)):
        weights = CubicSpline(np.linspace(0, n - 1, c), np.eye(c), bc_type="natural")(np.arange(n))
        field = np.moveaxis(np.tensordot(weights, np.moveaxis(field, axis, 0), axes=(1, 0)), 0, axis)
    return field.astype(np.float32)


def warp(
    arrays: Sequence[np.ndarray],
    spacing: Sequence[float],
    variant: Variant,
    *,
    orders: Sequence[int],
) -> list[np.ndarray]:
    """Warp ``arrays`` (one grid, ``spacing``) with the variant's deformation onto its output grid.

    ``orders[k]`` is the interpolation order of array ``k``: 1 for images, 0 for label maps.
    """
    rng = np.random.default_rng(variant.seed + 1_000_003)
    sp_in = np.asarray(spacing, dtype=np.float64)
    sp_out = np.asarray(variant.spacing, dtype=np.float64)
    extent = (np.asarray(arrays[0].shape) - 1) * sp_in
    shape = tuple(int(np.floor(e / s)) + 1 for e, s in zip(extent, sp_out, strict=True))
    centre = extent / 2.0
    matrix = _rotation(variant.rotation_deg) * variant.scale
    idx = np.indices(shape, dtype=np.float32)
    mm = [idx[k] * np.float32(sp_out[k]) - np.float32(centre[k]) for k in range(len(shape))]
    del idx
    step = [variant.control_mm / s for s in sp_out]
    coords = []
    for k in range(len(shape)):
        src = sum(np.float32(matrix[k, j]) * mm[j] for j in range(len(shape))) + np.float32(centre[k])
        src += _smooth_field(rng, shape, step, variant.displacement_mm)
        coords.append(src / np.float32(sp_in[k]))
    del mm
    coords_arr = np.stack(coords)
    del coords
    out = []
    for arr, order in zip(arrays, orders, strict=True):
        src = arr
        if order > 0:  # a thick new axis averages over its thickness (FWHM = new spacing)
            sigma = [np.sqrt(max(so * so - si * si, 0.0)) / 2.355 / si for so, si in zip(sp_out, sp_in, strict=True)]
            if any(s > 0.3 for s in sigma):
                src = ndimage.gaussian_filter(arr.astype(np.float32), sigma)
        dtype = np.float32 if order > 0 else arr.dtype
        out.append(ndimage.map_coordinates(src, coords_arr, order=order, mode="constant", cval=0, output=dtype))
    return out


def intensity(
    image: np.ndarray, variant: Variant, *, spacing: Sequence[float], bias: bool = True, gamma: bool = True
) -> np.ndarray:
    """Multiplicative smooth bias field, gamma contrast change and Gaussian noise (float32 out).

    Gamma acts on the image scaled to [0, 1] by its 0.5-99.5 percentiles and is scaled back; the noise
    standard deviation is ``variant.noise`` × that range. CT keeps its Hounsfield scale: call it with
    ``bias=False, gamma=False`` (noise only).
    """
    rng = np.random.default_rng(variant.seed + 2_000_003)
    img = image.astype(np.float32, copy=True)
    lo, hi = np.percentile(img, [0.5, 99.5])
    span = float(hi - lo) or 1.0
    if gamma:
        norm = np.clip((img - lo) / span, 0.0, None)
        img = (norm ** np.float32(variant.gamma)) * np.float32(span) + np.float32(lo)
    if bias and variant.bias > 0:
        step = [80.0 / float(s) for s in spacing]
        field = _smooth_field(rng, img.shape, step, variant.bias / 2.0)
        img *= np.exp(field)
    img += rng.normal(0.0, variant.noise * span, img.shape).astype(np.float32)
    return img
