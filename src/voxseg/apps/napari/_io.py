"""napari reader and writers over :mod:`voxseg.io` (NIfTI, NRRD, MHA/MHD, TIFF, DICOM).

DICOM: a folder (each series under it becomes a layer), a ``.zip`` of a series (unpacked safely
into a temporary folder: no path traversal, bounded size) or a ``.dcm`` file (a DICOM SEG opens
as a Labels layer).

The reader gives one layer per channel with ``scale = spacing`` and ``translate = origin``
(see :mod:`voxseg.apps.napari._layers`). A file is opened as a Labels layer when its voxels are
integers and its name says it is a label image (``label``, ``seg``, ``mask``, ``gt`` in the
name); otherwise as an Image layer. The writers take the geometry back from the layer's scale,
translate and metadata.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.apps.napari._layers import data_volume, has_identity_direction, label_dtype, volume_layer_kwargs
from voxseg.io import image_suffix, read_channels, write_image

__all__ = ["napari_get_reader", "read_layers", "write_labels", "write_image_layer", "READER_SUFFIXES"]

log = logging.getLogger(__name__)

READER_SUFFIXES = (
    ".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".tif", ".tiff", ".ome.tif", ".ome.tiff", ".dcm", ".zip",
)  # fmt: skip
MAX_ZIP_BYTES = 4 << 30  # a zipped series may unpack to at most 4 GiB
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
    if path.is_dir() or image_suffix(path) == ".zip":
        return _read_dicom_layers(path)
    return _layers(path, read_channels(path), _stem(path), label=_is_seg(path))


def _is_seg(path: Path) -> bool:
    if image_suffix(path) != ".dcm":
        return False
    from voxseg.io.dicom_io import _is_seg as is_seg

    return is_seg(path)


def _read_dicom_layers(path: Path) -> list[LayerData]:
    """One layer per image series in a folder or a zip (extracted into a temporary folder)."""
    from voxseg.errors import InputImageError
    from voxseg.io.dicom_scan import find_series

    with tempfile.TemporaryDirectory(prefix="voxseg-napari-") as tmp:
        root = path
        if path.is_file():
            from voxseg.apps.web.uploads import extract_zip_safely

            extract_zip_safely(path, Path(tmp), max_total_bytes=MAX_ZIP_BYTES, label=str(path))
            root = Path(tmp)
        found = [s for s in find_series(root) if s.problem is None]
        if not found:
            raise InputImageError(path, "holds no readable DICOM image series", "open a folder or .zip of .dcm files")
        layers: list[LayerData] = []
        for s in found:
            name = _stem(path) if len(found) == 1 else f"{_stem(path)} {s.description or s.modality} {s.series_number}"
            layers.extend(_layers(path, read_channels(s.folder, series_uid=s.uid), name.strip(), label=False))
    return layers


def _layers(path: Path, channels: list, stem: str, *, label: bool) -> list[LayerData]:
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
        if label or _is_label_file(path, volume.array):
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
        if Path(p).is_dir():
            if not _holds_dicom(Path(p)):
                return None
        elif image_suffix(Path(p)) not in READER_SUFFIXES and not Path(p).name.lower().endswith(READER_SUFFIXES):
            return None
    return _read_paths


def _holds_dicom(folder: Path) -> bool:
    from voxseg.io.dicom_scan import is_dicom_file

    for _here, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(is_dicom_file(Path(_here) / n) for n in names):
            return True
    return False


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
