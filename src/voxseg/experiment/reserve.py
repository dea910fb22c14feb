"""How much of a fold's time budget to keep for its full-volume validation after training.

Estimated before training from the validation cases' sliding-window tile count and one timed
forward pass of the network, or, when another fold of the work folder recorded how long its
validation took, from that (per case). Either way with a margin: the budget holds both ways
only if what follows training is budgeted too.

The validation may take at most :data:`VALIDATION_SHARE` of a time budget
(:func:`choose_validation`): when all cases at the usual overlap would take longer, fewer cases
are predicted, then at a smaller overlap (fewer tiles), and when not even one case fits, the
full-volume validation is skipped (the per-epoch patch Dice stands in). What was left out is
logged and recorded in ``run.json`` (``validation.subsampled``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from voxseg.inference.tiling import tile_grid
from voxseg.io.safe_json import read_json
from voxseg.training.sampling import load_cases

__all__ = ["choose_validation", "ValidationChoice", "VALIDATION_SHARE"]

log = logging.getLogger(__name__)
_MARGIN = 1.3  # the estimate's margin
_PER_CASE = 0.5  # seconds per case for reading, resampling back and writing

#: Largest fraction of a time budget the full-volume validation after training may take.
VALIDATION_SHARE = 0.10

#: Sliding-window overlaps tried, in order, when the validation must be cut (0.5: ``voxseg predict``'s).
VALIDATION_OVERLAPS = (0.5, 0.25, 0.0)


def _tiles(shape: Sequence[int], patch: Sequence[int], overlap: float = 0.5) -> int:
    """Sliding-window tiles over ``shape``; a 2D patch over a 3D volume tiles each slice."""
    lead = len(shape) - len(patch)
    return math.prod(shape[:lead]) * math.prod(len(s) for s in tile_grid(shape[lead:], patch, overlap))


def _forward_seconds(model: torch.nn.Module, channels: int, patch: Sequence[int], device: str) -> float:
    was_training = model.training
    model.eval()
    x = torch.zeros((1, channels, *patch), device=device)
    try:
        with torch.inference_mode():
            times = []
            for _ in range(2):  # the first call also pays the kernels' set-up: the faster one is the pace
                started = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - started)
            return min(times)
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class ValidationChoice:
    """What the full-volume validation after training covers, and the seconds kept for it.

    Attributes
    ----------
    seconds
        Seconds of the budget kept for it (0 when skipped).
    cases
        How many of the fold's validation cases are predicted (the first ones, in split order).
    total
        The fold's validation cases.
    overlap
        Sliding-window overlap of the validation predictions.
    subsampled
        Why it covers less than every case at overlap 0.5 (None: it does not).
    """

    seconds: float
    cases: int
    total: int
    overlap: float = 0.5
    subsampled: str | None = None


def _pace(run_dirs: Sequence[Path]) -> float | None:
    """Seconds per sliding-window tile that other folds' validations recorded (the slowest)."""
    paces = []
    for folder in run_dirs:
        try:
            record = read_json(folder / "run.json")["validation"]
            paces.append(float(record["wall_seconds"]) / max(1, int(record["tiles"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return max(paces) if paces else None


def choose_validation(
    model: torch.nn.Module,
    val_prefixes: Sequence[str],
    patch_size: Sequence[int],
    *,
    budget_seconds: float,
    device: str = "cpu",
    other_runs: Sequence[Path] = (),
    share: float = VALIDATION_SHARE,
) -> ValidationChoice:
    """The validation that fits ``share`` of ``budget_seconds``: every case at overlap 0.5 if it
    fits, else the most cases that fit at the largest overlap of :data:`VALIDATION_OVERLAPS`."""
    total = len(val_prefixes)
    if not total:
        return ValidationChoice(0.0, 0, 0)
    cases = load_cases(val_prefixes)
    pace = _pace(other_runs)
    if pace is None:
        pace = _forward_seconds(model.to(device), cases[0].data.shape[0], patch_size, device)
    allowed = share * budget_seconds
    best: tuple[int, float, float] = (0, 0.5, 0.0)
    for overlap in VALIDATION_OVERLAPS:
        costs = [(_tiles(c.data.shape[1:], patch_size, overlap) * pace + _PER_CASE) * _MARGIN for c in cases]
        n = sum(1 for k in range(total) if sum(costs[: k + 1]) <= allowed)
        if n > best[0]:
            best = (n, overlap, sum(costs[:n]))
        if n == total:
            break
    n, overlap, seconds = best
    limit = f"{share:.0%} of the {budget_seconds / 60:.2g} min budget"
    if n == total and overlap == 0.5:
        log.info("keeping %.1f s of the budget for validating %d case(s) (%.2f s per tile)", seconds, n, pace)
        return ValidationChoice(seconds, n, total)
    if n == 0:
        why = f"not even one validation case fits {limit}: full-volume validation skipped (val_dice: patch estimate)"
    else:
        why = f"{n} of {total} validation case(s) at overlap {overlap:g} fit {limit}"
    log.warning("validation cut to the budget: %s", why)
    return ValidationChoice(seconds, n, total, overlap, why)
