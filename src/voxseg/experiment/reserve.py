"""How much of a fold's time budget to keep for its full-volume validation after training.

Estimated before training from the validation cases' sliding-window tile count and one timed
forward pass of the network, or, when another fold of the work folder recorded how long its
validation took, from that (per case). Either way with a margin: the budget holds both ways
only if what follows training is budgeted too.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from voxseg.inference.tiling import tile_grid
from voxseg.io.safe_json import read_json
from voxseg.training.sampling import load_cases

__all__ = ["validation_reserve"]

log = logging.getLogger(__name__)
_MARGIN = 1.3  # the estimate's margin
_PER_CASE = 0.5  # seconds per case for reading, resampling back and writing


def _tiles(shape: Sequence[int], patch: Sequence[int]) -> int:
    """Sliding-window tiles (overlap 0.5) over ``shape``; a 2D patch over a 3D volume tiles each slice."""
    lead = len(shape) - len(patch)
    return math.prod(shape[:lead]) * math.prod(len(s) for s in tile_grid(shape[lead:], patch, 0.5))


def _measured(run_dirs: Sequence[Path]) -> float | None:
    """Seconds per validation case that other folds recorded (the slowest), or None."""
    paces = []
    for folder in run_dirs:
        try:
            data = read_json(folder / "run.json")
            record = data["validation"]
            seconds = float(record.get("wall_seconds", record["seconds"]))
            cases = len(data["val_cases"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if cases:
            paces.append(seconds / cases)
    return max(paces) if paces else None


def _forward_seconds(model: torch.nn.Module, channels: int, patch: Sequence[int], device: str) -> float:
    was_training = model.training
    model.eval()
    x = torch.zeros((1, channels, *patch), device=device)
    try:
        with torch.inference_mode():
            started = time.perf_counter()
            model(x)
            return time.perf_counter() - started
    finally:
        model.train(was_training)


def validation_reserve(
    model: torch.nn.Module,
    val_prefixes: Sequence[str],
    patch_size: Sequence[int],
    *,
    device: str = "cpu",
    other_runs: Sequence[Path] = (),
) -> float:
    """Seconds to keep for validating ``val_prefixes`` (preprocessed cases) after training."""
    if not val_prefixes:
        return 0.0
    per_case = _measured(other_runs)
    if per_case is not None:
        seconds = per_case * len(val_prefixes) * _MARGIN
        log.info("keeping %.1f s of the budget for validation (as other folds took)", seconds)
        return seconds
    cases = load_cases(val_prefixes)
    tiles = sum(_tiles(c.data.shape[1:], patch_size) for c in cases)
    forward = _forward_seconds(model.to(device), cases[0].data.shape[0], patch_size, device)
    seconds = (tiles * forward + _PER_CASE * len(cases)) * _MARGIN
    log.info("keeping %.1f s of the budget for validation (%d tiles at %.2f s)", seconds, tiles, forward)
    return seconds
