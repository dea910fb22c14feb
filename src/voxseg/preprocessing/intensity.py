"""Intensity normalization per channel, following :class:`voxseg.planning.Normalization` exactly.

Guarantees (for every scheme): the output is float32 and finite.

* NaN/Inf input voxels are left out of every statistic and are 0 in the output; a warning says how many.
* ``zscore``: a constant channel (standard deviation below ``1e-8``, a one-voxel region included)
  becomes all 0; an empty nonzero mask (an all-zero case) gives all 0.
* ``percentile_minmax``: ``min`` and ``max`` (the percentile, numpy's linear interpolation) are
  taken over the finite voxels inside the mask; an empty mask falls back to the whole channel with
  a warning; when ``max <= min`` the channel becomes ``x > min`` as 0/1.
* ``ct``: ``use_nonzero_mask`` has no effect (dataset statistics, as nnU-Net).

Statistics are accumulated in float64 over float32 data, without float64 copies of the volume.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from voxseg.errors import InputImageError
from voxseg.fingerprint.cropping import fill_holes, nonzero_region
from voxseg.planning.normalization import Normalization

__all__ = ["normalize", "normalize_channel", "mean_std"]

log = logging.getLogger(__name__)

_STD_EPS = 1e-8
_BLOCK = 1 << 20  # values per block for the float64 sum of squares


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and population standard deviation of a 1D array, float64 accumulators, no big copies."""
    n = values.size
    if n == 0:
        return 0.0, 0.0
    mean = float(np.add.reduce(values, dtype=np.float64) / n)
    squares = 0.0
    for k in range(0, n, _BLOCK):
        block = values[k : k + _BLOCK].astype(np.float64)
        block -= mean
        squares += float(np.dot(block, block))
    return mean, float(np.sqrt(squares / n))


def _zscore(x: np.ndarray, valid: np.ndarray | None, region: np.ndarray | None) -> None:
    """In place: ``(x - mean) / std`` with statistics over ``valid`` voxels; 0 outside ``region``."""
    values = x[valid] if valid is not None else x.ravel()
    mean, std = mean_std(values)
    if std < _STD_EPS:
        x[...] = 0.0
        if values.size:
            log.debug("constant channel (std %.3g): normalized to 0", std)
        return
    x -= np.float32(mean)
    x /= np.float32(std)
    if region is not None:
        x[~region] = 0.0


def _percentile_minmax(x: np.ndarray, norm: Normalization, mask: np.ndarray | None, finite: np.ndarray | None):
    """In place: ``clip((x - min) / (percentile - min), 0, 1)`` with statistics inside ``mask``."""
    select = mask
    if select is not None and not select.any():
        log.warning("percentile_minmax: mask channel %s is empty; using the whole channel", norm.mask_channel)
        select = None
    if finite is not None:
        select = finite if select is None else (select & finite)
    values = x[select] if select is not None else x.ravel()
    if values.size == 0:
        x[...] = 0.0
        return
    lo = float(values.min())
    hi = float(np.percentile(values, norm.percentile))
    del values
    if hi <= lo:
        np.greater(x, np.float32(lo), out=x, casting="unsafe")
        return
    x -= np.float32(lo)
    x /= np.float32(hi - lo)
    np.clip(x, 0.0, 1.0, out=x)


def normalize_channel(
    x: np.ndarray,
    norm: Normalization,
    *,
    nonzero_mask: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    name: str = "",
) -> np.ndarray:
    """Normalize one channel **in place** (``x`` must be a writable float32 array) and return it.

    Parameters
    ----------
    x
        The channel, float32.
    norm
        The scheme and its parameters.
    nonzero_mask
        Boolean mask for ``zscore`` with ``use_nonzero_mask`` (computed from ``x`` when None).
    mask
        Boolean mask for ``percentile_minmax`` (the mask channel ``> 0``); None means the whole channel.
    name
        Prefix of log messages (e.g. the case and channel).
    """
    if x.dtype != np.float32:
        raise TypeError(f"normalize_channel works in place on float32, got {x.dtype}")
    finite = np.isfinite(x)
    bad = int(finite.size - np.count_nonzero(finite))
    where = f"{name}: " if name else ""
    if bad and bad == finite.size:
        raise InputImageError(None, f"{where}every voxel is NaN or Inf", "the file holds no image")
    if bad:
        log.warning("%s%d NaN/Inf voxels of %d set to 0 after normalization", where, bad, x.size)
        x[~finite] = 0.0
    else:
        finite = None
    if norm.scheme == "zscore":
        region = None
        if norm.use_nonzero_mask:
            region = nonzero_mask if nonzero_mask is not None else fill_holes(nonzero_region([x]))
        valid = region if finite is None else (finite if region is None else region & finite)
        _zscore(x, valid, region)
    elif norm.scheme == "ct":
        np.clip(x, np.float32(norm.clip_low), np.float32(norm.clip_high), out=x)
        x -= np.float32(norm.mean)
        x /= np.float32(norm.std)
    elif norm.scheme == "percentile_minmax":
        _percentile_minmax(x, norm, mask, finite)
    elif norm.scheme == "mask":
        np.greater(x, 0, out=x, casting="unsafe")
    if finite is not None:
        x[~finite] = 0.0
    return x


def normalize(
    data: np.ndarray,
    normalization: Sequence[Normalization],
    *,
    nonzero_mask: np.ndarray | None = None,
    name: str = "",
) -> np.ndarray:
    """Normalize a ``(C, *spatial)`` array channel by channel; return a new float32 array.

    ``percentile_minmax`` masks come from the *input* values of their mask channel (``> 0``), so
    channel order does not matter. ``nonzero_mask`` defaults to the nonzero region of all channels
    with holes filled (see :mod:`voxseg.fingerprint.cropping`).
    """
    out = np.array(data, dtype=np.float32, copy=True, order="C")
    _normalize_inplace(out, normalization, nonzero_mask=nonzero_mask, name=name)
    return out


def _normalize_inplace(
    data: np.ndarray, normalization: Sequence[Normalization], *, nonzero_mask: np.ndarray | None, name: str
) -> None:
    if len(normalization) != data.shape[0]:
        raise ValueError(f"{len(normalization)} normalization schemes for {data.shape[0]} channels")
    masks = {}
    for norm in normalization:
        k = norm.mask_channel
        if norm.scheme == "percentile_minmax" and k is not None and k not in masks:
            if not 0 <= k < data.shape[0]:
                raise ValueError(f"mask_channel {k} does not exist (the case has {data.shape[0]} channels)")
            masks[k] = data[k] > 0
    if nonzero_mask is None and any(n.scheme == "zscore" and n.use_nonzero_mask for n in normalization):
        nonzero_mask = fill_holes(nonzero_region(data))
    for c, norm in enumerate(normalization):
        label = f"{name} channel {c}".strip()
        normalize_channel(data[c], norm, nonzero_mask=nonzero_mask, mask=masks.get(norm.mask_channel), name=label)
