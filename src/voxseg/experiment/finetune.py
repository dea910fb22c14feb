"""``voxseg finetune``: a new version of a model, trained further on a few corrected cases.

:func:`finetune` starts from a model bundle (an installed ``NAME[@VERSION]``, a bundle folder or
``.zip``, imported nnU-Net models included) or a training work folder, keeps its plan (spacing, normalization, patch,
network) and its weights, and trains on a small nnU-Net-layout dataset (dense labels, or sparse:
unannotated voxels hold the ``ignore`` label) with a fine-tuning schedule: the model's learning
rate times ``lr_factor`` after a short linear warm-up, optionally a frozen encoder, under a time budget
(:mod:`voxseg.training.budget`). With two cases or more, one is held out and scored before and
after. The result is ``NAME@v(N+1)``, installed in the local model store (so ``-m NAME`` picks it)
or written to ``out``; its ``bundle.json`` records the parent (name, version, sha256), the sha256
of the cases it saw, and the held-out Dice before and after.

:func:`train_first` is the "no model yet" start: the same, from a fresh plan of the data
(the sparse start of ``docs/sparse-annotation.md``).

Re-running the same call resumes an interrupted run (the work folder is keyed by the model, the
cases' hashes and the settings); a finished one returns its result again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxseg._procs import hold_folder
from voxseg.dataset import Dataset, read_dataset
from voxseg.dataset.splits import Fold
from voxseg.errors import ConfigError, DatasetFormatError
from voxseg.experiment.finetune_work import (
    case_hashes,
    check_compatible,
    fine_tune_plan,
    prepare_work,
    read_record,
    update_record,
    work_key,
)
from voxseg.experiment.overrides import as_mapping, resolve_train_config
from voxseg.planning import Plan
from voxseg.workdir.layout import WorkDir

__all__ = ["FinetuneResult", "finetune", "train_first"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune` / :func:`train_first` made.

    ``path``: the installed bundle folder, or ``out``; ``before_dice`` / ``after_dice``: mean
    foreground Dice on the held-out cases (None without one).
    """

    reference: str
    path: Path
    work: Path
    parent: str | None
    held_out: tuple[str, ...]
    before_dice: float | None
    after_dice: float | None
    epochs: int
    steps: int
    installed: bool


def _default_work(kind: str, name: str, key: str) -> Path:
    from voxseg.settings import resolve_paths

    return resolve_paths().cache / "finetune" / f"{name}-{kind}-{key}"


def _holdout(dataset: Dataset, holdout: int | None) -> int:
    n = len(dataset.case_ids)
    if holdout is None:
        return 1 if n >= 2 else 0
    if not 0 <= holdout < n:
        raise ConfigError(f"holdout={holdout}: must be between 0 and {n - 1} (the dataset has {n} case(s))")
    return int(holdout)


def _finished(wd: WorkDir, out: str | Path | None) -> FinetuneResult | None:
    """The result of a run of this work folder that was exported already (to the same ``out``)."""
    rec = read_record(wd)
    done = rec.get("exported")
    if not isinstance(done, dict) or done.get("out") != (None if out is None else str(Path(out).resolve())):
        return None
    if not Path(done["path"]).exists():
        return None
    log.info("%s: finished already as %s", wd.root, done["reference"])
    return _result(wd, rec, done)


def _result(wd: WorkDir, rec: Mapping[str, Any], done: Mapping[str, Any]) -> FinetuneResult:
    val = rec.get("validation") or {}
    return FinetuneResult(
        reference=done["reference"],
        path=Path(done["path"]),
        work=wd.root,
        parent=(rec.get("parent") or {}).get("reference"),
        held_out=tuple(val.get("held_out") or ()),
        before_dice=val.get("before"),
        after_dice=val.get("after"),
        epochs=int(done.get("epochs", 0)),
        steps=int(done.get("steps", 0)),
        installed=done.get("out") is None,
    )


