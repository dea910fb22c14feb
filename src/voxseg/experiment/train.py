"""Train folds of a work folder (``voxseg train WORK``): one run per fold, then validation.

Settings: ``TrainConfig`` defaults <- the plan (``batch_size``, ``seed``, ``plan.training``) <- the
caller's overrides (``--epochs``, ``--minutes``, ``--set k=v``); see
:mod:`voxseg.experiment.overrides`. Each fold trains on its ``splits.json`` training cases
(preprocessed in ``WORK/preprocessed/<cfg>``) with seed ``seed + fold``, writes
``runs/<cfg>/fold_<k>/`` (checkpoint every epoch, ``run.json``, ``progress.png``), then predicts its
validation cases from the raw dataset with the :class:`~voxseg.inference.predictor.Predictor`
and scores them (``validation/metrics.json``; ``val_dice`` in ``run.json``).

With ``minutes`` and no explicit ``epochs``, the first epoch is timed and the number of epochs is
set so the run fits the budget (the learning-rate schedule then decays to the end of the budget).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxseg._procs import hold_folder
from voxseg.dataset import Dataset, read_dataset
from voxseg.dataset.splits import Fold, read_splits
from voxseg.dataset.verify import errors_only, verify_dataset
from voxseg.errors import ConfigError, DatasetFormatError, InputImageError
from voxseg.experiment.overrides import PREPROCESSING_FIELDS, as_mapping, resolve_train_config, split_overrides
from voxseg.experiment.validation import json_safe
from voxseg.io.safe_json import read_json
from voxseg.planning import Plan, apply_overrides
from voxseg.planning.work import recorded_changes, work_plan
from voxseg.preprocessing import case_settings
from voxseg.preprocessing.store import read_case_record
from voxseg.training.config import TrainConfig
from voxseg.workdir.layout import WorkDir
from voxseg.workdir.run_record import write_run_record

__all__ = ["train_fold", "train_folds", "open_work", "check_inputs", "plan_hash"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkContext:
    """A work folder opened for training: its paths, plan, configuration, raw dataset and folds."""

    work: WorkDir
    plan: Plan
    configuration: str
    dataset: Dataset
    folds: list[Fold]


def plan_hash(plan: Plan) -> str:
    """sha256 of the plan's canonical JSON (recorded in ``run.json``)."""
    text = json.dumps(plan.to_json(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def open_work(work: str | Path, *, configuration: str | None = None) -> tuple[WorkDir, Plan, str]:
    """The work folder, its plan and the configuration name (default: the plan's default)."""
    wd = WorkDir(Path(work))
    plan = work_plan(wd, configuration)
    return wd, plan, plan.configuration(configuration).name


def _verify(dataset_root: Path) -> None:
    errors = errors_only(verify_dataset(dataset_root))
    if errors:
        shown = "; ".join(str(p) for p in errors[:10])
        more = f"; and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise DatasetFormatError(
            f"{dataset_root}: the dataset fails verification ({len(errors)} error(s)): {shown}{more}; "
            "fix them (see `voxseg dataset verify`) and re-run `voxseg plan`"
        )


def _check_case(prefix: Path, case, plan: Plan, conf) -> str | None:
    """None when the stored case was made from these files with these settings, else what changed."""
    try:
        stored = read_case_record(prefix).get("settings", {})
    except InputImageError:
        return "not preprocessed"
    target = stored.get("target_spacing") or []
    nd = len(conf.target_spacing)
    if [round(float(v), 6) for v in target[-nd:]] != [round(v, 6) for v in conf.target_spacing]:
        return "the plan's target spacing changed"
    now = case_settings(
        case,
        target_spacing=target,
        normalization=plan.normalization,
        anisotropy_threshold=plan.anisotropy_threshold,
        instances=plan.instances,
    )
    if stored.get("sources") != now["sources"]:
        return "its raw files changed"
    if stored.get("label_target") != now.get("label_target"):
        return 'the dataset\'s "instances" setting changed'
    if stored != now:
        return "the plan's normalization changed"
    return None


def check_inputs(work: str | Path, *, configuration: str | None = None, verify: bool = True) -> WorkContext:
    """Open a work folder and refuse, before any work, a dataset that fails verification or
    preprocessed cases that no longer match the raw files or the plan.

    Raises
    ------
    DatasetFormatError
        The raw dataset fails ``verify`` (every error listed) or lost cases of the splits.
    ConfigError
        Not a work folder, or preprocessed data out of date (re-run ``voxseg plan``).
    """
    wd, plan, cfg = open_work(work, configuration=configuration)
    source = wd.source_dataset()
    dataset = read_dataset(source)
    if verify:
        _verify(source)
    if not wd.splits_path.is_file():
        raise ConfigError(f"{wd.splits_path}: missing; re-run `voxseg plan DATA -o {wd.root}`")
    folds = read_splits(wd.splits_path)
    conf = plan.configuration(cfg)
    by_id = {c.case_id: c for c in dataset.training}
    stale = []
    for case_id in sorted({c for f in folds for c in (*f.train, *f.val)}):
        if case_id not in by_id:
            raise DatasetFormatError(f"{source}: case {case_id!r} of {wd.splits_path} is missing from the dataset")
        why = _check_case(wd.preprocessed_dir(cfg) / case_id, by_id[case_id], plan, conf)
        if why:
            stale.append(f"{case_id} ({why})")
    if stale:
        raise ConfigError(
            f"{wd.preprocessed_dir(cfg)}: {len(stale)} case(s) out of date with the dataset or plan: "
            f"{', '.join(stale[:5])}{' ...' if len(stale) > 5 else ''}; re-run `voxseg plan {source} -o {wd.root}`"
        )
    return WorkContext(wd, plan, cfg, dataset, folds)


def _apply_plan_changes(ctx: WorkContext, changes: Mapping[str, Any], fold: int) -> WorkContext:
    """Apply plan ``--set`` keys (``network.name=...``) for this fold's run (recorded in its run.json as
    ``plan_changes``; plan.json is only written by ``voxseg plan``), unless that would contradict the
    preprocessed data or another fold's run (every fold of a configuration has one network)."""
    if not changes:
        return ctx
    plan = apply_overrides(ctx.plan, changes)
    if plan == ctx.plan:
        return ctx
    old, new = ctx.plan.configuration(ctx.configuration), plan.configuration(ctx.configuration)
    if (old.target_spacing, ctx.plan.normalization, ctx.plan.anisotropy_threshold) != (
        new.target_spacing,
        plan.normalization,
        plan.anisotropy_threshold,
    ):
        raise ConfigError(
            f"--set {', '.join(changes)}: changes the preprocessing ({', '.join(PREPROCESSING_FIELDS)}); "
            f"re-plan instead: `voxseg plan DATA -o {ctx.work.root} --set ...`"
        )
    mine = {"network": new.network.to_json(), "patch_size": list(new.patch_size)}
    others = [f for f in range(len(ctx.folds)) if f != fold and _run_network(ctx, f) not in (None, mine)]
    if others:
        raise ConfigError(
            f"{ctx.work.root}: fold(s) {', '.join(map(str, others))} of {ctx.configuration!r} were trained with "
            f"another network or patch size; --set {', '.join(changes)} needs a new work folder (or retrain them)"
        )
    log.info(
        "network changes for this run, recorded in run.json (%s)", ", ".join(f"{k}={v}" for k, v in changes.items())
    )
    return WorkContext(ctx.work, plan, ctx.configuration, ctx.dataset, ctx.folds)


def _run_network(ctx: WorkContext, fold: int) -> dict[str, Any] | None:
    """The network and patch size a fold's run recorded (None: no run)."""
    try:
        data = read_json(ctx.work.run_dir(ctx.configuration, fold) / "run.json")
        return {"network": data.get("network"), "patch_size": data.get("patch_size")}
    except (OSError, ValueError, AttributeError):
        return None


def _budget_warning(plan: Plan, cfg: TrainConfig) -> None:
    budget = getattr(plan, "budget", None)
    if budget is not None and str(budget).lower() != "cpu" and cfg.device == "cpu":
        log.warning(
            "the plan was made for a %s budget but training runs on the CPU: expect it to be very slow "
            "(re-plan with `voxseg plan --budget cpu` or train with --device cuda)",
            budget,
        )


def _previous_run(ctx: WorkContext, fold: int) -> dict[str, Any]:
    """The fold's run.json ({} when there is none or it is unreadable)."""
    try:
        data = read_json(ctx.work.run_dir(ctx.configuration, fold) / "run.json")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _resolved_config(ctx: WorkContext, fold: int, overrides: Mapping[str, Any], resume: bool) -> TrainConfig:
    training, _ = split_overrides(overrides)
    cfg = resolve_train_config(ctx.plan, ctx.configuration, training)
    cfg = cfg.with_overrides(seed=cfg.seed + int(fold))
    old = _previous_run(ctx, fold) if resume else {}
    with contextlib.suppress(KeyError, TypeError, ValueError):
        if "minutes" not in training and old["config"].get("minutes") is not None:
            # a time-budgeted run continues to the budget it was given (run.json: the whole budget)
            cfg = cfg.with_overrides(minutes=float(old["config"]["minutes"]))
        if "epochs" not in training:
            # keep the epoch count of the interrupted run (its LR schedule depends on it)
            cfg = cfg.with_overrides(epochs=int(old["config"]["epochs"]))
    return cfg


def _sized_by_budget(ctx: WorkContext, fold: int, training: Mapping[str, Any], cfg: TrainConfig, resume: bool) -> bool:
    """Whether the epoch count comes from the time budget (``--minutes`` without ``--epochs``).

    On ``--resume`` that is what the interrupted run recorded, unless it finished: the epoch
    count it wrote then is provisional (the first, timing epoch) and never taken as final.
    """
    if "epochs" in training or cfg.minutes is None:
        return False
    if not resume:
        return True
    old = _previous_run(ctx, fold)
    if not old:  # killed before its first run.json: as a new run (its checkpoint, if any, is resumed)
        return True
    return bool(old.get("epochs_from_budget")) and old.get("status") != "finished"


def _meta(ctx: WorkContext, fold: int, cfg: TrainConfig) -> dict[str, Any]:
    import torch

    from voxseg._version import __version__

    split = ctx.folds[fold]
    return {
        "fold": int(fold),
        "configuration": ctx.configuration,
        "dataset": ctx.plan.dataset_name,
        "dataset_path": str(ctx.dataset.root),
        "plan_sha256": plan_hash(ctx.plan),
        "network": ctx.plan.configuration(ctx.configuration).network.to_json(),
        "patch_size": list(ctx.plan.configuration(ctx.configuration).patch_size),
        "seed": cfg.seed,
        "train_cases": list(split.train),
        "val_cases": list(split.val),
        "versions": {"voxseg": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }


def _update_run_json(run_dir: Path, **fields: Any) -> dict[str, Any]:
    return write_run_record(run_dir, **json_safe(fields)).to_json()


def train_fold(
    work: str | Path,
    fold: int,
    *,
    configuration: str | None = None,
    config_overrides: Mapping[str, Any] | Sequence[str] | None = None,
    resume: bool = False,
    mlflow: str | None = None,
    progress: Callable[[Any], None] | None = None,
    num_workers: int | None = None,
    device: str | None = None,
    validate: bool = True,
    patch_validation: int = 4,
    _context: WorkContext | None = None,
) -> dict[str, Any]:
    """Train one fold of a work folder, then validate it on full volumes.

    Parameters
    ----------
    work
        The work folder (``voxseg plan DATA -o WORK``).
    fold
        Fold index of ``splits.json``.
    configuration
        Plan configuration (default: the plan's default).
    config_overrides
        Dotted ``TrainConfig`` keys (``{"epochs": 5, "loss": "dice_focal", "loss.lambda_other": 10}``);
        ``network.*`` keys change the plan's network for this configuration's runs (recorded in
        ``run.json`` as ``plan_changes``; :func:`voxseg.planning.work.work_plan` applies them).
    resume
        Continue an interrupted run from its last finished epoch.
    mlflow
        MLflow tracking URI (``"local"``: ``WORK/mlruns``), or None.
    progress
        Called after every step with a :class:`voxseg.training.loop.StepInfo`.
    num_workers, device
        Shortcuts for the ``num_workers`` and ``device`` overrides.
    validate
        Predict and score the validation cases after training.
    patch_validation
        Validation patches scored after every epoch (``val_dice`` in the history); 0 disables.

    Returns
    -------
    dict
        Fold summary: ``fold``, ``configuration``, ``run_dir``, ``status``, ``epochs``, ``loss``,
        ``val_dice``, ``per_class`` and ``seconds_per_iteration``.
    """
    from voxseg.experiment.runner import run_fold

    training, plan_changes = split_overrides(config_overrides)
    if num_workers is not None:
        training["num_workers"] = num_workers
    if device is not None:
        training["device"] = device
    ctx = _context or check_inputs(work, configuration=configuration)
    fold = int(fold)
    if not 0 <= fold < len(ctx.folds):
        raise ConfigError(f"fold {fold} does not exist: {ctx.work.splits_path} has folds 0..{len(ctx.folds) - 1}")
    ctx = _apply_plan_changes(ctx, plan_changes, fold)
    changes = {**recorded_changes(ctx.work, ctx.configuration), **plan_changes}
    cfg = _resolved_config(ctx, fold, training, resume)
    _budget_warning(ctx.plan, cfg)
    sized = _sized_by_budget(ctx, fold, training, cfg, resume)
    with _hold_run(ctx, fold):  # a rerun never races an earlier run of this fold still going
        return run_fold(
            ctx,
            fold,
            cfg,
            meta={
                **_meta(ctx, fold, cfg),
                "epochs_from_budget": sized,
                **({"plan_changes": changes} if changes else {}),
            },
            resume=resume,
            mlflow=mlflow,
            progress=progress,
            size_to_budget=sized,
            validate=validate,
            patch_validation=patch_validation,
        )


def _changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """``plan_changes`` for run.json (nothing when the run uses plan.json as it is)."""
    return {"plan_changes": dict(changes)} if changes else {}


def _hold_run(ctx: WorkContext, fold: int) -> contextlib.AbstractContextManager:
    """The fold's run folder lock (rank 0 only: the other data-parallel ranks train the same fold)."""
    from voxseg.training.parallel import DataParallel

    par = DataParallel.current()
    if par is not None and not par.is_main:
        return contextlib.nullcontext()
    return hold_folder(ctx.work.run_dir(ctx.configuration, fold), what=f"training of fold {fold}")


def train_folds(
    work: str | Path,
    folds: str | Sequence[int] = "all",
    *,
    configuration: str | None = None,
    total_minutes: float | None = None,
    started: float | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Train several folds (``"all"``: every fold of ``splits.json``) one after another.

    Options are those of :func:`train_fold`; the inputs are checked once, before the first fold.
    ``total_minutes`` is a time budget for all the chosen folds together (training and validation):
    each fold gets the time left split evenly over the folds still to train, re-split as folds
    finish (a fold that ends early leaves its time to the next ones). ``started``: the
    ``time.monotonic()`` the total budget counts from (default: now; the CLI passes the moment
    the command began, so its imports count too).
    """
    called = time.monotonic() if started is None else started  # a total budget counts from here
    ctx = check_inputs(work, configuration=configuration)
    if isinstance(folds, str):
        if folds != "all":
            raise ConfigError(f"folds must be 'all' or a list of fold numbers, got {folds!r}")
        chosen = list(range(len(ctx.folds)))
    else:
        chosen = [int(f) for f in folds]
    if total_minutes is None:
        return [train_fold(work, f, configuration=ctx.configuration, _context=ctx, **options) for f in chosen]
    if total_minutes <= 0:
        raise ConfigError(f"--total-minutes must be > 0, got {total_minutes}")
    training, _ = split_overrides(options.get("config_overrides"))
    if "minutes" in training:
        raise ConfigError("--minutes (per fold) and --total-minutes (all folds) exclude each other: give one")
    deadline = called + total_minutes * 60
    summaries = []
    for k, f in enumerate(chosen):
        share = max(deadline - time.monotonic(), 1.0) / (len(chosen) - k)
        log.info("fold %d: %.2f min of the %.2f min total budget", f, share / 60, total_minutes)
        overrides = {**as_mapping(options.get("config_overrides")), "minutes": share / 60}
        summaries.append(
            train_fold(
                work, f, configuration=ctx.configuration, _context=ctx, **{**options, "config_overrides": overrides}
            )
        )
    return summaries
