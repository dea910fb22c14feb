"""Resampling of images, labels and probabilities between voxel grids (numpy + scipy, float32).

Resampling is separable: it runs along one axis at a time as a matrix product with a small
``(new_length, length)`` weight matrix (BLAS, one thread), which is exactly the tensor-product
B-spline interpolation ``scipy.ndimage.zoom(..., grid_mode=True)`` computes, at a fraction of the
cost and without its float64 copy of the volume (see ``docs/preprocessing.md`` for timings).

Grid convention: the field of view is kept, voxel centres are aligned (``grid_mode=True``): output
voxel ``i`` of ``m`` samples the input at ``(i + 0.5) * n / m - 0.5``, so resampling to a shape and
back maps every voxel centre onto itself. ``order`` 0 is nearest neighbour, 1 linear (clamped at
the edges), 3 cubic B-spline (mirror boundary, as scipy's default prefilter).

Anisotropic data (largest / smallest spacing > ``anisotropy_threshold``, or the same for the target
spacing) has its low-resolution axis resampled with ``order_z`` and the other axes with ``order``,
as nnU-Net does, so a spline does not ring across thick slices. ``order_z`` defaults to 1 (linear:
no overshoot, and a third lower error than nearest on thick-slice data, see the docs); nnU-Net
uses 0.

Labels are resampled class by class (each class's 0/1 mask interpolated linearly inside its own
bounding box, the winner kept by a running argmax; background wins where ``1 - sum`` is largest),
never as a full one-hot volume; ``order=0`` gives plain nearest neighbour instead.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "resample",
    "resample_to_shape",
    "resampled_shape",
    "lowres_axis",
    "axis_orders",
    "single_blas_thread",
]

try:  # optional: keeps the many small matrix products on one BLAS thread (see single_blas_thread)
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - depends on the environment
    ThreadpoolController = None

_CHUNK = 32  # output rows per matrix product: keeps the products banded (32 was fastest of 16-256)
_TRUNCATE = 1e-7  # weights below this (the tails of the cubic prefilter) are dropped


def resampled_shape(shape: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float]) -> tuple[int, ...]:
    """``round(shape * spacing / target_spacing)`` per axis, at least 1."""
    if not len(shape) == len(spacing) == len(target_spacing):
        raise ValueError(f"shape {tuple(shape)}, spacing and target spacing must have one value per axis")
    return tuple(max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, target_spacing, strict=True))


def _single_lowres(spacing: Sequence[float], threshold: float) -> int | None:
    sp = np.asarray(spacing, dtype=np.float64)
    if sp.size != 3 or sp.max() / sp.min() <= threshold:
        return None
    axes = np.flatnonzero(np.isclose(sp, sp.max(), rtol=1e-3))
    return int(axes[0]) if axes.size == 1 else None  # two coarse axes: no single low-res axis


def lowres_axis(
    spacing: Sequence[float], target_spacing: Sequence[float] | None = None, *, anisotropy_threshold: float = 3.0
) -> int | None:
    """The axis to resample separately, or None (2D data, isotropic enough, or ambiguous).

    The source spacing decides first; if it is not anisotropic, an anisotropic target spacing
    decides (as nnU-Net). Only 3D grids have a low-resolution axis.
    """
    axis = _single_lowres(spacing, anisotropy_threshold)
    if axis is None and target_spacing is not None:
        axis = _single_lowres(target_spacing, anisotropy_threshold)
    return axis


def axis_orders(ndim: int, *, order: int, lowres: int | None, order_z: int = 1) -> tuple[int, ...]:
    """Interpolation order per axis: ``order_z`` along the low-resolution axis, ``order`` elsewhere."""
    return tuple(order_z if axis == lowres else order for axis in range(ndim))


@functools.lru_cache(maxsize=1)
def _controller():
    return ThreadpoolController() if ThreadpoolController is not None else None


@contextlib.contextmanager
def single_blas_thread() -> Iterator[None]:
    """Run the block inside on one BLAS thread (a no-op without ``threadpoolctl``).

    The resampling products are many small matrix products: OpenBLAS's threads wake and sleep for
    each, and when another process competes for the cores a 0.2 s resampling took 2-10 s with two
    threads on this 2-core machine. One thread was never slower in our measurements.
    """
    controller = _controller()
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield


# -- weight matrices ------------------------------------------------------------------------------
def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    k = np.abs(index) % period
    return np.where(k >= n, period - k, k)


def _taps(n: int, m: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Input indices ``(m, k)`` and weights ``(m, k)`` of each output sample (before prefiltering)."""
    i = np.arange(m, dtype=np.float64)
    x = (i + 0.5) * (n / m) - 0.5
    if order == 0:
        idx = np.minimum(np.floor((i + 0.5) * (n / m)).astype(np.int64), n - 1)
        return idx[:, None], np.ones((m, 1))
    if order == 1:
        x = np.clip(x, 0.0, n - 1.0)
        f = np.minimum(np.floor(x).astype(np.int64), max(n - 2, 0))
        t = x - f
        return np.stack([f, np.minimum(f + 1, n - 1)], axis=1), np.stack([1.0 - t, t], axis=1)
    f = np.floor(x).astype(np.int64)
    t = x - f
    idx = _mirror(np.stack([f - 1, f, f + 1, f + 2], axis=1), n)
    w = np.stack([(1 - t) ** 3, 3 * t**3 - 6 * t**2 + 4, -3 * t**3 + 3 * t**2 + 3 * t + 1, t**3], axis=1) / 6.0
    return idx, w


