"""The training loop: seeded patch batches (optionally in DataLoader workers), checkpoint every
epoch, exact resume, time budget, progress callback. Validation on full volumes is the k-fold
runner's job (it uses the inference engine's sliding window)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from voxseg.augment import build_augmentation
from voxseg.distributed.ddp import DataParallel
from voxseg.errors import ConfigError
from voxseg.io import write_json_atomic
from voxseg.training.checkpoint import TrainState, has_checkpoint, load_checkpoint, save_checkpoint
from voxseg.training.config import TrainConfig
from voxseg.training.losses import DeepSupervisionLoss, build_loss
from voxseg.training.report import plot_history
from voxseg.training.sampling import PatchSampler, load_cases

__all__ = ["train", "StepInfo"]

log = logging.getLogger(__name__)


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
    ):
        super().__init__()
        self.prefixes, self.patch_size, self.config = list(prefixes), tuple(patch_size), config
        self.ignore_label, self.start_epoch = ignore_label, start_epoch
        self.make_sampler = make_sampler

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
        augment = build_augmentation(cfg.augmentation, len(self.patch_size), prompt_channels=prompts)
        n = cfg.iterations_per_epoch
        for epoch in range(self.start_epoch, cfg.epochs):
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


def _check_resume(run_dir: Path, cfg: TrainConfig) -> None:
    path = run_dir / "run.json"
    if not path.exists():
        return
    old = json.loads(path.read_text(encoding="utf-8")).get("config", {})
    now = cfg.to_json()
    changed = sorted(k for k in now if k not in ("epochs", "minutes", "num_workers") and old.get(k) != now[k])
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


def _write_run(run_dir: Path, cfg: TrainConfig, state: TrainState, meta: dict, status: str) -> None:
    write_json_atomic(
        run_dir / "run.json",
        {
            "schema_version": 1,
            "status": status,
            "config": cfg.to_json(),
            "epoch": state.epoch,
            "step": state.step,
            "history": state.history,
            **meta,
        },
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
        :mod:`voxseg.distributed.ddp`): each rank trains on its slice of every batch, rank 0 writes.
    sampler
        Batch-source hook: ``sampler(cases, patch_size, ignore_label=...)`` returns an object with
        ``batch(rng, batch_size) -> (images, targets)`` (default: a foreground-oversampling
        :class:`~voxseg.training.sampling.PatchSampler`); picklable when ``num_workers > 0``.
    """
    run_dir = Path(run_dir)
    cfg = config
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
    state = TrainState()
    if resume and has_checkpoint(ckpt):
        _check_resume(run_dir, cfg)
        state = load_checkpoint(ckpt, model, optimizer, scheduler=scheduler)
        log.info("resuming %s at epoch %d", run_dir, state.epoch)
    elif resume:
        log.warning("%s: no checkpoint to resume from; starting from scratch", run_dir)
    elif has_checkpoint(ckpt):
        raise ConfigError(f"{run_dir}: holds a training run already; pass --resume to continue it or use a new folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    if state.epoch >= cfg.epochs:
        return state
    loss_fn = build_loss(cfg.loss, ignore_label=ignore_label)
    net = model if par is None else par.wrap(model)
    loss_fn = loss_fn if par is None else par.adapt_loss(loss_fn)
    ds_loss = DeepSupervisionLoss(loss_fn, [0.5**k for k in range(8)])
    stream = _BatchStream(train_cases, patch_size, cfg, ignore_label, state.epoch, sampler)
    loader = DataLoader(
        stream,
        batch_size=None,
        num_workers=cfg.num_workers,
        multiprocessing_context="spawn" if cfg.num_workers else None,
    )
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if cfg.precision == "bf16" else contextlib.nullcontext()
    )
    started = time.monotonic()
    batches = iter(loader)
    meta = meta or {}
    while state.epoch < cfg.epochs:
        model.train()
        losses, t0 = [], time.monotonic()
        for i in range(cfg.iterations_per_epoch):
            x, y = next(batches)
            x, y = (x, y) if par is None else par.shard(x, y)
            x, y = x.to(device), y.to(device)
            with autocast:
                out = net(x)
            loss = _loss_of(out if not torch.is_tensor(out) else out.float(), y, loss_fn, ds_loss)
            value = float(loss.detach()) if par is None else par.mean(loss)
            if not math.isfinite(value):
                raise ConfigError(f"loss became {value} at epoch {state.epoch}, step {i}: lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)
            optimizer.step()
            state.step += 1
            losses.append(value)
            if progress is not None:
                progress(
                    StepInfo(
                        state.epoch,
                        i + 1,
                        cfg.iterations_per_epoch,
                        cfg.epochs,
                        losses[-1],
                        (time.monotonic() - t0) / (i + 1),
                    )
                )
        entry = {
            "epoch": state.epoch,
            "loss": float(np.mean(losses)),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.monotonic() - t0, 3),
        }
        scheduler.step()
        state.epoch += 1
        if epoch_end is not None:
            entry.update(epoch_end(state.epoch, state) or {})
        state.history.append(entry)
        if writes:
            save_checkpoint(ckpt, model, optimizer, state, scheduler=scheduler)
            _write_run(run_dir, cfg, state, meta, "running")
        log.info("epoch %d/%d loss %.4f (%.1f s)", state.epoch, cfg.epochs, entry["loss"], entry["seconds"])
        out_of_time = cfg.minutes is not None and (time.monotonic() - started) / 60 >= cfg.minutes
        if cfg.minutes is not None and par is not None:
            out_of_time = par.agree(out_of_time)  # rank 0's clock decides for all
        if out_of_time:
            log.info("time budget of %.1f min reached after epoch %d", cfg.minutes, state.epoch)
            break
    if writes:
        _write_run(run_dir, cfg, state, meta, "finished" if state.epoch >= cfg.epochs else "stopped")
    if par is not None:
        par.barrier()  # the other ranks return once run.json is written
    return state
