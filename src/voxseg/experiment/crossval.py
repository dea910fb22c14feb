"""Cross-validation of a work folder (``voxseg crossval WORK``) and the postprocessing chosen from it.

Every case is predicted by the one fold that did not train on it (``runs/<cfg>/fold_<k>/validation/``),
so the union of the folds' validation predictions is an honest estimate on the whole dataset.
:func:`crossval` scores them against the raw labels (Dice and HD95 per class and case; mean, std
and per fold), chooses per-class postprocessing with
:func:`voxseg.postprocessing.choose_postprocessing` (none / keep largest / fill holes / remove
objects under N voxels) and scores the postprocessed predictions too. It writes
``crossval/<cfg>/summary.json``, ``metrics.csv``, ``postprocessing.json`` (the spec, used by
``Predictor.from_work``) and ``postprocessing_report.json`` (every candidate's mean Dice).

For an instance plan (background / interior / boundary, split into objects at prediction) it also
chooses the smallest object the split keeps, by the object F1 over the validation cases against
their instance ids (:func:`voxseg.postprocessing.choose_instances.choose_split_min_size`); the spec
then ends with that ``split_instances`` step and the summary's ``instances`` holds every size tried.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.dataset import read_dataset
from voxseg.dataset.instances import BOUNDARY, INTERIOR, instance_ids
from voxseg.dataset.splits import read_splits
from voxseg.errors import ConfigError, VoxsegError
from voxseg.evaluation import evaluate_case, summarize
from voxseg.evaluation.detection import INSTANCE_IOU
from voxseg.experiment.validation import json_safe
from voxseg.io import atomic_path, read_image, write_json_atomic
from voxseg.io.safe_json import read_json
from voxseg.planning.work import work_plan
from voxseg.postprocessing import PostprocessingSpec, Step, apply_postprocessing, choose_postprocessing
from voxseg.postprocessing.choose_instances import choose_split_min_size
from voxseg.workdir.layout import WorkDir

__all__ = ["crossval"]

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1


def _scored_folds(wd, folds, *, chosen: Sequence[int] | None) -> list[int]:
    """The folds to score: all of the splits, or ``chosen`` (checked against the splits)."""
    if chosen is None:
        return list(range(len(folds)))
    picked = sorted({int(k) for k in chosen})
    bad = [k for k in picked if not 0 <= k < len(folds)]
    if not picked or bad:
        raise ConfigError(
            f"{wd.root}: --folds {','.join(map(str, bad)) or '(none)'} not in the splits (folds 0..{len(folds) - 1})"
        )
    return picked


def _collect(wd, cfg: str, folds, ending: str, scored: Sequence[int]) -> tuple[dict[str, int], list[str]]:
    """case id -> fold whose validation prediction covers it; and the problems (missing folds/files)."""
    trained = set(wd.trained_folds(cfg))
    owner: dict[str, int] = {}
    problems = []
    for k, fold in enumerate(folds):
        if k not in scored:
            continue
        if k not in trained:
            problems.append(f"fold {k} is not trained")
            continue
        validated = _validated_cases(wd.run_dir(cfg, k), fold.val)
        missing = [c for c in validated if not (wd.validation_dir(cfg, k) / f"{c}{ending}").is_file()]
        if missing:
            problems.append(f"fold {k} lacks validation predictions of {', '.join(missing[:3])}")
            continue
        owner.update({c: k for c in validated})
    return owner, problems


def _validated_cases(run_dir: Path, val: Sequence[str]) -> list[str]:
    """The fold's validation cases its run predicted: all of them, or the subsample a time budget
    allowed (``run.json``: ``validation.cases`` with ``validation.subsampled``)."""
    try:
        record = read_json(run_dir / "run.json").get("validation") or {}
    except (OSError, ValueError, AttributeError):
        return list(val)
    if not record.get("subsampled") or not isinstance(record.get("cases"), list):
        return list(val)
    chosen = {str(c) for c in record["cases"]}
    return [c for c in val if c in chosen]


def _per_fold(cases: Mapping[str, Mapping[int, Mapping[str, float]]], owner, labels) -> dict[str, Any]:
    out = {}
    for k in sorted(set(owner.values())):
        ids = [c for c, f in owner.items() if f == k]
        out[str(k)] = {str(lb): float(np.mean([cases[c][lb]["dice"] for c in ids])) for lb in labels}
    return out


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = ["case", "fold", "class", "dice", "hd95", "dice_postprocessed", "pred_voxels", "ref_voxels"]
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})


def crossval(
    work: str | Path,
    *,
    configuration: str | None = None,
    candidates: Sequence[Mapping[str, Any]] | None = None,
    min_gain: float = 0.0,
    folds: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Summarize the cross-validation of a work folder and choose its postprocessing.

    Parameters
    ----------
    work
        The work folder.
    configuration
        Plan configuration (default: the plan's default).
    candidates
        Postprocessing steps to try per class (default: keep largest, fill holes, remove small
        objects at sizes derived from the reference objects).
    min_gain
        A step is kept only if it raises the class's mean Dice by more than this.
    folds
        Score only these folds (default: every fold, as a cross-validation needs). With a subset
        the figures and the chosen postprocessing rest on those folds' validation cases alone:
        the summary says so (``partial``, ``folds_scored``) and ``voxseg crossval`` warns.

    Returns
    -------
    dict
        The content of ``summary.json``: ``per_class`` (mean/std Dice and HD95), ``mean_dice``,
        ``per_fold``, ``postprocessing`` (the spec, and mean Dice per class before and after).

    Raises
    ------
    VoxsegError
        Some fold is not trained or lacks validation predictions (the message lists them).
    """
    wd = WorkDir(Path(work))
    plan = work_plan(wd, configuration)
    cfg = plan.configuration(configuration).name
    dataset = read_dataset(wd.source_dataset())
    splits = read_splits(wd.splits_path) if wd.splits_path.is_file() else None
    if not splits:
        raise ConfigError(f"{wd.splits_path}: missing; re-run `voxseg plan DATA -o {wd.root}`")
    ending = dataset.spec.file_ending
    scored = _scored_folds(wd, splits, chosen=folds)
    owner, problems = _collect(wd, cfg, splits, ending, scored)
    _refuse_missing(wd, cfg, folds, owner, problems)
    labels = [v for v in plan.class_values if v != 0]
    ids = sorted(owner)
    preds = [read_image(wd.validation_dir(cfg, owner[c]) / f"{c}{ending}") for c in ids]
    refs = [dataset.read_label(dataset.case(c)) for c in ids]
    cases = {
        c: evaluate_case(p, r, labels=labels, ignore_label=plan.ignore_label)
        for c, p, r in zip(ids, preds, refs, strict=True)
    }
    spec, report = choose_postprocessing(
        preds, refs, labels=labels, candidates=candidates, min_gain=min_gain, ignore_label=plan.ignore_label
    )
    cleaned = [apply_postprocessing(p, spec) for p in preds]
    post = {
        c: evaluate_case(p, r, labels=labels, ignore_label=plan.ignore_label)
        for c, p, r in zip(ids, cleaned, refs, strict=True)
    }
    objects = None
    if plan.instances:
        spec, objects = _choose_split(dataset, ids, cleaned, spec, min_gain)
    out = wd.crossval_dir(cfg)
    spec.save(wd.postprocessing_path(cfg))
    extra = {"instances": objects} if objects else {}
    write_json_atomic(
        out / "postprocessing_report.json", json_safe({"schema_version": 1, "candidates": report, **extra})
    )
    summary = _summary(plan, cfg, splits, owner, cases, post, labels, spec)
    summary.update(extra)
    summary["folds_scored"] = sorted(set(owner.values()))
    summary["partial"] = len(summary["folds_scored"]) < len(splits)
    write_json_atomic(out / "summary.json", json_safe(summary))
    rows = [
        {"case": c, "fold": owner[c], "class": lb, **cases[c][lb], "dice_postprocessed": post[c][lb]["dice"]}
        for c in ids
        for lb in labels
    ]
    _write_csv(out / "metrics.csv", json_safe(rows))
    log.info("cross-validation of %d case(s): mean Dice %s", len(ids), summary["mean_dice"])
    return summary