def _before(wd: WorkDir, bundle, plan: Plan, dataset: Dataset, fold: Fold, device: str) -> float | None:
    """The parent model's mean Dice on the held-out cases (the first fold's network, as trained on)."""
    from voxseg.experiment.validation import validate_cases

    net = bundle.network(bundle.manifest.folds[0])
    report = validate_cases(
        net, plan, dataset, fold.val, wd.root / "before", configuration=plan.default_configuration, device=device
    )
    return report["mean_dice"]


def _packaged_work(model: str | Path) -> str:
    """``model``, or for a training work folder a bundle of it (made once, in the cache) to start from.

    The bundle is named after the folder, version ``v1``, keyed by the folder's path and the sha256
    of its trained weights: training more folds or retraining makes a new one.
    """
    import hashlib
    import re

    path = Path(str(model)).expanduser()
    if not (path.is_dir() and (path / "plan.json").is_file() and not (path / "bundle.json").is_file()):
        return str(model)
    from voxseg.bundle._util import sha256_file
    from voxseg.bundle.export import export_bundle
    from voxseg.planning.work import work_plan
    from voxseg.settings import resolve_paths

    wd = WorkDir(path)
    cfg = work_plan(wd).default_configuration
    folds = wd.trained_folds(cfg)
    if not folds:
        raise ConfigError(f"{path}: no trained fold to fine-tune; train first with `voxseg train {path}`")
    digest = hashlib.sha256(str(path.resolve()).encode())
    for fold in folds:
        digest.update(sha256_file(wd.checkpoint_dir(cfg, fold) / "model.safetensors").encode())
    name = re.sub(r"[^a-z0-9._-]+", "-", path.resolve().name.lower()).strip("-._") or "model"
    out = resolve_paths().cache / "finetune" / "parents" / f"{name}-{digest.hexdigest()[:12]}.zip"
    if not out.is_file():
        log.info("%s: packaging the work folder as a bundle to start from (%s)", path, out)
        export_bundle(path, out, name=name, version="v1", golden=False)
    return str(out)


