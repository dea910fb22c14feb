"""A work folder's plan as its folds were trained: ``plan.json`` plus the network changes that
``voxseg train --set network.*=...`` recorded in the runs' ``run.json`` (``plan_changes``).

``plan.json`` has one writer, ``voxseg plan``; training never rewrites it. Every reader of a trained
work folder (inference, export, cross-validation, further training) takes its plan from
:func:`work_plan`, so a fold trained with ``--set network.name=attention_unet`` is predicted,
exported and resumed with that network. All folds of a configuration agree on it (``voxseg train``
refuses a fold that would differ).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from voxseg.planning.overrides import apply_overrides
from voxseg.planning.plan import Plan
from voxseg.workdir.layout import WorkDir
from voxseg.workdir.run_record import RunRecord

__all__ = ["work_plan", "recorded_changes"]


def recorded_changes(work: WorkDir | str | Path, configuration: str) -> dict[str, Any]:
    """The ``plan_changes`` the configuration's runs recorded ({} when none)."""
    wd = work if isinstance(work, WorkDir) else WorkDir(Path(work))
    runs = wd.run_dir(configuration, 0).parent
    for run_json in sorted(runs.glob("fold_*/run.json")) if runs.is_dir() else ():
        try:
            changes = RunRecord.read(run_json.parent).get("plan_changes")
        except (OSError, ValueError):
            continue
        if changes:
            return dict(changes)
    return {}


def work_plan(work: WorkDir | str | Path, configuration: str | None = None) -> Plan:
    """``plan.json`` with the network changes recorded by the configuration's runs (see the module)."""
    wd = work if isinstance(work, WorkDir) else WorkDir(Path(work))
    plan = Plan.load(wd.require_plan())
    changes = recorded_changes(wd, plan.configuration(configuration).name)
    return apply_overrides(plan, changes) if changes else plan
