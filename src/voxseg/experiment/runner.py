"""Run one fold: build the network, train (sized to a time budget when asked), validate, track.

Internal to :mod:`voxseg.experiment.train`, which resolves and checks the settings first.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from voxseg.errors import ConfigError
from voxseg.experiment.overrides import flatten
from voxseg.experiment.reserve import ValidationChoice, choose_validation
from voxseg.experiment.tracking import MlflowTracker
from voxseg.experiment.validation import PatchValidator, validate_cases
from voxseg.io.safe_json import read_json
from voxseg.nets import build_network, count_parameters, encoder_parameters
from voxseg.training.checkpoint import TrainState, latest_checkpoint
from voxseg.training.config import TrainConfig
from voxseg.training.loop import train
from voxseg.workdir.run_record import RunRecord, write_run_record

if TYPE_CHECKING:
    from voxseg.experiment.train import WorkContext

__all__ = ["run_fold"]

log = logging.getLogger(__name__)
_BUDGET_MARGIN = 0.95


def _tracker(ctx: WorkContext, fold: int, cfg: TrainConfig, meta: Mapping[str, Any], uri: str | None, resume: bool):
    if not uri:
        return None
    tracker = MlflowTracker(
        uri,
        ctx.work.root,
        experiment=f"voxseg {ctx.plan.dataset_name} {ctx.configuration}",
        run_name=f"{ctx.configuration} fold {fold}",
        tags={"fold": str(fold), "configuration": ctx.configuration, "resumed": str(bool(resume)).lower()},
    )
    conf = ctx.plan.configuration(ctx.configuration).to_json()
    params = {
        **flatten(cfg.to_json(), "train."),
        **flatten(conf, "plan."),
        "plan.normalization": [n.to_json() for n in ctx.plan.normalization],
        "plan.labels": dict(ctx.plan.labels),
        "plan.sha256": meta["plan_sha256"],
        "fold": fold,
        "train_cases": len(meta["train_cases"]),
        "val_cases": len(meta["val_cases"]),
    }
    tracker.log_params(params)
    tracker.log_artifact(ctx.work.plan_path)
    return tracker


def _starting_point(model: torch.nn.Module, network: str, cfg: TrainConfig) -> None:
    """Fine-tuning: load ``cfg.init_weights`` (strictly) and freeze the encoder when asked."""
    if cfg.init_weights:
        from safetensors.torch import load_file

        try:
            model.load_state_dict(load_file(cfg.init_weights), strict=True)
        except (OSError, RuntimeError) as exc:
            first = " ".join(str(exc).split())[:300]
            raise ConfigError(f"{cfg.init_weights}: not weights of this network ({first})") from None
    if cfg.freeze_encoder:
        for param in encoder_parameters(model, network):
            param.requires_grad_(False)


def _epoch_end(validator: PatchValidator | None, model: torch.nn.Module, tracker) -> Callable:
    def epoch_end(epoch: int, state: TrainState) -> dict | None:
        if tracker is not None:
            tracker.log_history(state.history)  # the epochs before this one (this one is appended after)
        if validator is None:
            return None
        return {"val_dice": round(validator(model), 5)}

    return epoch_end


def _train(run_dir: Path, model, prefixes, conf, cfg: TrainConfig, ctx, meta, resume, progress, epoch_end, size, keep):
    kwargs = dict(patch_size=conf.patch_size, ignore_label=ctx.plan.ignore_label, meta=meta)
    kwargs.update(mirror_axes=conf.mirror_axes)  # the plan's: not the axes whose flip swaps classes
    kwargs.update(progress=progress, epoch_end=epoch_end, sampler=_interactive_sampler(ctx.plan, conf))
    kwargs.update(reserve=lambda: keep)  # keep: the validation estimate + the fold's time before training
    if not size:
        return cfg, train(run_dir, model, prefixes, config=cfg, resume=resume, **kwargs)
    # time budget without an epoch count (cfg.minutes: the whole budget)
    epochs = _epochs_left_in_budget(run_dir, cfg, keep) if resume else None
    if epochs is None:  # time the first epoch, then size the run to the budget
        epochs = _timing_epoch(run_dir, model, prefixes, cfg, kwargs, progress, keep)
    cfg = cfg.with_overrides(epochs=epochs)
    # the first epoch's pace is not quite the steady one, and the machine's load may change:
    # the loop re-fits the epoch count to the time left as it goes
    return cfg, train(run_dir, model, prefixes, config=cfg, resume=True, fill_minutes=True, **kwargs)


def _timing_epoch(run_dir: Path, model, prefixes, cfg: TrainConfig, kwargs: dict, progress, keep: float) -> int:
    """Train the first epoch (its epoch count provisional: a kill now is resumed to the budget) and
    return the number of epochs that fit the budget at its pace."""
    clock = _StepClock(progress)
    started = time.monotonic()
    train(run_dir, model, prefixes, config=cfg.with_overrides(epochs=1), resume=False, final=False,
          **{**kwargs, "progress": clock})  # fmt: skip
    spent = time.monotonic() - started
    epoch, startup = clock.steady_epoch(spent, cfg.iterations_per_epoch)
    # the rest of the run pays the start-up (DataLoader workers) once more
    fit = (cfg.minutes * 60 * _BUDGET_MARGIN - keep - spent - startup) / max(epoch, 1e-3)
    epochs = min(max(1, 1 + math.floor(fit)), 10_000)
    log.info("first epoch %.1f s (start-up %.1f s): %d epoch(s) fit in %.1f min", spent, startup, epochs, cfg.minutes)
    return epochs


def _epochs_left_in_budget(run_dir: Path, cfg: TrainConfig, keep: float = 0.0) -> int | None:
    """Resuming a budget-sized run: its epochs so far plus those that fit the time left at the pace
    of the epochs its last good checkpoint recorded (None: nothing recorded, time the first epoch)."""
    folder = latest_checkpoint(run_dir / "checkpoint")
    if folder is None:
        return None
    try:
        data = read_json(folder / "state.json")
        done, spent = int(data["epoch"]), float((data.get("extra") or {}).get("seconds_trained", 0.0))
        seconds = [float(e["seconds"]) for e in data["history"] if "seconds" in e]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not seconds or done < 1:
        return None
    pace = float(np.median(seconds[-7:]))
    fit = max(0, math.floor((cfg.minutes * 60 * _BUDGET_MARGIN - keep - spent) / max(pace, 1e-3)))
    log.info("resuming a %.1f min budget after %.1f min: %d more epoch(s) fit", cfg.minutes, spent / 60, fit)
    return min(done + fit, 10_000)


class _StepClock:
    """A progress callback that remembers when each step of an epoch ended."""

    def __init__(self, forward: Callable[[Any], None] | None):
        self.forward = forward
        self.times: list[float] = []
        self.started = time.monotonic()

    @property
    def first(self) -> float | None:
        return self.times[0] if self.times else None

    @property
    def last(self) -> float | None:
        return self.times[-1] if self.times else None

    def __call__(self, info: Any) -> None:
        self.times.append(time.monotonic())
        if self.forward is not None:
            self.forward(info)

    def steady_epoch(self, spent: float, steps: int) -> tuple[float, float]:
        """(seconds of an epoch once running, seconds of start-up) from a first epoch of ``spent`` s.

        The pace of a step is the median interval between the steps of the epoch's second half:
        the first steps of a run are slower (allocator and thread-pool warm-up, DataLoader workers
        filling their queues), and a median ignores a moment of load from another process. A
        steady epoch is ``steps`` steps at that pace plus what followed the last step (checkpoint,
        patch validation); the start-up is the time to the first step less one step. With fewer
        than two recorded steps the whole epoch counts.
        """
        times = np.asarray(self.times, dtype=np.float64)
        if steps < 2 or times.size < 2 or times[-1] <= times[0]:
            return spent, 0.0
        gaps = np.diff(times)
        step = float(np.median(gaps[len(gaps) // 2 :]))
        startup = max(0.0, float(times[0]) - self.started - step)
        tail = max(0.0, spent - (float(times[-1]) - self.started))
        return max(steps * step + tail, 1e-3), startup


def _interactive_sampler(plan, conf):
    """The prompt sampler factory of an interactive plan (``plan.interactive``), else None."""
    if not plan.interactive:
        return None
    from voxseg.interactive.pipeline import PromptSamplerFactory

    return PromptSamplerFactory(dict(plan.interactive), tuple(conf.target_spacing))


def _finish_status(run_dir: Path, cfg: TrainConfig, state: TrainState) -> str:
    """A run that stopped at its time budget is complete: mark it finished (with why)."""
    record = RunRecord.read(run_dir)
    if record.status == "stopped" and cfg.minutes is not None:
        record = write_run_record(run_dir, status="finished", ended="time budget", epochs_planned=cfg.epochs)
    return record.status


def run_fold(
    ctx: WorkContext,
    fold: int,
    cfg: TrainConfig,
    *,
    meta: dict[str, Any],
    resume: bool,
    mlflow: str | None,
    progress: Callable[[Any], None] | None,
    size_to_budget: bool,
    validate: bool,
    patch_validation: int,
) -> dict[str, Any]:
    """Train, validate and summarize one fold (see :func:`voxseg.experiment.train.train_fold`)."""
    fold_started = time.monotonic()  # the fold's budget covers what comes before and after training too
    wd, plan, name = ctx.work, ctx.plan, ctx.configuration
    conf = plan.configuration(name)
    split = ctx.folds[fold]
    pre = wd.preprocessed_dir(name)
    run_dir = wd.run_dir(name, fold)
    torch.manual_seed(cfg.seed)
    model = build_network(conf.network)
    _starting_point(model, conf.network.name, cfg)
    meta = {**meta, "parameters": count_parameters(model)}
    validator = _patch_validator(plan, conf, split, pre, cfg, patch_validation)
    done_before = _validated_epochs(run_dir) if resume else None
    keep = 0.0  # seconds of the budget kept for the validation after training
    choice = None  # without a time budget: every validation case
    if cfg.minutes is not None and validate and split.val and done_before is None:
        others = [wd.run_dir(name, f) for f in range(len(ctx.folds)) if f != fold]
        choice = choose_validation(model, [str(pre / c) for c in split.val], conf.patch_size,
                                   budget_seconds=cfg.minutes * 60, device=cfg.device, other_runs=others)  # fmt: skip
        keep = choice.seconds
    tracker = _tracker(ctx, fold, cfg, meta, mlflow, resume)
    if cfg.minutes is not None:
        keep += time.monotonic() - fold_started
    status = "FAILED"
    try:
        cfg, state = _train(
            run_dir,
            model,
            [str(pre / c) for c in split.train],
            conf,
            cfg,
            ctx,
            meta,
            resume,
            progress,
            _epoch_end(validator, model, tracker),
            size_to_budget,
            keep,
        )
        run_status = _finish_status(run_dir, cfg, state)
        summary = _summary(ctx, fold, cfg, state, run_status)
        if validate and split.val and run_status == "finished":
            summary.update(
                _previous_validation(run_dir, done_before) or _timed_validation(ctx, fold, model, cfg, choice, state)
            )
        if tracker is not None:
            _track_end(tracker, state, summary, run_dir, wd)
        status = "FINISHED"
        return summary
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if tracker is not None:
            tracker.finish(status)


def _patch_validator(plan, conf, split, pre: Path, cfg: TrainConfig, patches: int) -> PatchValidator | None:
    """The per-epoch patch Dice of the fold's validation cases (None: asked off, none, or interactive)."""
    if patches <= 0 or not split.val or plan.interactive:
        return None
    return PatchValidator(
        [str(pre / c) for c in split.val],
        conf.patch_size,
        plan.class_values,
        ignore_label=plan.ignore_label,
        patches=patches,
        seed=cfg.seed,
        device=cfg.device,
    )