def finetune(
    dataset: str | Path,
    *,
    model: str | Path,
    minutes: float,
    out: str | Path | None = None,
    freeze_encoder: bool = False,
    lr_factor: float = 0.1,
    warmup_steps: int = 10,
    holdout: int | None = None,
    work: str | Path | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    progress: Callable[[Any], None] | None = None,
    device: str = "cpu",
    models: str | Path | None = None,
    index: str | Path | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` on ``dataset`` for ``minutes`` and write its next version.

    Parameters
    ----------
    dataset
        nnU-Net-layout folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``), dense or sparse.
    model
        ``NAME``, ``NAME@VERSION``, a bundle folder or ``.zip``, or a training work folder (its
        finished folds, packaged once into the cache as ``FOLDER@v1``).
    minutes
        Time budget: preprocessing, the "before" score, training and the "after" score.
    out
        Write the new version here (``.zip`` or a new folder) instead of installing it.
    freeze_encoder, lr_factor, warmup_steps
        The schedule: only the decoder trains; the model's learning rate times ``lr_factor``;
        steps of linear warm-up.
    holdout
        Cases held out for the before/after score (default: 1 with two cases or more, else 0).
    work
        The work folder (default: in the cache, named by the model, the cases and the settings).
    overrides
        More training options (``{"iterations_per_epoch": 10}`` or ``["KEY=VALUE"]``).
    progress
        Called after every training step with a :class:`voxseg.training.loop.StepInfo`.
    device, models, index
        Training device; the model store and extra model index (default: voxseg's settings).

    Raises
    ------
    DatasetFormatError
        The data does not fit the model (channels, 2D/3D, labels) or fails verification.
    ConfigError, BundleError
        Bad settings; the model cannot be found or opened.
    """
    from voxseg.bundle.cache import resolve_bundle

    started = time.monotonic()
    if minutes <= 0 or lr_factor <= 0:
        raise ConfigError(f"minutes and lr_factor must be > 0, got {minutes} and {lr_factor}")
    ds = read_dataset(dataset)
    bundle = resolve_bundle(_packaged_work(model), index=index, models=models)
    m = bundle.manifest
    if m.plan.interactive:
        raise ConfigError(f"{m.reference}: fine-tuning interactive models is not supported")
    check_compatible(ds, m.plan, m.reference)
    hold = _holdout(ds, holdout)
    extra = as_mapping(overrides)
    settings = {"minutes": minutes, "freeze_encoder": freeze_encoder, "lr_factor": lr_factor,
                "warmup_steps": warmup_steps, "holdout": hold, "overrides": extra}  # fmt: skip
    hashes = case_hashes(ds)
    wd = WorkDir(Path(work) if work else _default_work(m.version, m.name, work_key(bundle.sha256, hashes, settings)))
    plan = fine_tune_plan(m.plan, m.configuration, ds)
    parent = {"name": m.name, "version": m.version, "sha256": bundle.sha256, "reference": m.reference}
    record = {"schema_version": 1, "parent": parent, "cases": hashes, "settings": settings}
    wd.root.mkdir(parents=True, exist_ok=True)
    with hold_folder(wd.root, what="fine-tuning"):
        start = bundle.read(m.weights_file(m.folds[0]))
        fold = prepare_work(wd, ds, plan, holdout=hold, start_weights=start, record=record)
        post = wd.postprocessing_path(plan.default_configuration)
        if m.postprocessing.to_json() != type(m.postprocessing)().to_json() and not post.is_file():
            m.postprocessing.save(post)  # the parent's postprocessing goes with the new version
        done = _finished(wd, out)
        if done is not None:
            return done
        rec = read_record(wd)
        if "validation" not in rec:
            before = _before(wd, bundle, plan, ds, fold, device) if fold.val else None
            rec = update_record(wd, validation={"held_out": list(fold.val), "before": before})
        base_lr = resolve_train_config(plan).lr
        training = {"lr": base_lr * lr_factor, "warmup_steps": int(warmup_steps), "freeze_encoder": freeze_encoder,
                    "init_weights": str(wd.root / "start.safetensors")}  # fmt: skip
        summary = _train(wd, rec, fold, minutes, started, {**training, **extra}, progress, device)
        lineage = {"parent_model": {k: v for k, v in parent.items() if k != "reference"}}
        return _export(wd, ds, summary, name=m.name, out=out, parent=m.reference, lineage=lineage, manifest=m,
                       models=models, index=index)  # fmt: skip


def _train(wd: WorkDir, rec, fold: Fold, minutes: float, started: float, training, progress, device) -> dict:
    """Train fold 0 with what is left of the budget (recorded: a rerun resumes with the same budget)."""
    from voxseg.experiment.train import train_fold

    if "train_minutes" not in rec:
        left = minutes - (time.monotonic() - started) / 60
        rec = update_record(wd, train_minutes=round(max(left, min(0.1, minutes)), 4))
    plan = Plan.load(wd.plan_path)
    resume = wd.run_dir(plan.default_configuration, 0).exists()
    summary = train_fold(
        wd.root,
        0,
        config_overrides={**training, "minutes": rec["train_minutes"]},
        resume=resume,
        progress=progress,
        device=device,
        validate=bool(fold.val),
    )
    if summary["status"] != "finished":
        raise ConfigError(f"{summary['run_dir']}: training {summary['status']}; run the same command again to resume")
    return summary


def _export(wd: WorkDir, ds: Dataset, summary, *, name, out, parent, lineage, manifest, models, index) -> Any:
    from voxseg.bundle.cache import install
    from voxseg.bundle.export import export_bundle
    from voxseg.bundle.listing import next_version

    rec = read_record(wd)
    val = dict(rec.get("validation") or {})
    if val.get("held_out"):
        val["after"] = summary.get("val_dice")
    else:
        val["note"] = "no held-out case"
    rec = update_record(wd, validation=val)
    settings = rec.get("settings") or {}
    lineage = {**lineage, "finetune": {"cases": rec.get("cases", {}), "validation": val, **settings,
                                       "epochs": summary.get("epochs"), "steps": summary.get("steps"),
                                       "dataset": ds.spec.name}}  # fmt: skip
    parent_version = [manifest.version] if manifest is not None and manifest.name == name else []
    version = rec.get("version") or next_version(name, index=index, models=models, after=parent_version)
    update_record(wd, version=version)  # a kill after the export and before its record: the same version again
    target = Path(out) if out is not None else wd.root / "export" / f"{name}-{version}.zip"
    n = len(rec.get("cases") or {})
    if manifest is not None:
        desc = f"{manifest.name} fine-tuned from {manifest.version} on {n} case(s) of {ds.spec.name}"
    else:
        desc = f"first model trained on {n} (sparsely) annotated case(s) of {ds.spec.name}"
    kwargs = {"license": manifest.license, "authors": manifest.authors, "modality": manifest.modality,
              "intended_use": manifest.intended_use} if manifest is not None else {}  # fmt: skip
    export_bundle(wd.root, target, name=name, version=version, parent=parent, lineage=lineage,
                  description=desc, **kwargs)  # fmt: skip
    path = target if out is not None else install(target, models=models).path
    reference = f"{name}@{version}"
    done = {"reference": reference, "path": str(Path(path).resolve()), "epochs": summary.get("epochs", 0),
            "steps": summary.get("steps", 0), "out": None if out is None else str(Path(out).resolve())}  # fmt: skip
    rec = update_record(wd, exported=done)
    log.info("wrote %s (%s)", reference, path)
    return _result(wd, rec, done)


def train_first(
    dataset: str | Path,
    *,
    name: str,
    minutes: float,
    out: str | Path | None = None,
    holdout: int | None = None,
    work: str | Path | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    progress: Callable[[Any], None] | None = None,
    device: str = "cpu",
    models: str | Path | None = None,
    index: str | Path | None = None,
) -> FinetuneResult:
    """The first model ``name`` from a (sparsely) annotated dataset: planned for the CPU, trained
    for ``minutes`` (unannotated voxels = the ``ignore`` label), written as its next version
    (``v1`` for a new name). Parameters as for :func:`finetune`."""
    from voxseg.bundle._util import check_name

    started = time.monotonic()
    check_name(name, "model name")
    if minutes <= 0:
        raise ConfigError(f"minutes must be > 0, got {minutes}")
    ds = read_dataset(dataset)
    plan = _first_plan(ds)
    check_compatible(ds, plan, f"a new model for {ds.spec.name}")
    hold = _holdout(ds, holdout)
    extra = as_mapping(overrides)
    settings = {"minutes": minutes, "holdout": hold, "overrides": extra, "first": True}
    hashes = case_hashes(ds)
    wd = WorkDir(Path(work) if work else _default_work("first", name, work_key("", hashes, settings)))
    record = {"schema_version": 1, "parent": None, "cases": hashes, "settings": settings}
    wd.root.mkdir(parents=True, exist_ok=True)
    with hold_folder(wd.root, what="training"):
        fold = prepare_work(wd, ds, plan, holdout=hold, start_weights=None, record=record)
        done = _finished(wd, out)
        if done is not None:
            return done
        rec = read_record(wd)
        if "validation" not in rec:
            rec = update_record(wd, validation={"held_out": list(fold.val), "before": None})
        summary = _train(wd, rec, fold, minutes, started, dict(extra), progress, device)
        return _export(wd, ds, summary, name=name, out=out, parent=None, lineage={}, manifest=None,
                       models=models, index=index)  # fmt: skip


def _first_plan(ds: Dataset) -> Plan:
    """A CPU plan of the dataset, its default configuration only."""
    from voxseg.experiment.plan import _cpu_bf16
    from voxseg.fingerprint import compute_fingerprint
    from voxseg.planning import make_plan

    labelled = [c for c in ds.training if c.label is not None]
    if not labelled:
        raise DatasetFormatError(f"{ds.root / 'labelsTr'}: no labelled case to train on")
    fingerprint = compute_fingerprint(ds, num_workers=1, seed=0)
    plan = make_plan(fingerprint, budget="cpu", seed=0, native_bf16=_cpu_bf16())
    conf = plan.configuration()
    return plan.replace(configurations={conf.name: conf})
