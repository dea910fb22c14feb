"""The sliding window: run a patch runner over a whole 2D/3D image and blend the tiles (numpy only).

This is voxseg's one tiling-and-blending loop. Every prediction path uses it with its own *patch
runner* (a callable from a float32 tile batch ``(B, C, *patch)`` to ``(B, K, *patch)``): the torch
networks (:mod:`voxseg.inference.sliding_window` wraps a torch predictor for it), onnxruntime and
OpenVINO sessions (:mod:`voxseg.inference.runners`), and the nnU-Net-exact arithmetic
(:mod:`voxseg.nnunet.exact`, which passes nnU-Net's own tile starts and Gaussian). It imports no
torch, so the torch-free backends share it.

Tiling rule (per axis, as nnU-Net): an axis shorter than the patch is padded to the patch size
(``pad_value``, half before and half after; the padding is never materialised, tiles are filled
from the image and the prediction is cropped back). Otherwise ``n = ceil((size - patch) / (patch *
(1 - overlap))) + 1`` tiles are placed evenly from 0 to ``size - patch``
(:func:`voxseg.inference.tiling.tile_grid`). Each tile's output is weighted by an importance map
(Gaussian or ones) and the weighted sum is divided by the summed weights, so a runner that returns
``f(x)`` voxel-wise gives ``f(x)`` back exactly.

Memory: the output (``K`` channels) and the weight sum (one channel) are the only volume-sized
buffers, ``(K + 1) * voxels * 4`` bytes in float32 (half of it with ``out_dtype=float16``); the
input is read tile by tile (no padded or float32 copy of it) into one reused batch buffer.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from voxseg.errors import ConfigError, InputImageError
from voxseg.inference.tiling import gaussian_weights, overlap_slices, tile_grid

__all__ = ["PatchRunner", "sliding_window", "importance_weights", "BLENDS"]

log = logging.getLogger(__name__)

#: A patch runner maps a float32 batch ``(B, C, *patch)`` to ``(B, K, *patch)`` (logits or
#: probabilities, any array-like that ``numpy.asarray`` takes).
PatchRunner = Callable[[np.ndarray], Any]

BLENDS: tuple[str, ...] = ("gaussian", "constant")
_OUT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


@lru_cache(maxsize=16)
def _cached_weights(patch_size: tuple[int, ...], blend: str, sigma_scale: tuple[float, ...]) -> np.ndarray:
    out = np.ones(patch_size, dtype=np.float32) if blend == "constant" else gaussian_weights(patch_size, sigma_scale)
    out.setflags(write=False)
    return out


def importance_weights(
    patch_size: Sequence[int],
    *,
    blend: Literal["gaussian", "constant"] = "gaussian",
    sigma_scale: float | Sequence[float] = 0.125,
) -> np.ndarray:
    """The weight of each voxel of a tile when tiles are blended (float32, read-only, cached).

    ``gaussian``: ``exp(-d**2 / (2 * sigma**2))`` over the distance ``d`` from the patch centre
    (``(patch - 1) / 2``) per axis, ``sigma = sigma_scale * patch``, multiplied over the axes and
    clamped below at ``1e-3`` (MONAI's map). ``constant``: ones.
    """
    patch = _patch_tuple(patch_size)
    _check_choice("blend", blend, BLENDS)
    return _cached_weights(patch, blend, sigma_tuple(sigma_scale, len(patch)))


def sliding_window(
    image: np.ndarray,
    run: PatchRunner,
    patch_size: Sequence[int],
    *,
    overlap: float = 0.5,
    blend: Literal["gaussian", "constant"] = "gaussian",
    batch_size: int = 1,
    sigma_scale: float | Sequence[float] = 0.125,
    num_classes: int | None = None,
    out_dtype: Any = np.float32,
    pad_value: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
    grid: Sequence[Sequence[int]] | None = None,
    weights: np.ndarray | None = None,
    skip: Callable[[np.ndarray], bool] | None = None,
    background: Sequence[float] | None = None,
) -> np.ndarray:
    """Predict a whole image tile by tile with ``run`` and blend the tiles' outputs.

    Parameters
    ----------
    image
        ``(C, *spatial)`` numpy array, channels first and no batch axis, of any real dtype (tiles
        are cast to float32 one by one; the image is never copied).
    run
        The patch runner (see :data:`PatchRunner`).
    patch_size
        Tile size per spatial axis.
    overlap
        Minimum fraction of a tile shared with its neighbour along each axis, in ``[0, 1)``.
    blend, sigma_scale
        The importance map (see :func:`importance_weights`).
    batch_size
        Tiles per runner call.
    num_classes
        Expected ``K``; checked against the runner's output (inferred when None).
    out_dtype
        ``float32`` (default) or ``float16``: the accumulation and output type.
    pad_value
        Value of the virtual padding of axes shorter than the patch.
    progress
        Called as ``progress(tiles_done, tiles_total)`` after every batch.
    grid
        Per-axis tile starts in image coordinates, instead of the tiling rule (another tool's
        tiling, e.g. nnU-Net's); ``overlap`` is then ignored.
    weights
        The importance map itself (shape ``patch_size``), instead of ``blend``/``sigma_scale``;
        accumulated in ``out_dtype`` like the output.
    skip, background
        A cheap test on a tile's in-image input ``(C, *part)``: a tile it accepts is not run and
        contributes ``background`` (the ``K`` outputs of a background tile) instead.

    Returns
    -------
    numpy.ndarray
        ``(K, *spatial)`` blended outputs in ``out_dtype``.
    """
    spatial, acc = _validate(image, patch_size, overlap, blend, batch_size, out_dtype)
    patch = _patch_tuple(patch_size)
    if weights is None:
        weights = importance_weights(patch, blend=blend, sigma_scale=sigma_scale)
    elif tuple(weights.shape) != patch:
        raise ConfigError(f"weights of shape {tuple(weights.shape)} do not match the patch {patch}")
    weights = weights.astype(acc, copy=False)
    starts_per_axis = tile_grid(spatial, patch, overlap) if grid is None else tuple(tuple(g) for g in grid)
    total = math.prod(len(s) for s in starts_per_axis)
    log.debug("sliding window: %s tiles of %s over %s (overlap %.2f)", total, patch, spatial, overlap)
    batch = np.empty((batch_size, image.shape[0], *patch), dtype=np.float32)
    weight_sum = np.zeros(spatial, dtype=acc)
    out: np.ndarray | None = None
    scratch: np.ndarray | None = None  # one tile's weighted output, reused (no per-tile temporaries)
    done = 0
    tiles_iter: Any = itertools.product(*starts_per_axis)
    if skip is not None:
        out, scratch, tiles_iter, done = _skip_tiles(image, skip, background, tiles_iter, weights, weight_sum)
        num_classes = num_classes or out.shape[0]
    for starts in _batches(tiles_iter, batch_size):
        tiles = batch[: len(starts)]
        for tile, start in zip(tiles, starts, strict=True):
            _fill_tile(tile, image, start, pad_value)
        pred = _run(run, tiles, patch, num_classes)
        if out is None:
            num_classes = pred.shape[1]
            out = np.zeros((num_classes, *spatial), dtype=acc)
            scratch = np.empty((num_classes, *patch), dtype=np.float32)
        for tile_pred, start in zip(pred, starts, strict=True):
            _accumulate(out, weight_sum, tile_pred, weights, start, scratch)
        done += len(starts)
        if progress is not None:
            progress(done, total)
    if out is None:  # unreachable: every image has at least one tile
        raise ConfigError("the sliding window produced no tiles")
    np.divide(out, weight_sum, out=out)
    return out


def sigma_tuple(sigma_scale: float | Sequence[float], ndim: int) -> tuple[float, ...]:
    """``sigma_scale`` as one positive float per axis (one number is used for every axis)."""
    scales = (sigma_scale,) * ndim if isinstance(sigma_scale, (int, float)) else tuple(sigma_scale)
    if len(scales) != ndim or not all(isinstance(s, (int, float)) and s > 0 for s in scales):
        raise ConfigError(f"sigma_scale must be one positive number or {ndim} of them, got {sigma_scale!r}")
    return tuple(float(s) for s in scales)


def _patch_tuple(patch_size: Any) -> tuple[int, ...]:
    try:
        patch = tuple(int(p) for p in patch_size)
    except (TypeError, ValueError):
        raise ConfigError(f"patch_size must be a sequence of ints, got {patch_size!r}") from None
    if not patch or min(patch) < 1:
        raise ConfigError(f"patch_size must be positive ints, got {patch_size!r}")
    return patch


def _validate(image: Any, patch_size: Any, overlap: Any, blend: Any, batch_size: Any, out_dtype: Any):
    if not isinstance(image, np.ndarray):
        raise InputImageError(None, f"the sliding window needs a numpy array, got {type(image).__name__}")
    patch = _patch_tuple(patch_size)
    if image.ndim != len(patch) + 1:
        raise InputImageError(
            None,
            f"image of shape {tuple(image.shape)} does not match a {len(patch)}D patch {patch}",
            f"pass (channels, *spatial) with {len(patch)} spatial axes and no batch axis",
        )
    if min(image.shape) < 1:
        raise InputImageError(None, f"image of shape {tuple(image.shape)} is empty")
    if np.iscomplexobj(image):
        raise InputImageError(None, f"complex image ({image.dtype}) cannot be predicted", "pass its magnitude")
    if not (isinstance(overlap, (int, float)) and not isinstance(overlap, bool) and 0 <= overlap < 1):
        raise ConfigError(f"overlap must be in [0, 1), got {overlap!r}")
    _check_choice("blend", blend, BLENDS)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    try:
        acc = np.dtype(out_dtype)
    except TypeError:
        acc = None
    if acc not in _OUT_DTYPES:
        raise ConfigError(f"out_dtype must be float32 or float16, got {out_dtype!r}")
    return tuple(int(s) for s in image.shape[1:]), acc


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r} (choose from {', '.join(choices)})")


def _batches(tiles: Iterator[tuple[int, ...]], size: int) -> Iterator[list[tuple[int, ...]]]:
    while chunk := list(itertools.islice(tiles, size)):
        yield chunk


def _fill_tile(tile: np.ndarray, image: np.ndarray, start: tuple[int, ...], pad_value: float) -> None:
    """Copy the image under a tile into the reused float32 buffer ``tile`` (C, *patch)."""
    img_sl, tile_sl = overlap_slices(start, tile.shape[1:], image.shape[1:])
    if any(t.start != 0 or t.stop != p for t, p in zip(tile_sl, tile.shape[1:], strict=True)):
        tile.fill(pad_value)
    tile[(slice(None), *tile_sl)] = image[(slice(None), *img_sl)]  # casts any dtype, any strides


def _skip_tiles(image, skip, background, tiles, weights: np.ndarray, weight_sum: np.ndarray):
    """Add ``background`` for every tile ``skip`` accepts; return the output, scratch, the tiles
    left to run and the number skipped."""
    if background is None:
        raise ConfigError("sliding_window: skip needs background (the outputs of a skipped tile)")
    patch, spatial = weights.shape, image.shape[1:]
    fill = np.broadcast_to(
        np.asarray(background, np.float32).reshape(-1, *(1,) * len(patch)), (len(background), *patch)
    )
    out = np.zeros((len(background), *spatial), dtype=weight_sum.dtype)
    scratch = np.empty((len(background), *patch), dtype=np.float32)
    keep, skipped = [], 0
    for start in tiles:
        if skip(image[(slice(None), *overlap_slices(start, patch, spatial)[0])]):
            _accumulate(out, weight_sum, fill, weights, start, scratch)
            skipped += 1
        else:
            keep.append(start)
    log.debug("sliding window: %d background tiles skipped", skipped)
    return out, scratch, iter(keep), skipped


def _run(run: PatchRunner, tiles: np.ndarray, patch: tuple[int, ...], num_classes: int | None) -> np.ndarray:
    pred = np.asarray(run(tiles))
    expected = (len(tiles), num_classes or (pred.shape[1] if pred.ndim > 1 else -1), *patch)
    if tuple(pred.shape) != expected:
        want = f"({len(tiles)}, {num_classes or 'K'}, {', '.join(map(str, patch))})"
        raise ConfigError(
            f"the predictor returned shape {tuple(pred.shape)} for tiles {tuple(tiles.shape)}; expected {want} "
            "(one output channel per class, same spatial size as the tile)"
        )
    return pred


def _accumulate(out, weight_sum, pred: np.ndarray, weights: np.ndarray, start, scratch: np.ndarray) -> None:
    """Add one tile's weighted output (K, *patch) to ``out``, cropped to the image (the product is
    formed in float32 in ``scratch``, then added in ``out``'s dtype)."""
    img_sl, tile_sl = overlap_slices(start, weights.shape, out.shape[1:])
    w = weights[tile_sl]
    product = scratch[(slice(None), *(slice(0, s.stop - s.start) for s in tile_sl))]
    np.multiply(pred[(slice(None), *tile_sl)], w, out=product)
    out[(slice(None), *img_sl)] += product
    weight_sum[img_sl] += w
