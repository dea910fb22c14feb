"""Object tables as napari layer ``features`` (one row per label, the id in column ``index``).

napari matches a Labels layer's feature rows to label values through the ``index`` column, so
hovering an object shows its statistics in the status bar. No Qt or napari import here.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.io import Volume, atomic_path
from voxseg.postprocessing import object_table, table_columns

__all__ = ["object_features", "feature_rows", "write_features_csv", "DISPLAY_COLUMNS"]


def object_features(
    labels: Volume, image: Volume | None = None, *, class_map: Volume | None = None
) -> dict[str, list[Any]]:
    """Per-object statistics of a label image as feature columns (``index`` = object id).

    Every label value is one object (run :func:`voxseg.postprocessing.instances` first to split a
    class map into connected objects; pass the class map as ``class_map`` to keep each object's
    class). Columns are those of :func:`voxseg.postprocessing.table_columns` plus ``index``.
    """
    rows = object_table(labels, image=image, class_map=class_map)
    columns = table_columns(labels.ndim)
    data: dict[str, list[Any]] = {"index": [r.id for r in rows]}
    for column in columns:
        data[column] = [_plain(r.as_dict()[column]) for r in rows]
    return data


def _plain(value: Any) -> Any:
    if value is None:
        return math.nan
    if isinstance(value, np.generic):
        return value.item()
    return value


def feature_rows(features: Any) -> list[dict[str, Any]]:
    """Rows (dicts) of a features table: a pandas DataFrame or a mapping of columns."""
    if hasattr(features, "to_dict"):
        return [dict(r) for r in features.to_dict(orient="records")]
    if isinstance(features, Mapping):
        columns = list(features)
        n = len(features[columns[0]]) if columns else 0
        return [{c: features[c][i] for c in columns} for i in range(n)]
    return []


def _columns(features: Any) -> list[str]:
    return [str(c) for c in (features.columns if hasattr(features, "columns") else list(features))]


def write_features_csv(features: Any, path: str | Path) -> Path:
    """Write a features table as CSV (without napari's ``index`` column) atomically; return the path."""
    path = Path(path)
    columns = [c for c in _columns(features) if c != "index"]
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in feature_rows(features):
            writer.writerow({k: _cell(row.get(k)) for k in columns})
    return path


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return value


#: Shown in the Objects table: (header, feature column(s)); a tuple of columns shows as "lo-hi".
DISPLAY_COLUMNS: dict[int, list[tuple[str, tuple[str, ...]]]] = {
    3: [
        ("id", ("id",)),
        ("voxels", ("voxels",)),
        ("volume mm³", ("volume_mm3",)),
        ("centroid z", ("centroid_z",)),
        ("centroid y", ("centroid_y",)),
        ("centroid x", ("centroid_x",)),
        ("bbox z", ("bbox_z_min", "bbox_z_max")),
        ("bbox y", ("bbox_y_min", "bbox_y_max")),
        ("bbox x", ("bbox_x_min", "bbox_x_max")),
        ("mean intensity", ("mean_intensity",)),
    ],
    2: [
        ("id", ("id",)),
        ("pixels", ("voxels",)),
        ("area mm²", ("area_mm2",)),
        ("centroid y", ("centroid_y",)),
        ("centroid x", ("centroid_x",)),
        ("bbox y", ("bbox_y_min", "bbox_y_max")),
        ("bbox x", ("bbox_x_min", "bbox_x_max")),
        ("mean intensity", ("mean_intensity",)),
    ],
}
