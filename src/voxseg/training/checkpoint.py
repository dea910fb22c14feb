"""Checkpoints without pickles: tensors in safetensors, everything else in JSON.

A checkpoint folder holds ``model.safetensors``, ``optimizer.safetensors`` (the optimizer's
tensors), ``rng.safetensors`` (torch RNG state) and ``state.json`` (epoch, step, optimizer
hyper-parameters, numpy/python RNG states, history, and the sha256 of the three tensor files).
``state.json`` is written last: a checkpoint without it, or whose hashes do not match, is
incomplete and is never resumed from.

A checkpoint is replaced atomically, so that the last good one always survives a kill: the new
one is written into ``checkpoint.tmp-PID/`` beside the old, then the old folder is renamed
``checkpoint.old-PID/``, the new one ``checkpoint/``, and the old one is deleted. A kill between the
two renames leaves no ``checkpoint/`` but two complete siblings: readers take the newest complete
one, and the next writer (:func:`recover_checkpoint`) puts it back in place and deletes the
leftovers of interrupted writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from voxseg.errors import VoxsegError
from voxseg.io.safe_json import read_json

__all__ = [
    "TrainState",
    "save_checkpoint",
    "load_checkpoint",
    "has_checkpoint",
    "latest_checkpoint",
    "recover_checkpoint",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors")


@dataclass
class TrainState:
    """Progress of a training run (JSON-serializable)."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps completed
    best_metric: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))
    _fsync(path)


def _fsync(path: Path) -> None:
    """Flush a file (or, where the OS allows it, a folder) to disk."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # folders cannot be opened on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _siblings(folder: Path) -> list[Path]:
    """Leftovers of checkpoint writes beside ``folder`` (``NAME.tmp-PID``, ``NAME.old-PID``)."""
    if not folder.parent.is_dir():
        return []
    return [p for p in folder.parent.glob(f"{folder.name}.*-*") if p.name.split(".")[-1].startswith(("tmp-", "old-"))]


def _epoch_of(folder: Path) -> int | None:
    """The epoch of a complete checkpoint folder; None when it is incomplete."""
    try:
        return int(read_json(folder / "state.json")["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def latest_checkpoint(folder: str | Path) -> Path | None:
    """``folder`` when it holds a complete checkpoint, else the newest complete one an interrupted
    replacement left beside it (see the module docstring), else None."""
    folder = Path(folder)
    if _epoch_of(folder) is not None:
        return folder
    found = [(epoch, p) for p in _siblings(folder) if (epoch := _epoch_of(p)) is not None]
    return max(found)[1] if found else None


def recover_checkpoint(folder: str | Path) -> bool:
    """After an interrupted write, put the newest complete checkpoint back at ``folder`` and delete
    the leftovers. Only for the process that writes the checkpoints; True if one is complete."""
    folder = Path(folder)
    best = latest_checkpoint(folder)
    if best is not None and best != folder:
        log.warning("%s: an interrupted checkpoint write left it aside; restored from %s", folder, best.name)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(best, folder)
        _fsync(folder.parent)
    for leftover in _siblings(folder):
        shutil.rmtree(leftover, ignore_errors=True)
    return best is not None


def _split_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for idx, entries in sd["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{name}"] = value
            else:
                plain.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "plain_state": plain}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    for idx, entries in meta["plain_state"].items():
        state.setdefault(int(idx), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    folder: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    *,
    np_rng: np.random.Generator | None = None,
    scheduler: Any = None,
) -> Path:
    """Write a complete checkpoint of model, optimizer, RNGs and ``state`` into ``folder``."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    recover_checkpoint(folder)
    new = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    new.mkdir()
    _save_tensors(model.state_dict(), new / "model.safetensors")
    opt_tensors, opt_meta = _split_optimizer(optimizer)
    _save_tensors(opt_tensors, new / "optimizer.safetensors")
    _save_tensors({"torch": torch.get_rng_state()}, new / "rng.safetensors")
    data = {
        "schema_version": SCHEMA_VERSION,
        "epoch": state.epoch,
        "step": state.step,
        "best_metric": state.best_metric,
        "history": state.history,
        "extra": state.extra,
        "optimizer": opt_meta,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "numpy_rng": np_rng.bit_generator.state if np_rng is not None else None,
        "sha256": {name: _sha256(new / name) for name in _FILES},
    }
    (new / "state.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    _fsync(new / "state.json")
    _fsync(new)
    old = folder.with_name(f"{folder.name}.old-{os.getpid()}")
    if folder.exists():
        os.replace(folder, old)
    os.replace(new, folder)  # from here on the new checkpoint is the one
    _fsync(folder.parent)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def has_checkpoint(folder: str | Path) -> bool:
    """Whether ``folder`` (or what an interrupted replacement left beside it) holds a complete checkpoint."""
    return latest_checkpoint(folder) is not None


def load_checkpoint(
    folder: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    np_rng: np.random.Generator | None = None,
    scheduler: Any = None,
) -> TrainState:
    """Restore model (and optimizer, RNGs, scheduler) from ``folder``; return the TrainState.

    Raises
    ------
    VoxsegError
        The checkpoint is incomplete or a file does not match its recorded sha256.
    """
    folder = latest_checkpoint(folder) or Path(folder)
    if not (folder / "state.json").is_file():
        raise VoxsegError(f"{folder}: no complete checkpoint (state.json missing); start without --resume")
    data = read_json(folder / "state.json")
    for name, digest in data["sha256"].items():
        if _sha256(folder / name) != digest:
            raise VoxsegError(f"{folder / name}: checksum mismatch, the checkpoint is corrupt (delete it to restart)")
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    if optimizer is not None:
        optimizer.load_state_dict(_join_optimizer(load_file(str(folder / "optimizer.safetensors")), data["optimizer"]))
    if scheduler is not None and data.get("scheduler") is not None:
        scheduler.load_state_dict(data["scheduler"])
    torch.set_rng_state(load_file(str(folder / "rng.safetensors"))["torch"])
    if np_rng is not None and data.get("numpy_rng") is not None:
        np_rng.bit_generator.state = data["numpy_rng"]
    return TrainState(data["epoch"], data["step"], data["best_metric"], data["history"], data["extra"])
