"""Sliding-window inference: run a patch predictor over a whole 2D/3D image and blend the tiles.

The image is cut into tiles of ``patch_size`` that overlap by at least ``overlap``; each tile's
prediction is weighted by an importance map (a Gaussian, or ones) and the weighted sum is divided
by the summed weights, so a predictor that returns ``f(x)`` voxel-wise gives ``f(x)`` back exactly.

Tiling rule (per axis, as nnU-Net): an axis shorter than the patch is padded to the patch size
(``pad_value``, half before and half after; the padding is never materialised, tiles are filled
from the image and the prediction is cropped back). Otherwise ``n = ceil((size - patch) / (patch *
(1 - overlap))) + 1`` tiles are placed evenly from 0 to ``size - patch``: the first and last tiles
are flush with the borders, no tile leaves the image, and the real overlap is never below the
requested one. MONAI places tiles at multiples of ``int(patch * (1 - overlap))`` and shifts only the
last one; both give the same tiles when ``size - patch`` is a multiple of that interval.

Memory: the output (``K`` channels) and the weight sum (one channel) are the only volume-sized
buffers, ``(K + 1) * voxels * 4`` bytes in float32 (half of it with ``out_dtype=float16``); the input
is read tile by tile (no padded or float32 copy of it), the tile batch is one reused buffer, and
the weight sum is divided into the output in place.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import torch

from voxseg.errors import ConfigError, InputImageError
from voxseg.tiling import gaussian_weights, overlap_slices, tile_grid, tile_starts

__all__ = ["sliding_window", "tile_starts", "tile_grid", "importance_map", "PatchPredictor"]

log = logging.getLogger(__name__)

#: A predictor maps a batch ``(B, C, *patch)`` to ``(B, K, *patch)`` (logits or probabilities).
PatchPredictor = Callable[[torch.Tensor], torch.Tensor]

_OUT_DTYPES = {
    torch.float32: torch.float32,
    torch.float16: torch.float16,
    np.dtype(np.float32): torch.float32,
    np.dtype(np.float16): torch.float16,
}


@lru_cache(maxsize=16)
def _cached_importance(patch_size: tuple[int, ...], blend: str, sigma_scale: tuple[float, ...]) -> torch.Tensor:
    if blend == "constant":
        return torch.ones(patch_size, dtype=torch.float32)
    return torch.from_numpy(gaussian_weights(patch_size, sigma_scale))


def importance_map(
    patch_size: Sequence[int],
    *,
    blend: Literal["gaussian", "constant"] = "gaussian",
    sigma_scale: float | Sequence[float] = 0.125,
) -> torch.Tensor:
    """The weight of each voxel of a tile when tiles are blended (float32, shape ``patch_size``).

    ``gaussian``: ``exp(-d**2 / (2 * sigma**2))`` over the distance ``d`` from the patch centre
    (``(patch - 1) / 2``) per axis, ``sigma = sigma_scale * patch``, multiplied over the axes and
    clamped below at ``1e-3`` (MONAI's map). ``constant``: ones. Maps are computed once per
    argument set and cached; a copy is returned.
    """
    patch = tuple(int(p) for p in patch_size)
    scales = _sigma_tuple(sigma_scale, len(patch))
    _check_choice("blend", blend, ("gaussian", "constant"))
    return _cached_importance(patch, blend, scales).clone()


def sliding_window(
    image: np.ndarray | torch.Tensor,
    predictor: PatchPredictor,
    patch_size: Sequence[int],
    *,
    overlap: float = 0.5,
    blend: Literal["gaussian", "constant"] = "gaussian",
    batch_size: int = 1,
    sigma_scale: float | Sequence[float] = 0.125,
    num_classes: int | None = None,
    device: str | torch.device | None = None,
    out_dtype: Any = np.float32,
    pad_value: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray | torch.Tensor:
    """Predict a whole image tile by tile and blend the tiles' outputs.

    Parameters
    ----------
    image
        ``(C, *spatial)``, channels first and **no batch axis**, 2D or 3D (any spatial rank equal to
        ``len(patch_size)``); numpy array or torch tensor of any real dtype (tiles are cast to
        float32 one by one, the image is never copied).
    predictor
        Callable on a float32 batch ``(B, C, *patch_size)`` returning ``(B, K, *patch_size)``
        (a network, or a wrapper such as :class:`MirrorTTA` / :class:`Ensemble`). It is called
        under ``torch.inference_mode``.
    patch_size
        Tile size per spatial axis.
    overlap
        Minimum fraction of a tile shared with its neighbour along each axis, in ``[0, 1)``.
    blend
        ``"gaussian"`` (tile centres count more; see :func:`importance_map`) or ``"constant"``.
    batch_size
        Tiles per predictor call.
    sigma_scale
        Gaussian sigma as a fraction of the patch size (per axis, or one for all).
    num_classes
        Expected ``K``; checked against the predictor's output (inferred when None).
    device
        Where tiles are sent for the predictor (default: where the image is). Blending happens
        where the image is (CPU for numpy input).
    out_dtype
        ``float32`` (default) or ``float16`` (numpy or torch dtype): the accumulation and output type.
    pad_value
        Value of the virtual padding of axes shorter than the patch.
    progress
        Called as ``progress(tiles_done, tiles_total)`` after every batch.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``(K, *spatial)`` blended predictions, of the same kind (numpy/torch) as ``image``.
    """
    spatial, acc_dtype = _validate(image, patch_size, overlap, blend, batch_size, out_dtype)
    patch = tuple(int(p) for p in patch_size)
    acc_device = image.device if isinstance(image, torch.Tensor) else torch.device("cpu")
    weights = _cached_importance(patch, blend, _sigma_tuple(sigma_scale, len(patch)))
    weights = weights.to(device=acc_device, dtype=acc_dtype)
    grid = tile_grid(spatial, patch, overlap)
    total = math.prod(len(s) for s in grid)
    log.debug("sliding window: %s tiles of %s over %s (overlap %.2f)", total, patch, spatial, overlap)

    batch = torch.empty((batch_size, image.shape[0], *patch), dtype=torch.float32, device=acc_device)
    weight_sum = torch.zeros(spatial, dtype=acc_dtype, device=acc_device)
    out: torch.Tensor | None = None
    done = 0
    with torch.inference_mode():
        for starts in _batches(itertools.product(*grid), batch_size):
            tiles = batch[: len(starts)]
            for tile, start in zip(tiles, starts, strict=True):
                _fill_tile(tile, image, start, pad_value)
            pred = _run(predictor, tiles, device, patch, num_classes).to(device=acc_device, dtype=acc_dtype)
            if out is None:
                num_classes = pred.shape[1]
                with torch.inference_mode(False):  # a normal tensor: callers may modify it in place
                    out = torch.zeros((num_classes, *spatial), dtype=acc_dtype, device=acc_device)
            for tile_pred, start in zip(pred, starts, strict=True):
                _accumulate(out, weight_sum, tile_pred, weights, start)
            done += len(starts)
            if progress is not None:
                progress(done, total)
        if out is None:  # unreachable: every image has at least one tile
            raise RuntimeError("sliding_window produced no tiles")
        out.div_(weight_sum)
    del weight_sum
    return out.numpy() if isinstance(image, np.ndarray) else out


def _validate(image: Any, patch_size: Any, overlap: Any, blend: Any, batch_size: Any, out_dtype: Any):
    if not isinstance(image, (np.ndarray, torch.Tensor)):
        raise InputImageError(None, f"sliding_window needs a numpy array or torch tensor, got {type(image).__name__}")
    try:
        patch = tuple(int(p) for p in patch_size)
    except (TypeError, ValueError):
        raise ConfigError(f"patch_size must be a sequence of ints, got {patch_size!r}") from None
    if not patch or min(patch) < 1:
        raise ConfigError(f"patch_size must be positive ints, got {patch_size!r}")
    if image.ndim != len(patch) + 1:
        raise InputImageError(
            None,
            f"image of shape {tuple(image.shape)} does not match a {len(patch)}D patch {patch}",
            f"pass (channels, *spatial) with {len(patch)} spatial axes and no batch axis",
        )
    if min(image.shape) < 1:
        raise InputImageError(None, f"image of shape {tuple(image.shape)} is empty")
    if image.dtype in (np.complex64, np.complex128, torch.complex64, torch.complex128):
        raise InputImageError(None, f"complex image ({image.dtype}) cannot be predicted", "pass its magnitude")
    if not (isinstance(overlap, (int, float)) and 0 <= overlap < 1):
        raise ConfigError(f"overlap must be in [0, 1), got {overlap!r}")
    _check_choice("blend", blend, ("gaussian", "constant"))
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    try:
        acc_dtype = _OUT_DTYPES[out_dtype if isinstance(out_dtype, torch.dtype) else np.dtype(out_dtype)]
    except (KeyError, TypeError):
        raise ConfigError(f"out_dtype must be float32 or float16, got {out_dtype!r}") from None
    return tuple(int(s) for s in image.shape[1:]), acc_dtype


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r} (choose from {', '.join(choices)})")


def _sigma_tuple(sigma_scale: float | Sequence[float], ndim: int) -> tuple[float, ...]:
    scales = (sigma_scale,) * ndim if isinstance(sigma_scale, (int, float)) else tuple(sigma_scale)
    if len(scales) != ndim or not all(isinstance(s, (int, float)) and s > 0 for s in scales):
        raise ConfigError(f"sigma_scale must be one positive number or {ndim} of them, got {sigma_scale!r}")
    return tuple(float(s) for s in scales)


def _batches(tiles: Iterator[tuple[int, ...]], size: int) -> Iterator[list[tuple[int, ...]]]:
    while chunk := list(itertools.islice(tiles, size)):
        yield chunk


def _fill_tile(tile: torch.Tensor, image: np.ndarray | torch.Tensor, start: tuple[int, ...], pad_value: float):
    """Copy the image under a tile into the reused float32 buffer ``tile`` (C, *patch)."""
    img_sl, tile_sl = overlap_slices(start, tile.shape[1:], image.shape[1:])
    full = all(t.start == 0 and t.stop == p for t, p in zip(tile_sl, tile.shape[1:], strict=True))
    if not full:
        tile.fill_(pad_value)
    if isinstance(image, np.ndarray):  # numpy assignment casts any dtype and handles negative strides
        tile.numpy()[(slice(None), *tile_sl)] = image[(slice(None), *img_sl)]
    else:
        tile[(slice(None), *tile_sl)].copy_(image[(slice(None), *img_sl)])


def _run(predictor: PatchPredictor, tiles: torch.Tensor, device: Any, patch: tuple[int, ...], num_classes: int | None):
    x = tiles if device is None else tiles.to(device)
    pred = predictor(x)
    if not isinstance(pred, torch.Tensor):
        pred = torch.as_tensor(pred)
    expected = (len(tiles), num_classes or (pred.shape[1] if pred.ndim > 1 else -1), *patch)
    if tuple(pred.shape) != expected:
        want = f"({len(tiles)}, {num_classes or 'K'}, {', '.join(map(str, patch))})"
        raise ConfigError(
            f"the predictor returned shape {tuple(pred.shape)} for tiles {tuple(tiles.shape)}; expected {want} "
            "(one output channel per class, same spatial size as the tile)"
        )
    return pred


def _accumulate(out: torch.Tensor, weight_sum: torch.Tensor, pred: torch.Tensor, weights: torch.Tensor, start):
    """Add one tile's weighted prediction (K, *patch) to the output, cropped to the image."""
    img_sl, tile_sl = overlap_slices(start, weights.shape, out.shape[1:])
    w = weights[tile_sl]
    out[(slice(None), *img_sl)].addcmul_(pred[(slice(None), *tile_sl)], w)
    weight_sum[img_sl].add_(w)
