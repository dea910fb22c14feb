"""Evaluate a folder of predictions against a folder of references (``voxseg evaluate``).

Files are paired by case id: the file name without its image suffix (nnU-Net naming,
``CASE.nii.gz``; suffixes may differ between the folders). Every prediction needs a reference
and every reference a prediction (``allow_missing=True`` evaluates only the predicted cases).
Writes ``evaluation.json`` (everything), ``evaluation_cases.csv`` (one row per case and class) and
``evaluation_summary.csv`` (mean/std per class), atomically.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.errors import ConfigError, DatasetFormatError, InputImageError, VoxsegError
from voxseg.evaluation.detection import INSTANCE_IOU
from voxseg.evaluation.overlap import dice, pair_arrays, resolve_labels
from voxseg.evaluation.surface import hd95, surface_dice
from voxseg.io import atomic_path, read_image, write_json_atomic
from voxseg.io.atomic import full_suffix
from voxseg.io.formats import is_image_file
from voxseg.io.guard import check_outputs
from voxseg.io.safe_json import read_json
from voxseg.io.volume import Volume

__all__ = ["evaluate_case", "evaluate_folders", "summarize", "SCHEMA_VERSION"]

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1
_EMPTY = {"dice": 1.0, "hd95": 0.0, "surface_dice": 1.0, "pred_voxels": 0, "ref_voxels": 0}


def evaluate_case(
    pred: np.ndarray | Volume,
    ref: np.ndarray | Volume,
    *,
    labels: Iterable[int] | Mapping[str, int] | None = None,
    ignore_label: int | None = None,
    spacing: Sequence[float] | None = None,
    tolerance_mm: float | None = None,
) -> dict[int, dict[str, float]]:
    """Metrics of one case per class: ``{label: {"dice", "hd95", ["surface_dice"], "pred_voxels", "ref_voxels"}}``.

    HD95 and surface Dice do not use ``ignore_label`` (a reference voxel marked ignore is simply
    not of the class); surface Dice is computed only with ``tolerance_mm``.
    """
    p, r, volume = pair_arrays(pred, ref)
    labels, ignore_label = resolve_labels(labels, (p, r), ignore_label)
    spacing = spacing if spacing is not None else (volume.spacing if volume is not None else None)
    scores = {
        "dice": dice(p, r, labels=labels, ignore_label=ignore_label),
        "hd95": hd95(p, r, spacing=spacing, labels=labels),
    }
    if tolerance_mm is not None:
        scores["surface_dice"] = surface_dice(p, r, tolerance_mm=tolerance_mm, spacing=spacing, labels=labels)
    out = {}
    for label in labels:
        row: dict[str, float] = {name: values[label] for name, values in scores.items()}
        row["pred_voxels"] = int(np.count_nonzero(p == label))
        row["ref_voxels"] = int(np.count_nonzero(r == label))
        out[label] = row
    return out


def _case_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputImageError(folder, f"{what} folder not found", "check the path")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not is_image_file(path):
            continue
        case = path.name[: -len(full_suffix(path))]
        if case in files:
            raise InputImageError(path, f"case {case!r} has two files in the {what} folder ({files[case].name})")
        files[case] = path
    if not files:
        raise InputImageError(folder, f"no image files in the {what} folder", "expected CASE.nii.gz files")
    return files


def _listing(names: Iterable[str], limit: int = 5) -> str:
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _pair(pred_dir: Path, gt_dir: Path, allow_missing: bool) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    preds, refs = _case_files(pred_dir, "prediction"), _case_files(gt_dir, "reference")
    extra = set(preds) - set(refs)
    if extra:
        raise VoxsegError(
            f"{pred_dir}: {len(extra)} prediction(s) without a reference in {gt_dir}: {_listing(extra)} "
            "(files are paired by name: CASE.nii.gz in both folders)"
        )
    missing = sorted(set(refs) - set(preds))
    if missing and not allow_missing:
        raise VoxsegError(
            f"{pred_dir}: {len(missing)} reference case(s) have no prediction: {_listing(missing)} "
            "(predict them, or pass allow_missing=True to evaluate only the predicted cases)"
        )
    return [(c, preds[c], refs[c]) for c in sorted(preds)], missing


def _dataset_spec(gt_dir: Path):
    """The DatasetSpec of a ``dataset.json`` in ``gt_dir`` or its parent, or None."""
    for candidate in (gt_dir / "dataset.json", gt_dir.parent / "dataset.json"):
        if candidate.is_file():
            from voxseg.dataset import DatasetSpec

            try:
                spec = DatasetSpec.from_json(read_json(candidate), candidate)
            except ValueError as exc:
                raise DatasetFormatError(f"{candidate}: not valid JSON ({exc})") from None
            log.info("labels from %s", candidate)
            return spec
    return None


def _read_pair(pred_path: Path, gt_path: Path) -> tuple[Volume, Volume]:
    pred, ref = read_image(pred_path), read_image(gt_path)
    if pred.shape != ref.shape:
        raise InputImageError(
            pred_path,
            f"shape {pred.shape} differs from the reference {gt_path.name} {ref.shape}",
            "predictions must be on the reference image grid",
        )
    differences = pred.geometry.differences(ref.geometry)
    if differences:
        raise InputImageError(
            pred_path,
            f"geometry differs from the reference {gt_path.name}: {'; '.join(differences)}",
            "predictions must be on the reference image grid",
        )
    return pred, ref


def _evaluate_pair(case, pred_path, gt_path, labels, ignore_label, tolerance_mm, instances=False):
    pred, ref = _read_pair(pred_path, gt_path)
    log.info("evaluating %s", case)
    if not instances:
        return evaluate_case(pred, ref, labels=labels, ignore_label=ignore_label, tolerance_mm=tolerance_mm), None
    from voxseg.dataset.instances import instance_ids
    from voxseg.evaluation.detection import detection_metrics

    p, r = instance_ids(pred, pred_path), instance_ids(ref, gt_path)
    found = detection_metrics(p, r, iou_threshold=INSTANCE_IOU)
    fg = evaluate_case(
        pred.with_array((p > 0).astype(np.uint8)), ref.with_array((r > 0).astype(np.uint8)), labels=[1],
        tolerance_mm=tolerance_mm,
    )  # fmt: skip
    return fg, found


def instance_summary(results: Iterable[Any]) -> dict[str, Any]:
    """Object counts over all cases (pooled, as in StarDist's and Cellpose's F1) and the mean matched IoU."""
    results = [r for r in results if r is not None]
    tp, fp, fn = (sum(getattr(r, k) for r in results) for k in ("tp", "fp", "fn"))
    ious = [float(p[2]) for r in results for p in r.pairs]
    return {
        "iou_threshold": INSTANCE_IOU,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "mean_matched_iou": float(np.mean(ious)) if ious else None,
    }


def _stats(values: list[float]) -> dict[str, Any]:
    finite = [v for v in values if math.isfinite(v)]
    stats = {
        "mean": float(np.mean(finite)) if finite else None,
        "std": float(np.std(finite)) if finite else None,
        "n": len(finite),
        "n_infinite": len(values) - len(finite),
    }
    return {**stats, "note": stats_note(stats)}


def stats_note(stats: Mapping[str, Any]) -> str:
    """``"mean of 1 case; 2 undefined: empty prediction or reference"`` ("" when every case counts)."""
    n, bad = int(stats.get("n", 0)), int(stats.get("n_infinite", 0))
    if not bad:
        return ""
    return f"mean of {n} case{'s' if n != 1 else ''}; {bad} undefined: empty prediction or reference"


def summarize(cases: Mapping[str, Mapping[int, Mapping[str, float]]], labels: Sequence[int]) -> dict[str, Any]:
    """Mean/std (population) per class and metric over cases, plus the mean over classes.

    Non-finite values (HD95 = inf where one mask is empty) are left out of mean/std and counted
    in ``n_infinite``.
    """
    metrics = [
        m for m in ("dice", "hd95", "surface_dice") if any(m in c.get(lb, {}) for c in cases.values() for lb in labels)
    ]
    per_class = {str(lb): {m: _stats([c[lb][m] for c in cases.values() if lb in c]) for m in metrics} for lb in labels}
    overall = {}
    for m in metrics:
        means = [per_class[str(lb)][m]["mean"] for lb in labels if per_class[str(lb)][m]["mean"] is not None]
        overall[m] = float(np.mean(means)) if means else None
    return {"per_class": per_class, "foreground_mean": overall}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _write_csv(path: Path, columns: list[str], rows: Iterable[Mapping[str, Any]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})


def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    out_dir: str | Path,
    *,
    labels: Iterable[int] | Mapping[str, int] | None = None,
    ignore_label: int | None = None,
    tolerance_mm: float | None = None,
    allow_missing: bool = False,
    num_workers: int = 2,
    instances: bool | None = None,
) -> Path:
    """Score every prediction in ``pred_dir`` against its reference in ``gt_dir``; return the JSON path.

    Parameters
    ----------
    labels
        Label values to score, or a dataset.json labels mapping. Default: the labels of a
        ``dataset.json`` in ``gt_dir`` or its parent (nnU-Net's ``labelsTr/..``), else every
        nonzero value found in the files.
    ignore_label
        Reference value excluded from Dice (default: the dataset.json ``"ignore"`` label).
    tolerance_mm
        Also compute surface Dice at this tolerance.
    allow_missing
        Evaluate only the cases that have a prediction; the others are listed as ``missing``.
    num_workers
        Cases evaluated in parallel (threads).
    instances
        Files hold one id per object: add object matching (F1, precision, recall at IoU >= 0.5,
        pooled over cases, and the mean IoU of matched objects) to Dice of all objects together.
        Default: the ``"instances"`` flag of the dataset.json found beside the references.

    Raises
    ------
    VoxsegError
        Unpaired files, a prediction whose shape or geometry differs from its reference, unreadable files.
    """
    pred_dir, gt_dir, out_dir = Path(pred_dir), Path(gt_dir), Path(out_dir)
    if num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
    pairs, missing = _pair(pred_dir, gt_dir, allow_missing)
    check_outputs(  # before anything is written: no report file may be one of the images read
        [out_dir / n for n in ("evaluation.json", "evaluation_cases.csv", "evaluation_summary.csv")],
        inputs=[f for _, pred, gt in pairs for f in (pred, gt)],
    )
    spec = _dataset_spec(gt_dir)
    if instances is None:
        instances = bool(spec is not None and spec.instances)
    if instances:
        labels, ignore_label = [1], None  # Dice of all objects together, plus object matching below
    elif labels is None and spec is not None:
        labels = spec.labels
    fixed, ignore_label = resolve_labels(labels, (), ignore_label) if labels is not None else (None, ignore_label)
    args = [(c, p, g, fixed, ignore_label, tolerance_mm, instances) for c, p, g in pairs]
    if num_workers <= 1:
        both = [_evaluate_pair(*a) for a in args]
    else:
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            both = list(pool.map(lambda a: _evaluate_pair(*a), args))
    results = [b[0] for b in both]
    all_labels = fixed if fixed is not None else tuple(sorted({lb for res in results for lb in res}))
    empty = {k: v for k, v in _EMPTY.items() if tolerance_mm is not None or k != "surface_dice"}
    cases = {
        c: {lb: res.get(lb, dict(empty)) for lb in all_labels} for (c, _, _), res in zip(pairs, results, strict=True)
    }
    report = {
        "schema_version": SCHEMA_VERSION,
        "pred_dir": str(pred_dir),
        "gt_dir": str(gt_dir),
        "labels": list(all_labels),
        "ignore_label": ignore_label,
        "tolerance_mm": tolerance_mm,
        "missing": missing,
        "summary": summarize(cases, all_labels),
        "cases": [{"case": c, "classes": metrics} for c, metrics in cases.items()],
    }
    if instances:
        report["instances"] = instance_summary(b[1] for b in both)
        for entry, (_, found) in zip(report["cases"], both, strict=True):
            entry["instances"] = {k: getattr(found, k) for k in ("tp", "fp", "fn", "precision", "recall", "f1")}
    json_path = write_json_atomic(out_dir / "evaluation.json", _json_safe(report))
    metric_names = [m for m in ("dice", "hd95", "surface_dice") if m in empty]
    rows = ({"case": c, "class": lb, **m} for c, per in cases.items() for lb, m in per.items())
    _write_csv(out_dir / "evaluation_cases.csv", ["case", "class", *metric_names, "pred_voxels", "ref_voxels"], rows)
    summary_rows = [
        {"class": lb, "metric": m, **report["summary"]["per_class"][str(lb)][m]}
        for lb in all_labels
        for m in metric_names
    ]
    _write_csv(
        out_dir / "evaluation_summary.csv", ["class", "metric", "mean", "std", "n", "n_infinite", "note"], summary_rows
    )
    log.info("evaluated %d case(s); report in %s", len(cases), json_path)
    return json_path