@functools.lru_cache(maxsize=64)
def _axis_matrix(n: int, m: int, order: int) -> np.ndarray:
    """The ``(m, n)`` float32 matrix resampling one axis of length ``n`` to ``m`` (read-only, cached)."""
    if order not in (0, 1, 3):
        raise ValueError(f"interpolation order must be 0, 1 or 3, got {order}")
    idx, w = _taps(n, m, order)
    mat = np.zeros((m, n), dtype=np.float64)
    np.add.at(mat, (np.repeat(np.arange(m), idx.shape[1]), idx.ravel()), w.ravel())
    if order == 3 and n > 1:  # B-spline coefficients = prefilter @ samples (mirror boundary)
        mat = mat @ ndimage.spline_filter1d(np.eye(n), 3, axis=0, mode="mirror")
        mat[np.abs(mat) < _TRUNCATE] = 0.0
    out = mat.astype(np.float32)
    out.flags.writeable = False
    return out


def _row_chunks(mat: np.ndarray) -> list[tuple[int, int, int, int]]:
    """``(row0, row1, col0, col1)`` blocks covering every nonzero of a banded matrix."""
    nz = mat != 0
    has = nz.any(axis=1)
    first = np.where(has, nz.argmax(axis=1), mat.shape[1])
    last = np.where(has, mat.shape[1] - nz[:, ::-1].argmax(axis=1), 0)
    out = []
    for r0 in range(0, mat.shape[0], _CHUNK):
        r1 = min(r0 + _CHUNK, mat.shape[0])
        c0, c1 = int(first[r0:r1].min()), int(last[r0:r1].max())
        out.append((r0, r1, min(c0, c1), c1))
    return out


def _apply_axis(a: np.ndarray, mat: np.ndarray, axis: int) -> np.ndarray:
    """Multiply ``mat`` (m, n) into axis ``axis`` of the C-contiguous array ``a``; float32 result.

    Other input types (int16 CT, float16 probabilities) are converted block by block, so no
    float32 copy of the whole input is made.
    """
    n, m = a.shape[axis], mat.shape[0]
    pre, post = math.prod(a.shape[:axis]), math.prod(a.shape[axis + 1 :])
    out = np.empty((*a.shape[:axis], m, *a.shape[axis + 1 :]), dtype=np.float32)
    for r0, r1, c0, c1 in _row_chunks(mat):
        block = mat[r0:r1, c0:c1]
        if c1 <= c0:
            out.reshape(pre, m, post)[:, r0:r1, :] = 0.0
        elif post == 1:  # last axis: rows of a @ block.T
            out.reshape(pre, m)[:, r0:r1] = a.reshape(pre, n)[:, c0:c1].astype(np.float32, copy=False) @ block.T
        else:
            src = a.reshape(pre, n, post)[:, c0:c1, :].astype(np.float32, copy=False)
            out.reshape(pre, m, post)[:, r0:r1, :] = np.matmul(block, src)
    return out


