"""``plan_experiment``: raw dataset -> work folder (verify, fingerprint, plan, splits, preprocess).

One call, resumable: re-running with the same dataset and settings skips every finished step
(nothing is rewritten); re-running with a different dataset or different settings refuses, so a
work folder always matches its ``plan.json``. See :mod:`voxseg.workdir.layout` for the files.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from voxseg._procs import LOCK_NAME, hold_folder
from voxseg.dataset import Dataset, errors_only, load_or_create_splits, make_splits, read_dataset, verify_dataset
from voxseg.dataset.verify import Problem
from voxseg.errors import ConfigError, VoxsegError
from voxseg.fingerprint import Fingerprint, compute_fingerprint
from voxseg.io import read_image, write_json_atomic
from voxseg.io.safe_json import read_json
from voxseg.planning import BUDGETS, Plan, apply_overrides, make_plan
from voxseg.workdir.layout import WorkDir

__all__ = ["plan_experiment", "DatasetRefused", "configuration_parameters", "SETTINGS_KEY", "DEFAULT_SNAPSHOTS"]

log = logging.getLogger(__name__)

SETTINGS_KEY = "voxseg_plan_settings"
"""Key of the planning settings recorded in ``WORK/dataset.json`` (next to ``voxseg_source``)."""

DEFAULT_SNAPSHOTS = 3
"""Cases pictured per configuration by ``snapshots=True``."""

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class DatasetRefused(VoxsegError):
    """``verify_dataset`` found errors; :attr:`problems` holds them all (the message lists them too)."""

    def __init__(self, path: Path, problems: Sequence[Problem]):
        self.path = Path(path)
        self.problems = list(problems)
        listed = "; ".join(f"{p.path}: {p.message}" for p in self.problems)
        super().__init__(
            f"{path}: the dataset has {len(self.problems)} error(s), nothing was done "
            f"(fix them; `voxseg dataset verify {path}` checks again): {listed}"
        )


def _file_signature(dataset: Dataset) -> list[list[Any]]:
    """Name and size of every training file: identifies the dataset's contents cheaply."""
    files = [f for case in dataset.training for f in (*case.images, *([case.label] if case.label else []))]
    return [[f"{f.parent.name}/{f.name}", f.stat().st_size] for f in sorted(files)]


def _settings(
    dataset: Dataset,
    configurations: Sequence[str] | None,
    seed: int,
    budget: str,
    overrides: Sequence[str],
    folds: int,
) -> dict[str, Any]:
    return json.loads(
        json.dumps(
            {
                "configurations": None if configurations is None else list(configurations),
                "seed": int(seed),
                "budget": budget,
                "overrides": list(overrides),
                "folds": int(folds),
                "files": _file_signature(dataset),
            }
        )
    )


def _describe_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    for key in ("configurations", "seed", "budget", "overrides", "folds"):
        if old.get(key) != new.get(key):
            return f"{key} {old.get(key)!r} then, {new.get(key)!r} now"
    return "the dataset's files changed (names or sizes)"


def _refuse_foreign(work: WorkDir) -> None:
    """Refuse a folder that holds files but no voxseg work (before anything is written into it)."""
    if work.dataset_path.is_file() or not work.root.exists():
        return
    if any(not p.name.startswith(LOCK_NAME) for p in work.root.iterdir()):
        raise ConfigError(f"{work.root}: exists and is not an empty voxseg work folder; choose another folder (-o)")


def _claim_work(work: WorkDir, dataset: Dataset, settings: dict[str, Any]) -> bool:
    """Record (or check) what this work folder is planned from; True if it was already planned so."""
    source = str(dataset.root.resolve())
    spec = read_json(dataset.root / "dataset.json")
    if work.dataset_path.is_file():
        try:
            copy = read_json(work.dataset_path)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise ConfigError(
                f"{work.dataset_path}: unreadable; delete the work folder {work.root} and plan again"
            ) from None
        old_source, old_settings = copy.pop("voxseg_source", None), copy.pop(SETTINGS_KEY, None)
        fix = f"choose another work folder (-o), or delete {work.root} to plan again"
        if old_source != source or copy != spec:
            raise ConfigError(f"{work.root}: already planned from another dataset ({old_source}); {fix}")
        if old_settings != settings:
            why = _describe_difference(old_settings or {}, settings)
            raise ConfigError(f"{work.root}: already planned with other settings ({why}); {fix}")
        return True
    _refuse_foreign(work)
    work.root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(work.dataset_path, {**spec, "voxseg_source": source, SETTINGS_KEY: settings})
    return False


