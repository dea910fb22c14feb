"""The training loop: seeded patch batches (optionally in DataLoader workers), checkpoint every
epoch, exact resume, time budget, progress callback. Validation on full volumes is the k-fold
runner's job (it uses the inference engine's sliding window)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from voxseg._procs import parent_watch
from voxseg.augment import build_augmentation
from voxseg.errors import ConfigError
from voxseg.io.pictures import plot_history
from voxseg.training.budget import Budget, format_seconds
from voxseg.training.checkpoint import (
    TrainState,
    has_checkpoint,
    load_checkpoint,
    recover_checkpoint,
    save_checkpoint,
)
from voxseg.training.config import TrainConfig
from voxseg.training.losses import DeepSupervisionLoss, build_loss
from voxseg.training.parallel import DataParallel
from voxseg.training.sampling import PatchSampler, load_cases
from voxseg.workdir.run_record import RunRecord, write_run_record

__all__ = ["train", "StepInfo"]

log = logging.getLogger(__name__)
progress_log = logging.getLogger("voxseg.training.progress")


@dataclass(frozen=True)
class StepInfo:
    """What the progress callback receives after each step."""

    epoch: int
    iteration: int
    iterations: int
    epochs: int
    loss: float
    seconds_per_iteration: float


class _BatchStream(IterableDataset):
    """Batches for epochs ``[start, epochs)``; step ``i`` of epoch ``e`` uses ``rng([seed, e, i])``."""

    def __init__(
        self,
        prefixes: Sequence[str],
        patch_size: Sequence[int],
        config: TrainConfig,
        ignore_label: int | None,
        start_epoch: int,
        make_sampler: Callable | None = None,
        endless: bool = False,
        mirror_axes: Sequence[int] | None = None,
    ):
        super().__init__()
        self.mirror_axes = None if mirror_axes is None else tuple(int(a) for a in mirror_axes)
        self.prefixes, self.patch_size, self.config = list(prefixes), tuple(patch_size), config
        self.ignore_label, self.start_epoch = ignore_label, start_epoch
        self.make_sampler = make_sampler
        self.endless = endless  # the training loop decides when to stop (its epoch count may change)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        torch.set_num_threads(1) if info is not None else None
        cfg = self.config
        if self.make_sampler is not None:  # e.g. interactive models: fresh simulated prompts per draw
            sampler = self.make_sampler(load_cases(self.prefixes), self.patch_size, ignore_label=self.ignore_label)
        else:
            sampler = PatchSampler(
                load_cases(self.prefixes),
                self.patch_size,
                oversample_foreground=cfg.oversample_foreground,
                ignore_label=self.ignore_label,
            )
        prompts = int(getattr(sampler, "prompt_channels", 0))  # interactive: spatial transforms only
        augment = build_augmentation(
            cfg.augmentation, len(self.patch_size), mirror_axes=self.mirror_axes, prompt_channels=prompts
        )
        n = cfg.iterations_per_epoch
        for epoch in itertools.count(self.start_epoch) if self.endless else range(self.start_epoch, cfg.epochs):
            for i in range(n):
                if (epoch * n + i) % n_workers != worker:
                    continue
                rng = np.random.default_rng([cfg.seed, epoch, i])
                img, seg = sampler.batch(rng, cfg.batch_size)
                yield augment(img, seg, rng)


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay
        )
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _lr_factor(cfg: TrainConfig) -> Callable[[int], float]:
    if cfg.lr_schedule == "poly":
        return lambda e: (1 - min(e, cfg.epochs - 1) / cfg.epochs) ** 0.9
    if cfg.lr_schedule == "cosine":
        return lambda e: 0.5 * (1 + math.cos(math.pi * min(e, cfg.epochs) / cfg.epochs))
    return lambda e: 1.0


def _warm_up(cfg: TrainConfig, step: int, optimizer, scheduler) -> None:
    """Scale the scheduled learning rate by ``(step + 1) / warmup_steps`` for the first steps (a
    function of the step alone: a resumed run continues the same ramp)."""
    if cfg.warmup_steps <= 0 or step > cfg.warmup_steps:
        return
    scale = min(1.0, (step + 1) / cfg.warmup_steps)
    for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr(), strict=True):
        group["lr"] = lr * scale


def _refit_epochs(
    cfg: TrainConfig, epoch: int, budget: Budget, scheduler: torch.optim.lr_scheduler.LambdaLR
) -> TrainConfig:
    """``cfg`` with the epoch count that fills the time left at the recent pace (see ``fill_minutes``).

    The pace is the moving average of the recent steps' wall time (:class:`Budget`), not the
    first epoch's. Unchanged when within 2 % (at least one epoch) of the current count.
    """
    fit = budget.epochs_that_fit(epoch, cfg.iterations_per_epoch)
    if fit is None or abs(fit - cfg.epochs) < max(1, 0.02 * cfg.epochs):
        return cfg
    log.info("time budget: %d epochs fit at %.2f s a step (planned %d)", fit, budget.step_pace, cfg.epochs)
    cfg = cfg.with_overrides(epochs=fit)
    scheduler.lr_lambdas[0] = _lr_factor(cfg)
    return cfg


def _check_resume(run_dir: Path, cfg: TrainConfig) -> None:
    path = run_dir / "run.json"
    if not path.exists():
        return
    old = RunRecord.read(run_dir).config
    now, default = cfg.to_json(), TrainConfig().to_json()  # a key a run predates had its default
    skip = ("epochs", "minutes", "num_workers")
    changed = sorted(k for k in now if k not in skip and old.get(k, default[k]) != now[k])
    if changed:
        raise ConfigError(
            f"{path}: cannot resume with different settings ({', '.join(changed)}); "
            "use the original settings or a new output folder"
        )


def _loss_of(model_out: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor, loss_fn, ds_loss) -> torch.Tensor:
    if isinstance(model_out, (list, tuple)):
        return ds_loss(model_out, target)
    if model_out.ndim == target.ndim + 1:  # MONAI DynUNet deep supervision: (B, heads, K, ...)
        return ds_loss(list(torch.unbind(model_out, dim=1)), target)
    return loss_fn(model_out, target)


def _step(batch, net, model, optimizer, losses, device, autocast, par, state: TrainState) -> float:
    """One optimizer step on ``batch``; returns its loss."""
    loss_fn, ds_loss = losses
    x, y = batch if par is None else par.shard(*batch)
    x, y = x.to(device), y.to(device)
    with autocast:
        out = net(x)
    loss = _loss_of(out if not torch.is_tensor(out) else out.float(), y, loss_fn, ds_loss)
    value = float(loss.detach()) if par is None else par.mean(loss)
    if not math.isfinite(value):
        raise ConfigError(f"loss became {value} at epoch {state.epoch}, step {state.step}: lower the learning rate")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)
    optimizer.step()
    return value


def _out_of_time(cfg: TrainConfig, seconds: float) -> bool:
    return cfg.minutes is not None and seconds / 60 >= cfg.minutes


def _budget_spent(cfg: TrainConfig, state: TrainState) -> bool:
    """Whether the run stopped at this time budget already (it stops a little before it is spent)."""
    spent = state.extra.get("budget_spent")
    return cfg.minutes is not None and isinstance(spent, (int, float)) and cfg.minutes <= spent


def _epoch_line(cfg: TrainConfig, entry: dict, budget: Budget, meta: dict) -> None:
    """One plain line per epoch on ``voxseg.training.progress`` (the CLI shows it when not on a tty)."""
    fold = f"fold {meta['fold']} " if "fold" in meta else ""
    dice = f" val Dice {entry['val_dice']:.4f}" if entry.get("val_dice") is not None else ""
    partial = f" (stopped after {entry['iterations']} steps)" if "iterations" in entry else ""
    left = budget.left()
    left_text = f", {format_seconds(max(0.0, left))} left" if math.isfinite(left) else ""
    progress_log.info(
        "%sepoch %d/%d loss %.4f%s%s, %s elapsed%s",
        fold, entry["epoch"] + 1, cfg.epochs, entry["loss"], dice, partial,
        format_seconds(budget.elapsed()), left_text,
    )  # fmt: skip


def _close_run(run_dir: Path, cfg: TrainConfig, state: TrainState, meta: dict) -> None:
    """Resumed with nothing left to train: record the end unless run.json says so already (a kill
    between the last checkpoint and the last run.json write leaves it ``running``)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if RunRecord.read(run_dir).status == "finished":
            return
    _write_run(run_dir, cfg, state, meta, "finished" if state.epoch >= cfg.epochs else "stopped")


