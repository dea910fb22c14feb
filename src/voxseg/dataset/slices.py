"""Extract the annotated 2D slices of a sparsely annotated 3D dataset into a 2D dataset.

The first step of sparse-annotation bootstrapping (see ``docs/sparse-annotation.md``): a few
slices per volume were labelled; the rest of each label holds the ignore label. Every
*annotated* slice (any voxel other than the ignore label; without an ignore label, any
foreground voxel) becomes a 2D case ``CASE_zNNN`` (``y``/``x`` for the other axes) with all
image channels, written as 2D images that keep the in-plane spacing, the slice's position
and the in-plane direction. ``slices.json`` next to ``dataset.json`` maps every 2D case back
to its source case and slice index, with the source geometry, so 2D predictions can be traced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.dataset.layout import Dataset, DatasetSpec, DatasetWriter, read_dataset
from voxseg.errors import ConfigError, DatasetFormatError
from voxseg.io import WRITE_SUFFIXES, Volume, read_image, write_json_atomic
from voxseg.io.safe_json import read_json

__all__ = ["extract_slices", "slice_volume", "annotated_slices", "slice_groups", "check_output_folder", "SLICES_JSON"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
SLICES_JSON = "slices.json"
_AXIS_LETTER = "zyx"


def check_output_folder(src: Path, out: Path, *others: Path) -> None:
    """Refuse an output folder that is an input or already holds a dataset (inputs stay untouched)."""
    from voxseg.io.guard import same_file

    out_r = out.resolve()
    for p in (src, *others):
        p_r = p.resolve()
        if same_file(out, p) or p_r in out_r.parents or any(same_file(a, p) for a in out_r.parents if a.exists()):
            raise ConfigError(f"{out}: the output folder must lie outside the input {p} (inputs are never modified)")
    if (out / "dataset.json").exists():
        raise ConfigError(f"{out}: already holds a dataset (choose another output folder or delete it)")


def slice_volume(volume: Volume, axis: int, index: int) -> Volume:
    """The 2D slice ``index`` along ``axis`` of a 3D Volume, with its in-plane geometry.

    The slice keeps the spacing of the two other axes. Its origin is the world position of its
    first voxel, dropping the world coordinate that the sliced axis runs along (the row of the
    direction matrix with the largest entry in the sliced axis's column); its direction is the
    remaining 2x2 block, made orthonormal (exact for axis-aligned volumes, the usual case).
    """
    if volume.ndim != 3:
        raise ValueError(f"slice_volume needs a 3D Volume, got {volume.ndim}D")
    d = volume.direction_matrix()
    world_axis = int(np.argmax(np.abs(d[:, axis])))
    keep = [a for a in range(3) if a != axis]
    keep_world = [r for r in range(3) if r != world_axis]
    first = [index if a == axis else 0 for a in range(3)]
    origin = volume.index_to_world(first)[keep_world]
    block = d[np.ix_(keep_world, keep)]
    u, s, vt = np.linalg.svd(block)
    direction = u @ vt if s.min() > 1e-6 else np.eye(2)
    array = np.take(volume.array, index, axis=axis)
    return Volume(np.ascontiguousarray(array), tuple(volume.spacing[a] for a in keep), origin, direction)


def annotated_slices(label: np.ndarray, axis: int, ignore_label: int | None) -> list[int]:
    """Indices along ``axis`` of the slices holding annotation.

    A slice is annotated if any voxel differs from ``ignore_label``; without an ignore label,
    if any voxel is foreground (non-zero).
    """
    other = tuple(a for a in range(label.ndim) if a != axis)
    marked = label != ignore_label if ignore_label is not None else label != 0
    return [int(i) for i in np.flatnonzero(marked.any(axis=other))]


def slice_groups(data: str | Path) -> dict[str, str]:
    """Slice case id -> source case id for a dataset written by :func:`extract_slices`.

    Cross-validation splits made with ``groups=slice_groups(data)`` keep the slices of one volume
    in one fold (see :func:`voxseg.dataset.make_splits`). Empty for other datasets.
    """
    path = Path(data) / SLICES_JSON
    if not path.is_file():
        return {}
    try:
        slices = read_json(path)["slices"]
        return {str(k): str(v["case"]) for k, v in slices.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DatasetFormatError(f"{path}: not a valid slices record ({exc})") from None


def _resolve_ignore(spec: DatasetSpec, ignore_label: int | None, where: Path) -> dict[str, int]:
    """The 2D dataset's labels: the source's, with the ignore label declared."""
    labels = dict(spec.labels)
    if ignore_label is None:
        return labels
    declared = spec.ignore_label
    if declared is not None and declared != ignore_label:
        raise ConfigError(
            f"{where}: ignore label {ignore_label} differs from dataset.json's 'ignore': {declared} "
            "(leave it out to use dataset.json's)"
        )
    if declared is None:
        if ignore_label in labels.values() or ignore_label <= max(labels.values()):
            raise ConfigError(
                f"{where}: ignore label {ignore_label} must be a new value above the labels {sorted(labels.values())}"
            )
        labels["ignore"] = int(ignore_label)
    return labels


def _geometry_json(volume: Volume) -> dict[str, Any]:
    return {
        "shape": list(volume.shape),
        "spacing": list(volume.spacing),
        "origin": list(volume.origin),
        "direction": [list(r) for r in volume.direction],
    }


def _case_slices(
    ds: Dataset, case_index: int, axis: int, ignore: int | None, only_annotated: bool
) -> tuple[list[Volume], Volume, list[int]] | None:
    case = ds.training[case_index]
    if case.label is None:
        log.warning("%s: case %s has no label file; skipped", ds.root, case.case_id)
        return None
    label = read_image(case.label)
    if label.ndim != 3:
        raise DatasetFormatError(f"{case.label}: label is {label.ndim}D; extract_slices needs a 3D dataset")
    images = [read_image(p) for p in case.images]
    for path, img in zip(case.images, images, strict=True):
        if not img.same_geometry(label):
            raise DatasetFormatError(
                f"{path}: geometry differs from its label {case.label.name} "
                f"({'; '.join(img.geometry.differences(label.geometry)) or 'shape'}); run 'voxseg dataset verify'"
            )
    indices = annotated_slices(label.array, axis, ignore) if only_annotated else list(range(label.shape[axis]))
    return images, label, indices


def extract_slices(
    data: str | Path,
    out: str | Path,
    *,
    axis: int = 0,
    only_annotated: bool = True,
    ignore_label: int | None = None,
    file_ending: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write every annotated slice of a 3D dataset as a 2D dataset in ``out``; return ``out``.

    Parameters
    ----------
    data
        A 3D dataset folder (nnU-Net v2 layout); only read.
    out
        New dataset folder (must not hold a dataset yet).
    axis
        Array axis to slice along (0 = z, the axial slices of a ``(z, y, x)`` volume).
    only_annotated
        Keep only slices with annotation (see :func:`annotated_slices`); ``False`` keeps all.
    ignore_label
        Value of unannotated voxels; default dataset.json's ``"ignore"`` label (if any).
    file_ending
        Suffix of the 2D files; default the source's (every writable format round-trips 2D
        geometry).
    progress
        Called as ``progress(done, total)`` after each source case.

    Raises
    ------
    ConfigError
        Bad axis, ignore label or output folder, or no annotated slice at all.
    DatasetFormatError
        A source case that is not 3D or whose images and label disagree in geometry.
    """
    src, out = Path(data), Path(out)
    ds = read_dataset(src)
    check_output_folder(src, out)
    if axis not in (0, 1, 2):
        raise ConfigError(f"--axis {axis}: must be 0, 1 or 2 (array order z, y, x)")
    labels = _resolve_ignore(ds.spec, ignore_label, src)
    ignore = labels.get("ignore")
    ending = file_ending or ds.spec.file_ending
    if ending not in WRITE_SUFFIXES:
        ending = ".nii.gz"
    spec = DatasetSpec(
        f"{ds.spec.name}_slices{_AXIS_LETTER[axis]}",
        dict(ds.spec.channel_names),
        labels,
        ending,
        description=f"annotated 2D slices along axis {axis} of {ds.spec.name}",
        extra={"extracted_from": {"source": str(src.resolve()), "axis": axis, "only_annotated": only_annotated}},
    )
    record: dict[str, Any] = {"source": str(src.resolve()), "axis": axis, "ignore_label": ignore}
    record.update(slices={}, cases={})
    written = 0
    writer = DatasetWriter(out, spec)
    for i, case in enumerate(ds.training):
        got = _case_slices(ds, i, axis, ignore, only_annotated)
        if got is not None:
            images, label, indices = got
            record["cases"][case.case_id] = _geometry_json(label)
            digits = max(3, len(str(label.shape[axis] - 1)))
            for k in indices:
                slice_id = f"{case.case_id}_{_AXIS_LETTER[axis]}{k:0{digits}d}"
                writer.add_case(slice_id, [slice_volume(v, axis, k) for v in images], slice_volume(label, axis, k))
                record["slices"][slice_id] = {"case": case.case_id, "axis": axis, "index": k}
                written += 1
        if progress is not None:
            progress(i + 1, len(ds.training))
    if written == 0:
        what = "differs from the ignore label" if ignore is not None else "is foreground"
        raise ConfigError(f"{src}: no slice along axis {axis} has a voxel that {what}; nothing to extract")
    write_json_atomic(out / SLICES_JSON, record)
    writer.close()  # dataset.json last: its presence marks a complete dataset
    log.info("wrote %d slices of %d cases to %s", written, len(record["cases"]), out)
    return out