def configuration_parameters(plan: Plan) -> dict[str, int]:
    """Build every configuration's network once (checks it is buildable); trainable parameters each.

    Raises
    ------
    ConfigError
        A network refuses its arguments (e.g. after ``--set``); the message names the configuration.
    """
    from voxseg.nets import build_network, count_parameters

    out = {}
    for name, conf in plan.configurations.items():
        try:
            out[name] = count_parameters(build_network(conf.network))
        except ConfigError as exc:
            raise ConfigError(f"configuration {name!r}: {exc}") from None
    return out


def _cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 bf16 / AMX / Arm bf16)."""
    from voxseg.inference.runtime import cpu_supports_bf16

    return cpu_supports_bf16()


def _warn_budget(budget: str) -> None:
    if budget != "gpu":
        return
    import torch

    if not torch.cuda.is_available():
        log.warning("the plan is sized for a GPU (--budget gpu) but this machine has none: training here will be slow")


def _snapshots(work: WorkDir, dataset: Dataset, plan: Plan, configuration: str, count: int) -> list[Path]:
    """PNGs of the preprocessing stages of the first ``count`` cases (existing pictures kept)."""
    from voxseg.preprocessing import read_preprocessed, snapshot_png

    out_dir = work.snapshots_dir / configuration
    names = {v: k for k, v in plan.labels.items()}
    written = []
    for case in sorted(dataset.training, key=lambda c: c.case_id)[:count]:
        path = out_dir / f"{case.case_id}.png"
        if not path.is_file():
            images = [read_image(p) for p in case.images]
            label = dataset.read_label(case)
            pre = read_preprocessed(work.preprocessed_dir(configuration) / case.case_id)
            snapshot_png(
                case.case_id, images, pre, path, raw_label=label, label_names=names, ignore_label=plan.ignore_label
            )
        written.append(path)
    return written


def _stage(progress: Progress | None, stage: str) -> Callable[..., None] | None:
    if progress is None:
        return None
    return lambda done, total, *_: progress(stage, done, total)


def _verify(data: Path, num_workers: int, progress: Progress | None) -> None:
    problems = verify_dataset(data, num_workers=num_workers, progress=_stage(progress, "verify"))
    for p in problems:
        if p.severity == "warning":
            log.warning("%s: %s", p.path, p.message)
    errors = errors_only(problems)
    if errors:
        raise DatasetRefused(data, errors)


def plan_experiment(
    data: str | Path,
    work: str | Path,
    *,
    configurations: Sequence[str] | None = None,
    seed: int = 0,
    budget: str = "cpu",
    overrides: Iterable[str] = (),
    snapshots: bool | int = False,
    num_workers: int | None = None,
    folds: int = 5,
    progress: Progress | None = None,
    interactive: str | None = None,
) -> Plan:
    """Verify, fingerprint, plan, split and preprocess ``data`` into the work folder ``work``.

    Parameters
    ----------
    data
        Raw dataset folder (nnU-Net v2 layout).
    work
        Work folder (created; see :class:`~voxseg.experiment.WorkDir`).
    configurations
        ``("3d", "2d")`` / ``("2d",)`` by default (see :func:`~voxseg.planning.make_plan`).
    seed
        Seeds sampling in the fingerprint, the splits and (by default) training.
    budget
        ``"cpu"`` or ``"gpu"`` (see :class:`~voxseg.planning.PlannerDefaults`). A ``"cpu"`` plan
        made on a CPU that computes bf16 natively trains in bf16 (``--set precision=fp32`` undoes it).
    overrides
        ``KEY=VALUE`` changes to the plan (:func:`~voxseg.planning.apply_overrides`).
    snapshots
        PNGs of the preprocessing stages for the first N cases per configuration (True: 3).
    num_workers
        Threads/processes reading and preprocessing cases (default: up to 4, the CPU count).
    folds
        k of the k-fold splits.
    progress
        Called as ``progress(stage, done, total)``; stages ``verify``, ``fingerprint``,
        ``preprocess 3d``, ``preprocess 2d``.
    interactive
        ``"extreme-points"``: plan an interactive model instead
        (:func:`voxseg.interactive.planning.interactive_plan`).

    Returns
    -------
    Plan
        The plan (also in ``WORK/plan.json``).

    Raises
    ------
    DatasetRefused
        The dataset fails verification (every error listed); nothing was written.
    ConfigError
        Bad settings or overrides, or ``work`` was planned from another dataset or with other
        settings.
    """
    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget {budget!r} (choose from {', '.join(BUDGETS)})")
    overrides = [str(o) for o in overrides]
    workers = max(1, int(num_workers) if num_workers else min(4, os.cpu_count() or 1))
    count = DEFAULT_SNAPSHOTS if snapshots is True else max(0, int(snapshots or 0))
    data, wd = Path(data), WorkDir(Path(work))
    dataset = read_dataset(data)
    names = tuple(configurations) if configurations else None
    settings = _settings(dataset, names, seed, budget, overrides, folds)
    if interactive:
        from voxseg.interactive.planning import check_request

        check_request(interactive, names)  # before any work
        settings["interactive"] = str(interactive)
    resumed = wd.dataset_path.is_file() and wd.plan_path.is_file()
    if not resumed:
        _verify(data, workers, progress)
    make_splits(dataset.case_ids, k=folds, seed=seed)  # too few cases for the folds: refuse before any work
    _refuse_foreign(wd)
    with hold_folder(wd.root, what="`voxseg plan`"):  # a rerun never races an earlier run still going
        _claim_work(wd, dataset, settings)
        plan = _make_or_load_plan(wd, dataset, names, seed, budget, overrides, workers, progress, interactive)
        load_or_create_splits(wd.splits_path, dataset.case_ids, k=folds, seed=seed)
        _warn_budget(budget)
        _preprocess_all(wd, dataset, plan, workers, progress, count)
    return plan


def _preprocess_all(wd: WorkDir, dataset: Dataset, plan: Plan, workers: int, progress, count: int) -> None:
    from voxseg.preprocessing import preprocess_dataset

    for name, conf in plan.configurations.items():
        preprocess_dataset(
            dataset,
            wd.preprocessed_dir(name),
            target_spacing=conf.target_spacing,
            normalization=plan.normalization,
            anisotropy_threshold=plan.anisotropy_threshold,
            num_workers=workers,
            progress=_stage(progress, f"preprocess {name}"),
            seed=plan.seed,
        )
        if count:
            _snapshots(wd, dataset, plan, name, count)


def _make_or_load_plan(
    wd: WorkDir,
    dataset: Dataset,
    names: Sequence[str] | None,
    seed: int,
    budget: str,
    overrides: Sequence[str],
    workers: int,
    progress: Progress | None,
    interactive: str | None = None,
) -> Plan:
    if wd.plan_path.is_file():
        return Plan.load(wd.plan_path)
    if wd.fingerprint_path.is_file():
        fingerprint = Fingerprint.load(wd.fingerprint_path)
    else:
        fingerprint = compute_fingerprint(
            dataset, num_workers=workers, seed=seed, progress=_stage(progress, "fingerprint")
        )
        fingerprint.save(wd.fingerprint_path)
    native_bf16 = budget == "cpu" and _cpu_bf16()
    plan = make_plan(fingerprint, budget=budget, configurations=names, seed=seed, native_bf16=native_bf16)
    if interactive:
        from voxseg.interactive.planning import check_interactive, interactive_plan

        plan = interactive_plan(plan, fingerprint, prompt=interactive)
    plan = apply_overrides(plan, overrides)
    if interactive:
        check_interactive(plan)
    configuration_parameters(plan)
    plan.save(wd.plan_path)
    return plan