def _write_run(run_dir: Path, cfg: TrainConfig, state: TrainState, meta: dict, status: str) -> None:
    write_run_record(
        run_dir,
        replace=True,  # the loop's record starts the file: a resumed run's old validation is stale
        status=status,
        config=cfg.to_json(),
        epoch=state.epoch,
        step=state.step,
        seconds_trained=state.extra.get("seconds_trained", 0.0),
        history=state.history,
        **meta,
    )
    plot_history(state.history, run_dir / "progress.png")


def train(
    run_dir: str | Path,
    model: torch.nn.Module,
    train_cases: Sequence[str],
    *,
    patch_size: Sequence[int],
    config: TrainConfig = TrainConfig(),
    ignore_label: int | None = None,
    resume: bool = False,
    meta: dict | None = None,
    progress: Callable[[StepInfo], None] | None = None,
    epoch_end: Callable[[int, TrainState], dict | None] | None = None,
    distributed: DataParallel | None = None,
    sampler: Callable | None = None,
    fill_minutes: bool = False,
    final: bool = True,
    reserve: Callable[[], float] | None = None,
    mirror_axes: Sequence[int] | None = None,
) -> TrainState:
    """Train ``model`` on preprocessed cases; checkpoint into ``run_dir`` every epoch.

    Parameters
    ----------
    train_cases
        Preprocessed case prefixes (``PREPROCESSED_DIR/CASE``).
    resume
        Continue from ``run_dir/checkpoint`` (same settings required; ``epochs`` may grow).
    meta
        Extra JSON written into ``run.json`` (plan, fold, dataset...).
    epoch_end
        Called after each epoch; may return metrics to add to that epoch's history entry.
    distributed
        Data-parallel context (default: the initialized ``torch.distributed`` group, if any; see
        :mod:`voxseg.training.parallel`): each rank trains on its slice of every batch, rank 0 writes.
    sampler
        Batch-source hook: ``sampler(cases, patch_size, ignore_label=...)`` returns an object with
        ``batch(rng, batch_size) -> (images, targets)`` (default: a foreground-oversampling
        :class:`~voxseg.training.sampling.PatchSampler`); picklable when ``num_workers > 0``.
    fill_minutes
        With ``config.minutes``: re-fit the epoch count to the time left after every epoch (a
        moving average of the recent steps' wall time), so that the run ends, its learning rate
        decayed, at its time budget even when the first epoch's pace was not the steady one or the
        machine's load changes. The LR schedule follows the new count. Single-process only.
        ``config.minutes`` is the whole budget: the time trained by the runs this one resumes
        (``seconds_trained`` in the checkpoint and ``run.json``) counts against it. Whether or not
        this is set, a single-process run with ``config.minutes`` checks its budget after every
        step and, out of time, ends the epoch early (history entry ``iterations``: the steps
        done), saves its checkpoint and stops.
    final
        False: the epoch count is provisional (the timing epoch of a budget-sized run), so reaching
        it leaves ``run.json`` status ``running``, never ``finished``.
    reserve
        Seconds of the budget to keep for after training (e.g. validation), asked at every check.
    mirror_axes
        Axes the augmentation may flip (None: every axis); the plan's ``mirror_axes``, which leave
        out axes whose flip swaps classes (:mod:`voxseg.fingerprint.symmetry`).
    """
    run_dir = Path(run_dir)
    cfg = config
    budget = Budget(cfg.minutes, steps_per_epoch=cfg.iterations_per_epoch, reserve=reserve)  # the clock starts
    par = distributed if distributed is not None else DataParallel.current()
    if par is not None:
        par.check(cfg.batch_size)
        meta = {**(meta or {}), "processes": par.world_size}
    writes = par is None or par.is_main
    ckpt = run_dir / "checkpoint"
    device = torch.device(cfg.device)
    model = model.to(device)
    optimizer = _optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(cfg))
    state = _start_state(run_dir, cfg, model, optimizer, scheduler, resume=resume, writes=writes)
    trained = float(state.extra.get("seconds_trained", 0.0))  # by the runs this one resumes
    budget.trained = trained
    if state.epoch >= cfg.epochs or _out_of_time(cfg, trained) or _budget_spent(cfg, state):
        if writes and resume and final:
            _close_run(run_dir, cfg, state, meta or {})
        return state
    run_step = _stepper(cfg, model, optimizer, par, device, state, ignore_label)
    fill = bool(fill_minutes and cfg.minutes is not None and par is None)
    stream = _BatchStream(
        train_cases, patch_size, cfg, ignore_label, state.epoch, sampler, endless=fill, mirror_axes=mirror_axes
    )
    batches = iter(_loader(stream, cfg))
    per_step = cfg.minutes is not None and par is None  # data-parallel ranks agree once an epoch
    meta = meta or {}
    while state.epoch < cfg.epochs:
        model.train()
        t0 = time.monotonic()
        losses = _epoch_steps(cfg, state, batches, run_step, (optimizer, scheduler), budget, progress, per_step)
        tail_start = time.monotonic()
        entry = _epoch_entry(state, losses, optimizer, tail_start - t0, cfg.iterations_per_epoch)
        _close_epoch(state, entry, scheduler, epoch_end, budget)
        # out of time: stopped mid-epoch, or no step and epoch end fit any more (data-parallel: below)
        out_of_time = "iterations" in entry or (per_step and budget.stop_now())
        if out_of_time:
            state.extra["budget_spent"] = cfg.minutes  # a resume with this budget has nothing left to do
        if writes:
            save_checkpoint(ckpt, model, optimizer, state, scheduler=scheduler)
            _write_run(run_dir, cfg, state, meta, "running")
        budget.epoch_done(time.monotonic() - tail_start)
        _epoch_line(cfg, entry, budget, meta)
        if cfg.minutes is not None and par is not None:
            out_of_time = par.agree(_out_of_time(cfg, budget.elapsed()))  # rank 0's clock decides for all
        if out_of_time:
            log.info("time budget of %.2f min reached after epoch %d", cfg.minutes, state.epoch)
            break
        if fill:
            cfg = _refit_epochs(cfg, state.epoch, budget, scheduler)
    if writes:
        done = "finished" if final else "running"
        _write_run(run_dir, cfg, state, meta, done if state.epoch >= cfg.epochs else "stopped")
    if par is not None:
        par.barrier()  # the other ranks return once run.json is written
    return state


