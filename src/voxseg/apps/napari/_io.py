"""napari reader and writers over :mod:`voxseg.io` (NIfTI, NRRD, MHA/MHD, TIFF).

The reader gives one layer per channel with ``scale = spacing`` and ``translate = origin``
(see :mod:`voxseg.apps.napari._layers`). A file is opened as a Labels layer when its voxels are
integers and its name says it is a label image (``label``, ``seg``, ``mask``, ``gt`` in the
name); otherwise as an Image layer. The writers take the geometry back from the layer's scale,
translate and metadata.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.apps.napari._layers import data_volume, has_identity_direction, label_dtype, volume_layer_kwargs
from voxseg.io import image_suffix, read_channels, write_image

__all__ = ["napari_get_reader", "read_layers", "write_labels", "write_image_layer", "READER_SUFFIXES"]

log = logging.getLogger(__name__)

READER_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".tif", ".tiff", ".ome.tif", ".ome.tiff")
_LABEL_NAME = re.compile(r"(^|[^a-z])(labels?|seg|segmentation|mask|gt|annotation)([^a-z]|$)", re.IGNORECASE)

LayerData = tuple[Any, dict[str, Any], str]


def _stem(path: Path) -> str:
    suffix = image_suffix(path)
    return path.name[: -len(suffix)] if suffix and path.name.lower().endswith(suffix) else path.stem


def _is_label_file(path: Path, array: np.ndarray) -> bool:
    integer = array.dtype == bool or np.issubdtype(array.dtype, np.integer)
    return bool(integer and _LABEL_NAME.search(_stem(path)))


def read_layers(path: str | Path) -> list[LayerData]:
    """Layer data tuples for one image file (one layer per channel).

    Raises
    ------
    InputImageError
        The file is missing, corrupt or of an unsupported type (from :func:`voxseg.io.read_channels`).
    """
    path = Path(path)
    channels = read_channels(path)
    stem = _stem(path)
    layers: list[LayerData] = []
    for k, volume in enumerate(channels):
        name = stem if len(channels) == 1 else f"{stem} [{k}]"
        if not has_identity_direction(volume):
            warnings.warn(
                f"{path.name}: its axes are not aligned with the world axes (direction "
                f"{np.round(volume.direction_matrix(), 3).tolist()}); napari shows it axis-aligned at its origin "
                "(the direction is kept and written back on save)",
                stacklevel=2,
            )
        kwargs = volume_layer_kwargs(volume, name=name, source=str(path))
        if _is_label_file(path, volume.array):
            layers.append((label_dtype(volume.array), kwargs, "labels"))
        else:
            layers.append((volume.array, kwargs, "image"))
    return layers


def _read_paths(path: str | Sequence[str]) -> list[LayerData]:
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    out: list[LayerData] = []
    for p in paths:
        out.extend(read_layers(p))
    return out


def napari_get_reader(path: str | Sequence[str]) -> Callable[[Any], list[LayerData]] | None:
    """npe2 reader hook: a reader for image files voxseg reads, else None."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths:
        return None
    for p in paths:
        if image_suffix(Path(p)) not in READER_SUFFIXES and not Path(p).name.lower().endswith(READER_SUFFIXES):
            return None
    return _read_paths


def _write(path: str, data: Any, meta: dict[str, Any], *, labels: bool) -> list[str]:
    volume = data_volume(
        data,
        scale=meta.get("scale"),
        translate=meta.get("translate"),
        metadata=meta.get("metadata"),
        name=str(meta.get("name", "layer")),
    )
    if labels:
        volume = volume.with_array(label_dtype(volume.array))
    written = write_image(volume, path)
    log.info("wrote %s (%s)", written, volume)
    return [str(written)]


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer for Labels layers (geometry from scale/translate/metadata)."""
    return _write(path, data, meta, labels=True)


def write_image_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer for Image layers (geometry from scale/translate/metadata)."""
    return _write(path, data, meta, labels=False)
