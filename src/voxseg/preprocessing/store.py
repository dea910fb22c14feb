"""The preprocessed-case format: ``CASE.npy``, ``CASE_seg.npy`` and ``CASE.json`` (``case.json``).

::

    CASE.npy        float32 (C, *spatial), C-contiguous: the normalized, resampled channels
    CASE_seg.npy    uint8 / int16 (*spatial): the resampled label (absent without a label)
    CASE.json       schema_version, case_id, the arrays' shapes and types, properties (the way
                    back to the original geometry), settings (what produced the case), per-class
                    voxel counts and a seeded sample of voxel indices per class

Each file is written atomically, the ``.json`` last (and an old ``.json`` is removed first), so
a case whose ``.json`` exists is complete: an interrupted run never leaves a case that looks done.
Arrays are read back memory-mapped, so a training loader touches only the patches it samples.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from voxseg.errors import InputImageError
from voxseg.io import atomic_path, write_text_atomic
from voxseg.io.safe_json import read_json

from .pipeline import CaseProperties, PreprocessedCase

__all__ = [
    "SCHEMA_VERSION",
    "MAX_LOCATIONS",
    "case_paths",
    "write_preprocessed",
    "read_preprocessed",
    "read_case_record",
    "list_preprocessed",
    "sample_class_locations",
]

SCHEMA_VERSION = 1
MAX_LOCATIONS = 2000  # sampled voxel indices stored per class for foreground oversampling


def case_paths(prefix: str | Path) -> tuple[Path, Path, Path]:
    """``(CASE.npy, CASE_seg.npy, CASE.json)`` for a prefix ``OUT_DIR/CASE``."""
    prefix = Path(prefix)
    return (
        prefix.with_name(prefix.name + ".npy"),
        prefix.with_name(prefix.name + "_seg.npy"),
        prefix.with_name(prefix.name + ".json"),
    )


def case_seed(case_id: str, seed: int = 0) -> int:
    """A stable per-case seed (the same on every machine and Python run)."""
    return (zlib.crc32(case_id.encode("utf-8")) ^ (seed * 0x9E3779B1)) & 0xFFFFFFFF


def sample_class_locations(
    label: np.ndarray, *, max_per_class: int = MAX_LOCATIONS, seed: int = 0, ignore_label: int | None = None
) -> tuple[dict[int, np.ndarray], dict[int, int]]:
    """Up to ``max_per_class`` random voxel indices of every label value except 0 and the ignore label.

    Returns
    -------
    locations, counts
        value -> ``(N, ndim)`` int64 indices (sorted, seeded), and value -> number of voxels.
    """
    rng = np.random.default_rng(seed)
    locations: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for value, box in enumerate(ndimage.find_objects(label), start=1):
        if box is None or value == ignore_label:
            continue
        where = np.nonzero(label[box] == value)
        n = where[0].size
        counts[value] = int(n)
        pick = np.sort(rng.choice(n, size=min(n, max_per_class), replace=False))
        locations[value] = np.stack([w[pick] + sl.start for w, sl in zip(where, box, strict=True)], axis=1).astype(
            np.int64
        )
    return locations, counts


def _to_text(value: Any, level: int = 0) -> str:
    """JSON with objects indented and every list of numbers (voxel lists included) on one line."""
    pad = "  " * (level + 1)
    if isinstance(value, dict) and value:
        items = [f"{pad}{json.dumps(str(k))}: {_to_text(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * level + "}"
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        return "[\n" + ",\n".join(pad + _to_text(v, level + 1) for v in value) + "\n" + "  " * level + "]"
    return json.dumps(value, separators=(",", ":"))


def write_preprocessed(
    prefix: str | Path,
    case: PreprocessedCase,
    *,
    settings: Mapping[str, Any] | None = None,
    ignore_label: int | None = None,
    max_locations: int = MAX_LOCATIONS,
    seed: int = 0,
) -> Path:
    """Write a case as ``PREFIX.npy``, ``PREFIX_seg.npy`` and ``PREFIX.json`` (last); return the .json path.

    Parameters
    ----------
    prefix
        ``OUT_DIR/CASE_ID``; folders are created.
    case
        The preprocessed case.
    settings
        JSON-ready record of what produced the case (compared when resuming).
    ignore_label
        Label value left out of the class locations.
    max_locations, seed
        Class-location sample size per class and seed (combined with the case id).
    """
    data_path, seg_path, json_path = case_paths(prefix)
    case_id = Path(prefix).name
    json_path.unlink(missing_ok=True)  # from here on the case is "not done" until the new .json lands
    data = np.ascontiguousarray(case.data, dtype=np.float32)
    with atomic_path(data_path) as tmp, open(tmp, "wb") as fh:  # a file object: np.save adds no .npy
        np.save(fh, data, allow_pickle=False)
    locations: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    label_record = None
    if case.label is not None:
        label = np.ascontiguousarray(case.label)
        with atomic_path(seg_path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, label, allow_pickle=False)
        label_record = {"file": seg_path.name, "shape": list(label.shape), "dtype": label.dtype.name}
        cseed = case_seed(case_id, seed)
        locations, counts = sample_class_locations(
            label, max_per_class=max_locations, seed=cseed, ignore_label=ignore_label
        )
    else:
        seg_path.unlink(missing_ok=True)
    record = {
        "schema_version": SCHEMA_VERSION,
        "case_id": case_id,
        "data": {"file": data_path.name, "shape": list(data.shape), "dtype": "float32"},
        "label": label_record,
        "properties": case.properties.to_json(),
        "settings": dict(settings or {}),
        "ignore_label": ignore_label,
        "class_voxels": {str(k): v for k, v in counts.items()},
        "location_seed": case_seed(case_id, seed) if case.label is not None else None,
        "class_locations": {str(k): v.tolist() for k, v in locations.items()},
    }
    return write_text_atomic(json_path, _to_text(record) + "\n")


def read_case_record(prefix: str | Path) -> dict[str, Any]:
    """The parsed ``PREFIX.json``.

    Raises
    ------
    InputImageError
        Missing, unreadable or of another schema version.
    """
    json_path = case_paths(prefix)[2]
    if not json_path.is_file():
        raise InputImageError(json_path, "preprocessed case not found", "run the preprocessing (voxseg plan) again")
    try:
        record = read_json(json_path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputImageError(json_path, f"unreadable case record ({exc})", "preprocess the case again") from None
    if not isinstance(record, dict) or record.get("schema_version") != SCHEMA_VERSION:
        found = record.get("schema_version") if isinstance(record, dict) else None
        raise InputImageError(
            json_path,
            f"case record has schema version {found}, expected {SCHEMA_VERSION}",
            "preprocess the dataset again with this voxseg version",
        )
    return record


def _load(path: Path, expected: Mapping[str, Any], mmap: bool) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputImageError(path, f"cannot read preprocessed array ({exc})", "preprocess the case again") from None
    if list(array.shape) != list(expected["shape"]) or array.dtype.name != expected["dtype"]:
        raise InputImageError(
            path,
            f"array is {array.dtype}{array.shape}, its case record says {expected['dtype']}{tuple(expected['shape'])}",
            "preprocess the case again",
        )
    return array


def read_preprocessed(prefix: str | Path, *, mmap: bool = True) -> PreprocessedCase:
    """Read a case written by :func:`write_preprocessed`; arrays are memory-mapped (read-only) by default."""
    record = read_case_record(prefix)
    data_path, seg_path, _ = case_paths(prefix)
    data = _load(data_path, record["data"], mmap)
    label = _load(seg_path, record["label"], mmap) if record.get("label") else None
    locations = {
        int(k): np.asarray(v, dtype=np.int64).reshape(-1, data.ndim - 1)
        for k, v in record.get("class_locations", {}).items()
    }
    return PreprocessedCase(data, label, CaseProperties.from_json(record["properties"]), locations)


def list_preprocessed(out_dir: str | Path) -> list[str]:
    """Case ids of the complete cases (with a ``.json``) in ``out_dir``, sorted."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    ids = []
    for path in sorted(out_dir.glob("*.json")):
        case_id = path.name[: -len(".json")]
        if not path.name.startswith(".") and case_paths(out_dir / case_id)[0].is_file():
            ids.append(case_id)
    return ids