def _start_state(run_dir: Path, cfg: TrainConfig, model, optimizer, scheduler, *, resume: bool, writes: bool):
    """The state to train from: a resumed checkpoint's, or a fresh one (refusing to overwrite a run)."""
    ckpt = run_dir / "checkpoint"
    state = TrainState()
    if writes:
        recover_checkpoint(ckpt)  # a kill inside a checkpoint write left the last good one aside
    if resume and has_checkpoint(ckpt):
        _check_resume(run_dir, cfg)
        state = load_checkpoint(ckpt, model, optimizer, scheduler=scheduler)
        log.info("resuming %s at epoch %d", run_dir, state.epoch)
    elif resume:
        log.warning("%s: no checkpoint to resume from; starting from scratch", run_dir)
    elif has_checkpoint(ckpt):
        raise ConfigError(f"{run_dir}: holds a training run already; pass --resume to continue it or use a new folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    return state


def _loader(stream: IterableDataset, cfg: TrainConfig) -> DataLoader:
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=cfg.num_workers,
        multiprocessing_context="spawn" if cfg.num_workers else None,
        worker_init_fn=parent_watch() if cfg.num_workers else None,  # workers die with this process
    )


def _epoch_steps(cfg: TrainConfig, state, batches, run_step, schedule, budget: Budget, progress, per_step: bool):
    """One epoch's steps (fewer when a per-step budget check says time is up); their losses."""
    optimizer, scheduler = schedule
    losses: list[float] = []
    t0 = time.monotonic()
    for i in range(cfg.iterations_per_epoch):
        _warm_up(cfg, state.step, optimizer, scheduler)
        losses.append(run_step(next(batches)))
        state.step += 1
        budget.step_done()
        if progress is not None:
            progress(StepInfo(state.epoch, i + 1, cfg.iterations_per_epoch, cfg.epochs, losses[-1],
                              (time.monotonic() - t0) / (i + 1)))  # fmt: skip
        if per_step and i + 1 < cfg.iterations_per_epoch and budget.stop_now():
            break  # out of time mid-epoch: end it here (checkpoint, validation) within budget
    return losses