def _timed_validation(
    ctx: WorkContext, fold: int, model: torch.nn.Module, cfg: TrainConfig, choice: ValidationChoice | None, state
) -> dict[str, Any]:
    """:func:`_validate`, its wall time (predictor set-up and writing included) recorded in ``run.json``
    (``validation.wall_seconds``: what the next folds keep of their budget for it)."""
    if choice is not None and choice.cases == 0:
        return _skip_validation(ctx, fold, choice, state)
    started = time.monotonic()
    result = _validate(ctx, fold, model, cfg, choice)
    _update_record(ctx.work.run_dir(ctx.configuration, fold), wall_seconds=round(time.monotonic() - started, 3))
    return result


def _update_record(run_dir: Path, **validation: Any) -> None:
    write_run_record(run_dir, validation={**RunRecord.read(run_dir).validation, **validation})


def _validated_epochs(run_dir: Path) -> int | None:
    """Epochs of a finished and validated run (None: not finished or not validated)."""
    try:
        record = RunRecord.read(run_dir)
    except (OSError, ValueError):
        return None
    if record.status != "finished" or record.val_dice is None:
        return None
    return record.epoch


def _previous_validation(run_dir: Path, done_before: int | None) -> dict[str, Any] | None:
    """The validation result of a run that was already finished and validated before ``--resume``."""
    if done_before is None:
        return None
    record = RunRecord.read(run_dir)
    if record.epoch != done_before or not (run_dir / "validation" / "metrics.json").is_file():
        return None
    log.info("%s: finished and validated already", run_dir)
    return {"val_dice": record.val_dice, "per_class": dict(record.val_dice_per_class)}


