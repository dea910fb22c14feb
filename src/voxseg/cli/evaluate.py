"""``voxseg evaluate``: score a folder of predictions against references."""

from __future__ import annotations

from pathlib import Path

import typer

from voxseg.cli._common import console
from voxseg.io.safe_json import read_json


def evaluate(
    pred_dir: Path = typer.Argument(..., help="Folder of predicted label files (CASE.nii.gz, ...)."),
    gt_dir: Path = typer.Argument(..., help="Folder of reference label files with the same names."),
    output: Path = typer.Option(None, "--output", "-o", help="Report folder (default: PRED_DIR)."),
    tolerance: float = typer.Option(None, "--tolerance", help="Also compute surface Dice at this tolerance (mm)."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Score only cases that have a prediction."),
    workers: int = typer.Option(2, "--workers", "-j", help="Cases scored in parallel."),
    instances: bool = typer.Option(
        None,
        "--instances/--no-instances",
        help="Files hold one id per object: also match objects (F1 at IoU 0.5). "
        'Default: the "instances" flag of a dataset.json beside the references.',
    ),
) -> None:
    """Dice and HD95 (and surface Dice) per class and case; writes evaluation.json and CSVs."""
    from voxseg.evaluation import evaluate_folders

    out = output if output is not None else pred_dir
    path = evaluate_folders(
        pred_dir,
        gt_dir,
        out,
        tolerance_mm=tolerance,
        allow_missing=allow_missing,
        num_workers=workers,
        instances=instances,
    )
    report = read_json(path)
    for label, metrics in report["summary"]["per_class"].items():
        parts = [_part(m, v) for m, v in metrics.items() if isinstance(v, dict)]
        console.print(f"class {label}: " + ", ".join(parts), highlight=False)
    found = report.get("instances")
    if found:
        iou = "n/a" if found["mean_matched_iou"] is None else f"{found['mean_matched_iou']:.3f}"
        console.print(
            f"objects: F1 {found['f1']:.3f} at IoU {found['iou_threshold']} (precision {found['precision']:.3f}, "
            f"recall {found['recall']:.3f}; {found['tp']} matched, {found['fp']} extra, {found['fn']} missed), "
            f"mean matched IoU {iou}",
            highlight=False,
        )
    console.print(f"wrote {path} ({len(report['cases'])} cases)")


def _part(metric: str, stats: dict) -> str:
    """``hd95 4.2000 mm (mean of 1 case; 2 undefined: empty prediction or reference)``."""
    from voxseg.evaluation.folders import stats_note

    unit = " mm" if metric == "hd95" else ""
    value = "undefined" if stats.get("mean") is None else f"{stats['mean']:.4f}{unit}"
    note = stats_note(stats)
    return f"{metric} {value} ({note})" if note else f"{metric} {value}"