def _epoch_entry(state, losses: list[float], optimizer, seconds: float, planned: int) -> dict:
    """The epoch's history entry (``iterations`` when it was cut short)."""
    entry = {
        "epoch": state.epoch,
        "loss": float(np.mean(losses)),
        "lr": optimizer.param_groups[0]["lr"],
        "seconds": round(seconds, 3),
    }
    if len(losses) < planned:
        entry["iterations"] = len(losses)
    return entry


def _stepper(cfg: TrainConfig, model, optimizer, par, device, state, ignore_label):
    """One training step on a batch (loss with deep supervision, data-parallel when ``par``): its loss."""
    loss_fn = build_loss(cfg.loss, ignore_label=ignore_label)
    net = model if par is None else par.wrap(model)
    loss_fn = loss_fn if par is None else par.adapt_loss(loss_fn)
    losses = (loss_fn, DeepSupervisionLoss(loss_fn, [0.5**k for k in range(8)]))
    bf16 = cfg.precision == "bf16"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    return lambda batch: _step(batch, net, model, optimizer, losses, device, autocast, par, state)


def _close_epoch(state, entry: dict, scheduler, epoch_end, budget: Budget) -> None:
    """The epoch is done: the schedule steps, the epoch-end results join its history entry."""
    scheduler.step()
    state.epoch += 1
    if epoch_end is not None:
        entry.update(epoch_end(state.epoch, state) or {})
    state.history.append(entry)
    state.extra["seconds_trained"] = round(budget.elapsed(), 3)
