"""Choose postprocessing from cross-validation predictions (nnU-Net's rule, per class).

For each class, in ascending order: score the current predictions (mean Dice of that class
over all cases; a case where the class is absent from both counts 1.0), try every candidate
step, and keep the best one only if it raises the mean Dice by more than ``min_gain``. Repeat
with the remaining candidates on top of the kept steps until nothing helps (so
``keep_largest`` followed by ``fill_holes`` can be chosen). A class step only ever changes the
voxels of its class and background, so it cannot change another class's Dice.

Default candidates per class: ``keep_largest``, ``fill_holes``, and ``remove_small`` with
``min_size`` in a small grid from the reference objects of that class: 10%, 25%, 50% and 100%
of the smallest reference component (26-connected) over all cases, values below 2 voxels dropped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import cc3d
import fastremap
import numpy as np

from voxseg.errors import ConfigError
from voxseg.evaluation.overlap import dice, resolve_labels
from voxseg.io.volume import Volume
from voxseg.postprocessing._common import as_array
from voxseg.postprocessing.spec import OPS, PostprocessingSpec, Step

__all__ = ["choose_postprocessing", "size_grid"]

log = logging.getLogger(__name__)
_GRID_FRACTIONS = (0.1, 0.25, 0.5, 1.0)


def size_grid(
    references: Iterable[np.ndarray], label: int, *, fractions: Sequence[float] = _GRID_FRACTIONS
) -> list[int]:
    """``min_size`` values to try for ``label``: fractions of its smallest reference object."""
    smallest = None
    for ref in references:
        mask = np.ascontiguousarray(ref == label)
        cc, n = cc3d.connected_components(mask, connectivity=26, return_N=True)
        if n:
            ids, counts = fastremap.unique(cc, return_counts=True)
            least = int(counts[ids != 0].min())
            smallest = least if smallest is None else min(smallest, least)
    if smallest is None:
        return []
    return sorted({math.ceil(f * smallest) for f in fractions} - {0, 1})


def paired_arrays(predictions: Sequence[Any], references: Sequence[Any]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The label maps of ``predictions`` and ``references`` (arrays or Volumes), one pair per case;
    ConfigError unless there are as many (> 0) of each and each pair has one shape."""
    if len(predictions) != len(references) or not predictions:
        raise ConfigError(
            f"need the same number (> 0) of predictions and references, got {len(predictions)} and {len(references)}"
        )
    preds = [as_array(p, "prediction")[0] for p in predictions]
    refs = [as_array(r, "reference")[0] for r in references]
    for i, (p, r) in enumerate(zip(preds, refs, strict=True)):
        if p.shape != r.shape:
            raise ConfigError(f"case {i}: prediction shape {p.shape} differs from reference shape {r.shape}")
    return preds, refs


def _mean_dice(preds: Sequence[np.ndarray], refs: Sequence[np.ndarray], label: int, ignore_label) -> float:
    return float(
        np.mean(
            [dice(p, r, labels=[label], ignore_label=ignore_label)[label] for p, r in zip(preds, refs, strict=True)]
        )
    )


def _candidates(candidates, references, label) -> list[Step]:
    if candidates is not None:
        steps = [Step.from_json(c) for c in candidates]
        bad = [s.op for s in steps if OPS.get(s.op).final_only]
        if bad:
            raise ConfigError(f"candidate op(s) {', '.join(bad)} act on all classes and cannot be chosen per class")
        return steps
    grid = size_grid(references, label)
    return [Step.of("keep_largest"), Step.of("fill_holes"), *(Step.of("remove_small", min_size=n) for n in grid)]


def _spacings(spacing, n: int) -> list[Any]:
    if spacing is None or (len(spacing) and np.isscalar(spacing[0])):
        return [spacing] * n
    if len(spacing) != n:
        raise ConfigError(f"got {len(spacing)} spacings for {n} cases; give one spacing or one per case")
    return list(spacing)


def _choose_for_class(label, current, refs, candidates, spacings, ignore_label, min_gain, report):
    base = _mean_dice(current, refs, label, ignore_label)
    report.append({"class": label, "steps": [], "mean_dice": base, "gain": 0.0, "chosen": True})
    chosen: list[Step] = []
    remaining = list(candidates)
    while remaining:
        best = None
        for step in remaining:
            outs = [step.apply(p, classes=(label,), spacing=sp) for p, sp in zip(current, spacings, strict=True)]
            score = _mean_dice(outs, refs, label, ignore_label)
            report.append(
                {
                    "class": label,
                    "steps": [s.to_json() for s in (*chosen, step)],
                    "mean_dice": score,
                    "gain": score - base,
                    "chosen": False,
                }
            )
            if best is None or score > best[1]:
                best = (step, score, outs, len(report) - 1)
        step, score, outs, row = best
        if not score > base + min_gain:
            break
        log.info("class %s: %s raises mean Dice %.4f -> %.4f", label, step.to_json(), base, score)
        report[row]["chosen"] = True
        chosen.append(step)
        current, base = outs, score
        remaining = [s for s in remaining if s.op != step.op]
    return chosen, current


def choose_postprocessing(
    predictions: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    *,
    labels: Iterable[int] | Mapping[str, int],
    candidates: Sequence[Mapping[str, Any] | Step] | None = None,
    min_gain: float = 0.0,
    spacing: Sequence[float] | Sequence[Sequence[float]] | None = None,
    ignore_label: int | None = None,
) -> tuple[PostprocessingSpec, list[dict[str, Any]]]:
    """Pick per-class postprocessing steps that raise the mean Dice over cases.

    Parameters
    ----------
    predictions, references
        Label maps per case (ndarrays or Volumes), e.g. the cross-validation predictions.
    labels
        Foreground label values to consider (or a dataset.json labels mapping).
    candidates
        Steps to try for every class, e.g. ``[{"op": "keep_largest"}, {"op": "remove_small", "min_size": 50}]``;
        default: see the module docstring.
    min_gain
        A step is kept only if it raises the mean Dice by more than this.
    spacing
        Voxel size (one for all cases, or one per case; default the references' when they are
        Volumes); needed only by ``min_volume`` candidates.
    ignore_label
        Reference value excluded from the Dice (default: the mapping's ``"ignore"``).

    Returns
    -------
    (PostprocessingSpec, list of dict)
        The spec, and the report: one row per scored candidate chain with ``class``, ``steps``,
        ``mean_dice``, ``gain`` (over the class's score before that round) and ``chosen``. The first
        row of each class (``steps == []``) is its score without postprocessing.
    """
    preds, refs = paired_arrays(predictions, references)
    if spacing is None and all(isinstance(r, Volume) for r in references):
        spacing = [r.spacing for r in references]
    labels, ignore_label = resolve_labels(labels, (), ignore_label)
    spacings = _spacings(spacing, len(preds))
    spec, report = PostprocessingSpec(), []
    current = preds
    for label in sorted(labels):
        steps = _candidates(candidates, refs, label)
        chosen, current = _choose_for_class(label, current, refs, steps, spacings, ignore_label, min_gain, report)
        if chosen:
            spec = spec.with_class_steps(label, chosen)
    return spec, report
