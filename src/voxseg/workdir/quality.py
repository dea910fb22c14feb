"""Whether a trained work folder is worth trusting: warnings for folds that trained only a few
epochs or validate poorly, and for low cross-validation figures (``voxseg train``, ``crossval``,
``export``); the ``next:`` command of each step."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from voxseg.io.safe_json import read_json
from voxseg.workdir.layout import WorkDir

__all__ = [
    "MIN_EPOCHS",
    "LOW_DICE",
    "fold_records",
    "fold_warnings",
    "crossval_warnings",
    "cv_dice",
    "partial_scope",
    "next_step",
]

log = logging.getLogger(__name__)

MIN_EPOCHS = 10  # fewer epochs than this rarely learn anything useful
LOW_DICE = 0.5  # a mean foreground Dice under this is low for a model to rely on


def fold_records(work: str | Path, configuration: str, folds: Sequence[int] | None = None) -> dict[int, dict]:
    """fold -> its ``run.json`` (the folds of ``splits.json`` with one, or ``folds``)."""
    wd = WorkDir(Path(work))
    chosen = folds if folds is not None else range(_fold_count(wd))
    out = {}
    for k in chosen:
        try:
            data = read_json(wd.run_dir(configuration, int(k)) / "run.json")
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            out[int(k)] = data
    return out


def _fold_count(wd: WorkDir) -> int:
    try:
        return len(read_json(wd.splits_path))
    except (OSError, ValueError, TypeError):
        return 0


def fold_warnings(records: Mapping[int, Mapping[str, Any]]) -> list[str]:
    """One line per fold that trained fewer than :data:`MIN_EPOCHS` epochs or validates under :data:`LOW_DICE`."""
    lines = []
    for k, rec in sorted(records.items()):
        epochs = rec.get("epoch")
        if isinstance(epochs, int) and epochs < MIN_EPOCHS:
            lines.append(
                f"fold {k} trained only {epochs} epoch(s): it has likely learnt little; "
                "train longer (--minutes, --total-minutes or --epochs) with --resume or in a new work folder"
            )
        dice = rec.get("val_dice")
        if isinstance(dice, (int, float)) and dice < LOW_DICE:
            lines.append(f"fold {k} validation Dice {dice:.4f} is low (< {LOW_DICE}): check the data and train longer")
    return lines


def crossval_warnings(summary: Mapping[str, Any], records: Mapping[int, Mapping[str, Any]]) -> list[str]:
    """:func:`fold_warnings` and one line when the cross-validation mean Dice is low."""
    lines = fold_warnings(records)
    scope = partial_scope(summary)
    if scope:
        lines.append(
            f"scored on {scope} only ({summary.get('cases')} cases): an estimate, "
            "and postprocessing chosen from it, not a cross-validation of every case; train every fold for one"
        )
    dice = cv_dice(summary)
    if isinstance(dice, (int, float)) and dice < LOW_DICE:
        lines.append(f"cross-validation mean Dice {dice:.4f} is low (< {LOW_DICE}): this model is not ready for use")
    return lines


def partial_scope(summary: Mapping[str, Any]) -> str | None:
    """``fold(s) 0 of 5`` when a ``crossval --folds`` summary scored only some folds, else None."""
    if not summary.get("partial"):
        return None
    scored = ", ".join(map(str, summary.get("folds_scored") or [])) or "?"
    return f"fold(s) {scored} of {summary.get('folds', '?')}"


def cv_dice(summary: Mapping[str, Any]) -> float | None:
    """The mean foreground Dice of a ``crossval/<cfg>/summary.json`` (None: not there)."""
    dice = summary.get("mean_dice")
    if dice is None and isinstance(summary.get("foreground_mean"), Mapping):
        dice = summary["foreground_mean"].get("dice")
    return float(dice) if isinstance(dice, (int, float)) else None


def next_step(step: str, work: str | Path, *, model: str | Path = "MODEL.zip") -> str:
    """The ``next: voxseg ...`` line after ``step`` (plan, train, crossval; export: ``model`` written)."""
    commands = {
        "plan": f"voxseg train {work} --total-minutes 60",
        "train": f"voxseg crossval {work}",
        "crossval": f"voxseg export {work} -o MODEL.zip --name NAME --version v1",
        "export": f"voxseg predict -m {model} -i INPUT -o OUTPUT",
    }
    return f"next: {commands[step]}"
