"""Merge a model's predictions with sparse manual annotation into a densely labelled dataset.

The middle step of sparse-annotation bootstrapping (``docs/sparse-annotation.md``): a 2D model
trained on the annotated slices predicts every volume; these predictions become the labels of
a new dataset, except where a human annotated (label other than the ignore label), which is
kept. A 3D model trained on the result sees dense labels that are continuous along z.
``pseudo_labels.json`` reports for each case how many voxels came from each source, and how
well the prediction agreed with the manual annotation where both exist (voxel agreement and
mean foreground Dice); ``min_dice`` leaves out cases whose prediction disagrees too much, as the
spinal-cord team kept only their best pseudo-labelled volumes.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.dataset.layout import CHANNEL_RE, Case, Dataset, DatasetSpec, DatasetWriter, read_dataset
from voxseg.dataset.slices import check_output_folder
from voxseg.errors import ConfigError, DatasetFormatError, InputImageError
from voxseg.io import Volume, atomic_path, image_suffix, is_image_file, read_image, write_image, write_json_atomic

__all__ = ["CaseSources", "PseudoLabelReport", "merge_pseudo_labels", "find_predictions", "PSEUDO_JSON"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
PSEUDO_JSON = "pseudo_labels.json"


@dataclass(frozen=True)
class CaseSources:
    """Where one case's label voxels came from.

    ``manual``: kept from the annotation; ``predicted``: from the prediction; ``agreement``:
    fraction of annotated voxels where the prediction equals the annotation; ``dice``: mean
    Dice over the foreground classes, on the annotated voxels (both None without annotation).
    """

    manual: int
    predicted: int
    agreement: float | None
    dice: float | None = None


@dataclass
class PseudoLabelReport:
    """Result of :func:`merge_pseudo_labels`: the new dataset folder and per-case sources."""

    root: Path
    cases: dict[str, CaseSources] = field(default_factory=dict)
    dropped: dict[str, CaseSources] = field(default_factory=dict)

    @property
    def manual(self) -> int:
        return sum(c.manual for c in self.cases.values())

    @property
    def predicted(self) -> int:
        return sum(c.predicted for c in self.cases.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "total": {"manual": self.manual, "predicted": self.predicted},
            "cases": {k: asdict(v) for k, v in self.cases.items()},
            "dropped": {k: asdict(v) for k, v in self.dropped.items()},
        }


def find_predictions(folder: str | Path, case_ids: list[str]) -> dict[str, Path]:
    """Map each case id to its prediction file ``folder/CASE<suffix>`` (any image suffix).

    ``CASE_0000<suffix>`` (named after the case's first channel file) is accepted as well.

    Raises
    ------
    DatasetFormatError
        The folder is missing, a case has no prediction, or two files claim one case.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetFormatError(f"{folder}: predictions folder not found")
    wanted = set(case_ids)
    found: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if not is_image_file(f):
            continue
        stem = f.name[: -len(image_suffix(f))]
        channel = CHANNEL_RE.match(stem)
        if stem not in wanted and channel is not None and channel["channel"] == "0000":
            stem = channel["case"]
        if stem in wanted:
            if stem in found:
                raise DatasetFormatError(f"{folder}: two predictions for case {stem} ({found[stem].name}, {f.name})")
            found[stem] = f
    missing = [c for c in case_ids if c not in found]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DatasetFormatError(
            f"{folder}: no prediction for case(s) {', '.join(missing[:3])}{more} "
            f"(expected files named like the cases, e.g. {missing[0]}.nii.gz: predict every image of imagesTr)"
        )
    return found


def _read_prediction(path: Path, reference: Volume, allowed: set[int]) -> np.ndarray:
    pred = read_image(path)
    if pred.shape != reference.shape or pred.geometry.differences(reference.geometry):
        diff = "; ".join(pred.geometry.differences(reference.geometry)) or f"shape {pred.shape} vs {reference.shape}"
        raise InputImageError(path, f"geometry differs from the case's image ({diff})", "predict this dataset's images")
    arr = pred.array
    if arr.dtype.kind == "f":
        if not np.array_equal(arr, np.round(arr)):
            raise InputImageError(path, "holds non-integer values", "give label predictions, not probabilities")
        arr = arr.astype(np.int64)
    bad = sorted(set(np.unique(arr).tolist()) - allowed)
    if bad:
        raise InputImageError(path, f"holds values {bad[:5]} that are not labels {sorted(allowed)}", "check the model")
    return arr


def annotated_dice(pred: np.ndarray, label: np.ndarray, classes: set[int]) -> float | None:
    """Mean Dice over the foreground ``classes`` present in ``pred`` or ``label`` (None if none)."""
    scores = []
    for c in sorted(classes - {0}):
        a, b = pred == c, label == c
        total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
        if total:
            scores.append(2.0 * np.count_nonzero(a & b) / total)
    return float(np.mean(scores)) if scores else None


def _merge_case(case: Case, pred_path: Path, spec: DatasetSpec, keep_annotated: bool) -> tuple[Volume, CaseSources]:
    ignore = spec.ignore_label
    allowed = {v for v in spec.label_values if v != ignore}
    reference = read_image(case.images[0])
    pred = _read_prediction(pred_path, reference, allowed)
    if case.label is None:
        merged = pred.astype(np.uint8 if max(allowed) < 256 else np.uint16)
        return reference.with_array(merged), CaseSources(0, int(pred.size), None)
    label = read_image(case.label)
    if not label.same_geometry(reference):
        raise DatasetFormatError(f"{case.label}: geometry differs from its image; run 'voxseg dataset verify'")
    annotated = label.array != ignore if ignore is not None else np.ones(label.shape, bool)
    n_annotated = int(np.count_nonzero(annotated))
    pred_a, label_a = pred[annotated], label.array[annotated]
    agree = int(np.count_nonzero(pred_a == label_a)) / n_annotated if n_annotated else None
    dice = annotated_dice(pred_a, label_a, allowed) if n_annotated else None
    merged = pred.astype(label.dtype)
    if keep_annotated:
        merged[annotated] = label_a
    manual = n_annotated if keep_annotated else 0
    sources = CaseSources(manual, int(merged.size) - manual, agree, dice)
    return label.with_array(merged), sources


def _copy_file(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _dense_spec(ds: Dataset, predictions: Path) -> DatasetSpec:
    labels = {k: v for k, v in ds.spec.labels.items() if k != "ignore"}
    extra = {"pseudo_labels": {"source": str(ds.root.resolve()), "predictions": str(predictions.resolve())}}
    return DatasetSpec(
        f"{ds.spec.name}_pseudo",
        dict(ds.spec.channel_names),
        labels,
        ds.spec.file_ending,
        description=f"{ds.spec.name} with pseudo-labels from {predictions.name} (annotated voxels kept)",
        extra=extra,
    )


def _copy_test_cases(ds: Dataset, writer: DatasetWriter) -> None:
    for case in ds.test:
        for k, path in enumerate(case.images):
            _copy_file(path, writer.image_path(case.case_id, k, test=True))
        if case.label is not None:
            _copy_file(case.label, writer.label_path(case.case_id, test=True))


def merge_pseudo_labels(
    data: str | Path,
    predictions: str | Path,
    out: str | Path,
    *,
    keep_annotated: bool = True,
    min_dice: float | None = None,
    progress: Progress | None = None,
) -> PseudoLabelReport:
    """Write a dataset whose labels are ``predictions`` with the annotated voxels kept.

    Parameters
    ----------
    data
        The sparsely annotated dataset (nnU-Net v2 layout); only read.
    predictions
        Folder of predicted label files named like the cases (``CASE.nii.gz``, any image
        suffix), on the same grid as the case images; only read.
    out
        New dataset folder (must not hold a dataset yet). Images are copied byte for byte;
        test cases (``imagesTs``/``labelsTs``) are copied unchanged.
    keep_annotated
        Keep every annotated voxel (label other than the ignore label) from the manual
        annotation; ``False`` uses the predictions alone.
    min_dice
        Leave out cases whose prediction reaches a lower mean foreground Dice on the annotated
        voxels (cases without annotation are kept); listed under ``dropped`` in the report.
    progress
        Called as ``progress(done, total)`` after each training case.

    Returns
    -------
    PseudoLabelReport
        Per case, the number of voxels from each source and the agreement with the annotation;
        also written to ``pseudo_labels.json``.

    Raises
    ------
    DatasetFormatError
        A missing prediction (checked before anything is written), or a dataset problem.
    InputImageError
        A prediction on another grid, or holding values that are not labels.
    ConfigError
        ``min_dice`` outside [0, 1], or every case left out by it.
    """
    src, pred_dir, out = Path(data), Path(predictions), Path(out)
    ds = read_dataset(src)
    check_output_folder(src, out, pred_dir)
    if min_dice is not None and not 0.0 <= min_dice <= 1.0:
        raise ConfigError(f"min_dice {min_dice}: must lie between 0 and 1")
    if not ds.training:
        raise DatasetFormatError(f"{src / 'imagesTr'}: no training cases")
    found = find_predictions(pred_dir, ds.case_ids)
    if ds.spec.ignore_label is None and keep_annotated:
        log.warning("%s: no ignore label: every labelled voxel is kept; predictions fill unlabelled cases only", src)
    writer = DatasetWriter(out, _dense_spec(ds, pred_dir))
    report = PseudoLabelReport(out)
    for i, case in enumerate(ds.training):
        label, sources = _merge_case(case, found[case.case_id], ds.spec, keep_annotated)
        if min_dice is not None and sources.dice is not None and sources.dice < min_dice:
            log.warning(
                "%s: prediction Dice %.3f on the annotation < %g; case left out", case.case_id, sources.dice, min_dice
            )
            report.dropped[case.case_id] = sources
        else:
            for k, path in enumerate(case.images):
                _copy_file(path, writer.image_path(case.case_id, k))
            write_image(label, writer.label_path(case.case_id))
            writer.num_training += 1
            report.cases[case.case_id] = sources
        if progress is not None:
            progress(i + 1, len(ds.training))
    if not report.cases:
        raise ConfigError(f"{pred_dir}: every case's prediction Dice is under {min_dice}; nothing written")
    _copy_test_cases(ds, writer)
    write_json_atomic(out / PSEUDO_JSON, report.to_json())
    writer.close()  # dataset.json last: its presence marks a complete dataset
    return report