def _axis_sequence(old: Sequence[int], new: Sequence[int]) -> list[int]:
    """Axes that change, shrinking ones first (the intermediate arrays stay small)."""
    axes = [k for k in range(len(old)) if old[k] != new[k]]
    return sorted(axes, key=lambda k: new[k] / old[k])


def _resample_float(a: np.ndarray, shape: Sequence[int], orders: Sequence[int]) -> np.ndarray:
    """Separable resampling of an array to float32, one axis at a time."""
    axes = _axis_sequence(a.shape, shape)
    if not axes:
        return np.array(a, dtype=np.float32, order="C")  # a copy, as when resampling
    out = np.ascontiguousarray(a)
    for axis in axes:
        out = _apply_axis(out, _axis_matrix(a.shape[axis], shape[axis], orders[axis]), axis)
    return out


# -- labels ---------------------------------------------------------------------------------------
def _nearest_labels(lab: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    out = lab
    for axis in _axis_sequence(lab.shape, shape):
        idx, _ = _taps(lab.shape[axis], shape[axis], 0)
        out = np.take(out, idx[:, 0], axis=axis)
    return np.ascontiguousarray(out)


def _class_box(box: tuple[slice, ...], old: Sequence[int], shape: Sequence[int], orders: Sequence[int]):
    """Per axis ``(row0, row1, col0, col1, n, order)``: output rows touched by the input slice."""
    out = []
    for axis, sl in enumerate(box):
        n, m = old[axis], shape[axis]
        if n == m:
            out.append((sl.start, sl.stop, sl.start, sl.stop, n, orders[axis]))
            continue
        rows = np.flatnonzero(_axis_matrix(n, m, orders[axis])[:, sl.start : sl.stop].any(axis=1))
        out.append((int(rows[0]), int(rows[-1]) + 1, sl.start, sl.stop, n, orders[axis]))
    return out


def _resample_labels(lab: np.ndarray, shape: Sequence[int], orders: Sequence[int]) -> np.ndarray:
    """Class-by-class linear interpolation with a running argmax (no one-hot volume).

    Each class is interpolated inside its own bounding box; the running maximum and the sum of
    the class probabilities are kept only over the union of those boxes.
    """
    out = np.zeros(shape, dtype=lab.dtype)
    objects = [(v, b) for v, b in enumerate(ndimage.find_objects(lab), start=1) if b is not None]
    if not objects:
        return out
    boxes = {v: _class_box(b, lab.shape, shape, orders) for v, b in objects}
    lo = [min(bx[axis][0] for bx in boxes.values()) for axis in range(lab.ndim)]
    hi = [max(bx[axis][1] for bx in boxes.values()) for axis in range(lab.ndim)]
    best = np.zeros([b - a for a, b in zip(lo, hi, strict=True)], dtype=np.float32)
    total = np.zeros_like(best)
    sub = out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    for value, box in objects:
        prob = _resample_boxed((lab[box] == value).astype(np.float32), boxes[value], shape)
        region = tuple(slice(b[0] - a, b[1] - a) for b, a in zip(boxes[value], lo, strict=True))
        region_best = best[region]
        wins = prob > region_best
        region_best[wins] = prob[wins]
        sub[region][wins] = value
        total[region] += prob
    np.subtract(1.0, total, out=total)  # the background probability
    sub[best < total] = 0  # background wins only where strictly larger (ties go to the class)
    return out


def _resample_boxed(mask: np.ndarray, boxes, shape: Sequence[int]) -> np.ndarray:
    """Resample a class mask cut to its box with the matching block of each axis matrix."""
    out = mask
    axes = [a for a in range(mask.ndim) if boxes[a][4] != shape[a]]
    for axis in sorted(axes, key=lambda a: (boxes[a][1] - boxes[a][0]) / (boxes[a][3] - boxes[a][2])):
        r0, r1, c0, c1, n, order = boxes[axis]
        mat = _axis_matrix(n, shape[axis], order)[r0:r1, c0:c1]
        out = _apply_axis(np.ascontiguousarray(out), mat, axis)
    return out


def _check_label(a: np.ndarray) -> np.ndarray:
    if a.dtype == bool:
        return a.view(np.uint8)
    if a.dtype.kind not in "iu":
        raise ValueError(f"a label must be an integer array, got {a.dtype} (cast it, or pass is_label=False)")
    if a.dtype.kind == "i" and a.size and a.min() < 0:
        raise ValueError("a label must not hold negative values")
    return a


# -- public ---------------------------------------------------------------------------------------
def resample_to_shape(
    array: np.ndarray,
    shape: Sequence[int],
    *,
    order: int,
    is_label: bool = False,
    lowres_axis: int | None = None,
    order_z: int = 1,
) -> np.ndarray:
    """Resample ``array`` onto a grid of ``shape`` voxels covering the same field of view.

    Parameters
    ----------
    array
        2D or 3D image (any real dtype) or label (integer dtype when ``is_label``).
    shape
        Output shape, one value per axis.
    order
        0 (nearest), 1 (linear) or 3 (cubic B-spline) for images; 0 or 1 for labels.
    is_label
        Resample class by class (order 1) or by nearest neighbour (order 0); the output keeps the
        label's dtype and holds only values of the input (the ignore label included).
    lowres_axis
        Axis resampled with ``order_z`` instead of ``order`` (see :func:`lowres_axis`).
    order_z
        Interpolation order along ``lowres_axis`` (0 or 1; 1 by default).

    Returns
    -------
    numpy.ndarray
        float32 for images, the input dtype for labels. An axis whose length does not change is
        copied unchanged.
    """
    a = np.asarray(array)
    shape = tuple(int(s) for s in shape)
    if len(shape) != a.ndim or min(shape, default=0) < 1:
        raise ValueError(f"target shape {shape} does not fit an array of shape {a.shape}")
    orders = axis_orders(a.ndim, order=order, lowres=lowres_axis, order_z=order_z)
    if is_label:
        a = _check_label(a)
        if a.shape == shape:
            return np.array(array, copy=True)
        if max(orders) > 1:
            raise ValueError(f"labels are resampled with order 0 or 1, got {order}")
        if max(orders) == 0:
            out = _nearest_labels(a, shape)
        else:
            with single_blas_thread():
                out = _resample_labels(a, shape, orders)
        return out.view(bool) if np.asarray(array).dtype == bool else out
    if a.dtype.kind not in "biuf":
        raise ValueError(f"cannot resample an array of type {a.dtype}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError("array has NaN/Inf voxels; replace them before resampling (normalize() sets them to 0)")
    with single_blas_thread():
        return _resample_float(a, shape, orders)


def resample(
    array: np.ndarray,
    spacing: Sequence[float],
    target_spacing: Sequence[float],
    *,
    order: int,
    is_label: bool = False,
    anisotropy_threshold: float = 3.0,
    order_z: int = 1,
) -> np.ndarray:
    """Resample ``array`` from ``spacing`` to ``target_spacing`` (both in array axis order, mm).

    The output shape is ``round(shape * spacing / target_spacing)``; anisotropic data has its
    low-resolution axis resampled separately with ``order_z`` (see the module docstring).
    """
    a = np.asarray(array)
    if len(spacing) != a.ndim or len(target_spacing) != a.ndim:
        raise ValueError(f"spacing {tuple(spacing)} and target spacing {tuple(target_spacing)} need {a.ndim} values")
    if min(*spacing, *target_spacing) <= 0:
        raise ValueError("spacings must be positive")
    shape = resampled_shape(a.shape, spacing, target_spacing)
    axis = lowres_axis(spacing, target_spacing, anisotropy_threshold=anisotropy_threshold)
    return resample_to_shape(a, shape, order=order, is_label=is_label, lowres_axis=axis, order_z=order_z)