def _summary(ctx: WorkContext, fold: int, cfg: TrainConfig, state: TrainState, status: str) -> dict[str, Any]:
    hist = state.history
    seconds = [e["seconds"] for e in hist if "seconds" in e]
    return {
        "fold": fold,
        "configuration": ctx.configuration,
        "run_dir": str(ctx.work.run_dir(ctx.configuration, fold)),
        "status": status,
        "epochs": state.epoch,
        "steps": state.step,
        "loss": hist[-1]["loss"] if hist else None,
        "seconds_per_iteration": (sum(seconds) / len(seconds) / cfg.iterations_per_epoch) if seconds else None,
        "val_dice": None,
        "per_class": {},
    }


def _skip_validation(ctx: WorkContext, fold: int, choice: ValidationChoice, state) -> dict[str, Any]:
    """No validation case fits the budget's share: ``val_dice`` is the last per-epoch patch estimate."""
    patch_dice = next((e["val_dice"] for e in reversed(state.history) if e.get("val_dice") is not None), None)
    run_dir = ctx.work.run_dir(ctx.configuration, fold)
    record = {"cases": [], "of": choice.total, "subsampled": choice.subsampled, "val_dice_from": "patches"}
    write_run_record(run_dir, val_dice=patch_dice, val_dice_per_class={}, validation=record)
    return {"val_dice": patch_dice, "per_class": {}}


