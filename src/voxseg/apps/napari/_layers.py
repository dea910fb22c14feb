"""Volumes <-> napari layers: geometry as ``scale``/``translate``, the direction in ``metadata``.

napari places data index ``k`` of a layer at world position ``translate + k * scale`` (axes in the
array order that voxseg uses too), so a Volume is shown with ``scale = spacing`` and
``translate = origin``. napari cannot show a non-identity direction (oblique or flipped axes) in
its axis-aligned slicing: such a volume is displayed as if its axes were the world axes, the
direction is kept in ``layer.metadata["voxseg"]["direction"]`` and written back on save, and a
warning says so. No Qt or napari import here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from voxseg.errors import InputImageError
from voxseg.io import Volume

__all__ = [
    "METADATA_KEY",
    "volume_layer_kwargs",
    "layer_volume",
    "data_volume",
    "has_identity_direction",
    "label_dtype",
]

log = logging.getLogger(__name__)

#: ``layer.metadata[METADATA_KEY]`` holds ``{"direction": [[...]], "source": "path"}``.
METADATA_KEY = "voxseg"


def has_identity_direction(volume: Volume) -> bool:
    return bool(np.allclose(volume.direction_matrix(), np.eye(volume.ndim), atol=1e-6))


def volume_layer_kwargs(volume: Volume, *, name: str, source: str | None = None) -> dict[str, Any]:
    """Layer keyword arguments (``name``, ``scale``, ``translate``, ``metadata``) for a Volume."""
    meta: dict[str, Any] = {"direction": [list(row) for row in volume.direction]}
    if source is not None:
        meta["source"] = str(source)
    return {
        "name": name,
        "scale": tuple(volume.spacing),
        "translate": tuple(volume.origin),
        "metadata": {METADATA_KEY: meta},
    }


def _direction(metadata: Mapping[str, Any] | None, ndim: int) -> np.ndarray | None:
    meta = (metadata or {}).get(METADATA_KEY) or {}
    direction = meta.get("direction") if isinstance(meta, Mapping) else None
    if direction is None:
        return None
    try:
        d = np.asarray(direction, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return d if d.shape == (ndim, ndim) else None


def data_volume(
    data: Any,
    *,
    scale: Any = None,
    translate: Any = None,
    metadata: Mapping[str, Any] | None = None,
    name: str = "layer",
) -> Volume:
    """A Volume from layer data and its ``scale``/``translate``/``metadata``.

    Spacing is the layer's ``scale`` and origin its ``translate`` (what napari shows), the
    direction comes from ``metadata["voxseg"]`` (identity when absent).

    Raises
    ------
    InputImageError
        The data is not a single-channel 2D or 3D array (RGB, time series, multiscale pyramids
        are refused with a hint).
    """
    if isinstance(data, (list, tuple)):  # multiscale: the full-resolution level
        data = data[0]
    array = np.asarray(data)
    if array.ndim not in (2, 3):
        raise InputImageError(
            None,
            f"layer {name!r} has {array.ndim} dimensions {array.shape}; voxseg works on one 2D or 3D channel",
            "split channels or time points into separate layers",
        )
    ndim = array.ndim
    spacing = np.ones(ndim) if scale is None else np.asarray(scale, dtype=np.float64)[-ndim:]
    origin = np.zeros(ndim) if translate is None else np.asarray(translate, dtype=np.float64)[-ndim:]
    direction = _direction(metadata, ndim)
    try:
        return Volume(array, tuple(spacing), tuple(origin), None if direction is None else direction)
    except ValueError as exc:
        raise InputImageError(None, f"layer {name!r} has an unusable geometry ({exc})", "fix its scale") from None


def layer_volume(layer: Any) -> Volume:
    """A Volume from a napari Image or Labels layer (see :func:`data_volume`)."""
    if getattr(layer, "rgb", False):
        raise InputImageError(
            None, f"layer {layer.name!r} is an RGB image", "convert it to one grey-level channel first"
        )
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    return data_volume(data, scale=layer.scale, translate=layer.translate, metadata=layer.metadata, name=layer.name)


def label_dtype(array: np.ndarray) -> np.ndarray:
    """Labels in the smallest unsigned type that holds them (napari often hands out int32/int64)."""
    arr = np.asarray(array)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputImageError(None, f"labels have dtype {arr.dtype}", "labels must be integers")
    low, high = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if low < 0:
        raise InputImageError(None, f"labels hold negative values (minimum {low})", "labels must be >= 0")
    for dtype in (np.uint8, np.uint16, np.uint32):
        if high <= np.iinfo(dtype).max:
            return arr.astype(dtype, copy=False)
    return arr.astype(np.uint64, copy=False)
