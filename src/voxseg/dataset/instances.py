"""Instance datasets: label files hold one id per object (nuclei, cells), trained on a border target.

A dataset declares it in ``dataset.json``::

    {"labels": {"background": 0, "nucleus": 1}, "instances": true, ...}

Its label files then hold instance ids (0 background, 1..N one object each, any N), not class
values. Connected components of a semantic mask merge objects that touch, so such a dataset is
trained on a 3-class target made from the ids when a label is read (:func:`read_label`):
background 0, object interior 1, object boundary 2 (:func:`border_target`, a ring of ``width``
voxels along the background and along every other object). The plan records ``instances`` and
prediction ends with the ``split_instances`` postprocessing step, which grows each predicted
interior back over its boundary: the output is again one id per object.

One object class per instance dataset (the label named besides background); an ``ignore`` label
is not supported with instances.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from voxseg.errors import ConfigError, DatasetFormatError, InputImageError
from voxseg.io import Volume, read_image

__all__ = [
    "BACKGROUND",
    "INTERIOR",
    "BOUNDARY",
    "border_target",
    "target_labels",
    "check_instance_labels",
    "read_label",
]

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2


def border_target(instances: Any, *, width: int = 1) -> Any:
    """Background / interior / boundary (0 / 1 / 2, uint8) from an instance label image.

    A voxel of instance ``i`` is boundary when a voxel within ``width`` (a ``2 width + 1`` cube,
    so diagonal neighbours count) is not ``i``: the background or another instance. Accepts an
    array or a :class:`~voxseg.io.Volume` (the result is of the same kind).
    """
    volume = instances if isinstance(instances, Volume) else None
    arr = volume.array if volume is not None else np.asarray(instances)
    if arr.ndim not in (2, 3):
        raise InputImageError(None, f"instances must be a 2D or 3D array, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ConfigError(f"border_target needs integer instance ids, got dtype {arr.dtype}")
    if not isinstance(width, int) or width < 1:
        raise ConfigError(f"width must be a positive integer, got {width!r}")
    size = 2 * width + 1
    foreground = arr > 0
    differs = ndimage.maximum_filter(arr, size=size, mode="nearest") != arr
    differs |= ndimage.minimum_filter(arr, size=size, mode="nearest") != arr
    out = foreground.astype(np.uint8)
    out[foreground & differs] = BOUNDARY
    return volume.with_array(out) if volume is not None else out


def check_instance_labels(labels: dict[str, int], where: Path | str) -> str:
    """The object class name of an instance dataset's ``labels``; DatasetFormatError if they do not fit."""
    if "ignore" in labels:
        raise DatasetFormatError(
            f'{where}: an instance dataset ("instances": true) cannot have an "ignore" label yet; '
            'remove it, or drop "instances" to train classes'
        )
    names = [k for k, v in labels.items() if v != 0]
    if labels.get("background") != 0 or len(labels) != 2 or labels.get(names[0] if names else "") != 1:
        raise DatasetFormatError(
            f"{where}: an instance dataset declares exactly two labels, "
            f'{{"background": 0, "<object>": 1}} (its label files hold one id per object), got {labels}'
        )
    return names[0]


def target_labels(labels: dict[str, int]) -> dict[str, int]:
    """The classes an instance dataset trains on: background, the object's interior, its boundary."""
    name = next(k for k, v in labels.items() if v == 1)
    return {"background": BACKGROUND, name: INTERIOR, f"{name}_boundary": BOUNDARY}


def instance_ids(volume: Volume, path: str | Path | None) -> np.ndarray:
    """The integer ids of an instance image; InputImageError naming ``path`` for fractions or negatives."""
    arr = np.asarray(volume.array)
    if arr.dtype.kind == "f":
        if not np.array_equal(arr, np.round(arr)):
            raise InputImageError(path, "instance image holds non-integer values", "store one integer id per object")
        arr = arr.astype(np.int64)
    if arr.size and int(arr.min()) < 0:
        raise InputImageError(path, "instance image holds negative values", "ids are 0 (background) and 1..N")
    return arr


def read_label(path: str | Path, *, instances: bool) -> Volume:
    """A label file as training sees it: as stored, or the border target of its instance ids."""
    label = read_image(path)
    return label.with_array(border_target(instance_ids(label, path))) if instances else label