def _validate(
    ctx: WorkContext, fold: int, model: torch.nn.Module, cfg: TrainConfig, choice: ValidationChoice | None = None
) -> dict[str, Any]:
    wd, name = ctx.work, ctx.configuration
    if ctx.plan.interactive:
        return _validate_interactive(ctx, fold, model, cfg)
    val = list(ctx.folds[fold].val)
    cases = val if choice is None else val[: choice.cases]
    report = validate_cases(
        model,
        ctx.plan,
        ctx.dataset,
        cases,
        wd.validation_dir(name, fold),
        configuration=name,
        device=cfg.device,
        overlap=0.5 if choice is None else choice.overlap,
    )
    per_class = {k: v["dice"]["mean"] for k, v in report["summary"]["per_class"].items()}
    run_dir = wd.run_dir(name, fold)
    validation = {
        "metrics": str(wd.validation_dir(name, fold) / "metrics.json"),
        "seconds": report["seconds"],
        "tiles": report["tiles"],
        "overlap": report["overlap"],
        "cases": cases,
        "of": len(val),
        "subsampled": None if choice is None else choice.subsampled,
    }
    write_run_record(run_dir, val_dice=report["mean_dice"], val_dice_per_class=per_class, validation=validation)
    return {"val_dice": report["mean_dice"], "per_class": per_class}


def _validate_interactive(ctx: WorkContext, fold: int, model: torch.nn.Module, cfg: TrainConfig) -> dict[str, Any]:
    """Dice from six simulated points per validation case (see :mod:`voxseg.interactive.evaluate`)."""
    from voxseg.inference.predictor import Predictor
    from voxseg.interactive.evaluate import validate_interactive

    wd, name = ctx.work, ctx.configuration
    predictor = Predictor([model], ctx.plan, configuration=name, device=cfg.device, tta=False)
    out = wd.validation_dir(name, fold)
    report = validate_interactive(predictor, ctx.dataset, ctx.folds[fold].val, out, seed=cfg.seed)
    run_dir = wd.run_dir(name, fold)
    validation = {"metrics": str(out / "metrics.json"), "seconds": report["seconds"], "prompt": "six points"}
    write_run_record(run_dir, val_dice=report["mean_dice"], validation=validation)
    return {"val_dice": report["mean_dice"], "per_class": {}}


def _track_end(tracker: MlflowTracker, state: TrainState, summary: Mapping[str, Any], run_dir: Path, wd) -> None:
    tracker.log_history(state.history)
    final = {"final_val_dice": summary.get("val_dice")}
    final.update({f"final_val_dice_class_{k}": v for k, v in (summary.get("per_class") or {}).items()})
    if summary.get("seconds_per_iteration") is not None:
        final["seconds_per_iteration"] = summary["seconds_per_iteration"]
    tracker.log_metrics({k: v for k, v in final.items() if v is not None}, step=state.epoch)
    for path in (run_dir / "run.json", run_dir / "progress.png", run_dir / "validation" / "metrics.json"):
        tracker.log_artifact(path)
    if wd.snapshots_dir.is_dir():
        tracker.log_artifact(wd.snapshots_dir, folder="snapshots")