def _refuse_missing(wd, cfg: str, folds, owner: Mapping[str, int], problems: Sequence[str]) -> None:
    """VoxsegError naming the folds to train, or saying that no fold validated a case."""
    if problems:
        todo = sorted({int(p.split()[1]) for p in problems})
        trained = [k for k in wd.trained_folds(cfg) if k not in todo]
        alone = f", or score the trained fold(s) alone with --folds {','.join(map(str, trained))}" if trained else ""
        need = "every fold" if folds is None else "the folds asked for"
        raise VoxsegError(
            f"{wd.root}: cross-validation needs {need} of {cfg!r}: {'; '.join(problems)}; "
            f"train them with `voxseg train {wd.root} --config {cfg} --fold {','.join(map(str, todo))}`{alone}"
        )
    if not owner:
        raise VoxsegError(
            f"{wd.root}: no fold of {cfg!r} validated a case within its time budget (run.json: "
            f"validation.subsampled); train with more --minutes for a cross-validation"
        )


def _choose_split(dataset, ids, cleaned, spec: PostprocessingSpec, min_gain: float):
    """An instance plan's spec ending with ``split_instances`` at the size the validation F1 picks
    (``cleaned``: the validation predictions after ``spec``'s per-class steps)."""
    refs = []
    for c in ids:
        path = dataset.case(c).label
        refs.append(instance_ids(read_image(path), path))
    size, rows = choose_split_min_size(cleaned, refs, interior=INTERIOR, boundary=BOUNDARY, min_gain=min_gain)
    chosen = next(r for r in rows if r["chosen"])
    log.info("instances: split_instances(min_size=%d), object F1 %.4f -> %.4f", size, rows[0]["f1"], chosen["f1"])
    split = Step.of("split_instances", min_size=size) if size else Step.of("split_instances")
    objects = {"min_size": size, "iou_threshold": INSTANCE_IOU, "f1": rows[0]["f1"], "f1_postprocessed": chosen["f1"]}
    return PostprocessingSpec(spec.classes, (*spec.final, split)), {**objects, "candidates": rows}


def _summary(plan, cfg, folds, owner, cases, post, labels, spec) -> dict[str, Any]:
    before = summarize(cases, labels)
    after = summarize(post, labels)
    names = plan.label_names
    per_class = {}
    for lb in labels:
        row = {"name": names.get(lb, str(lb)), **before["per_class"][str(lb)]}
        per_class[str(lb)] = {**row, "dice_postprocessed": _dice(after, lb)}
    return {
        "schema_version": SCHEMA_VERSION,
        "configuration": cfg,
        "folds": len(folds),
        "cases": len(owner),
        "cases_in_splits": sum(len(f.val) for f in folds),  # more than ``cases``: budgets cut validation
        "labels": labels,
        "per_class": per_class,
        "mean_dice": before["foreground_mean"].get("dice"),
        "mean_dice_postprocessed": after["foreground_mean"].get("dice"),
        "per_fold": _per_fold(cases, owner, labels),
        "postprocessing": spec.to_json(),
        "case_dice": {c: {str(lb): cases[c][lb]["dice"] for lb in labels} for c in sorted(cases)},
    }


def _dice(summary: Mapping[str, Any], label: int) -> float | None:
    return summary["per_class"][str(label)]["dice"]["mean"]
