"""Choose the smallest object an instance plan keeps, from cross-validation predictions.

An instance plan predicts background / interior / boundary and ends with ``split_instances``
(:mod:`voxseg.postprocessing.touching`). Specks of a few voxels called interior become objects of
their own; each is a false object for the user, and Dice barely sees them, so the per-class rule of
:mod:`voxseg.postprocessing.choose` cannot weigh them. Here the criterion is the one the user reads:
the object F1 at IoU 0.5, pooled over the validation cases (StarDist's and Cellpose's count).

Candidates: 0 (keep everything) and 10%, 25%, 50% and 100% of the 5th percentile of the
reference objects' sizes, counting only objects that do not touch the image's border (those are
cut at an arbitrary size, down to one voxel). The percentile, not the smallest object as for the
per-class grid, because one mislabelled speck in the references would otherwise make the grid
useless. A candidate is kept only if it raises the F1 by more than ``min_gain``; of equal scores
the smaller size wins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from voxseg.evaluation.detection import INSTANCE_IOU, detection_metrics
from voxseg.postprocessing.choose import paired_arrays
from voxseg.postprocessing.touching import split_instances

__all__ = ["choose_split_min_size", "whole_object_sizes", "instance_size_grid"]

_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
_PERCENTILE = 5.0


def whole_object_sizes(references: Iterable[np.ndarray]) -> np.ndarray:
    """Voxel counts of the reference objects (instance ids) that touch no face of their image."""
    sizes: list[np.ndarray] = []
    for ref in references:
        arr = np.asarray(ref)
        counts = np.bincount(arr.ravel().astype(np.int64, copy=False))
        faces = [np.take(arr, i, axis=ax) for ax in range(arr.ndim) for i in (0, -1)]
        cut = np.unique(np.concatenate([f.ravel() for f in faces])) if faces else np.array([], dtype=np.int64)
        whole = np.ones(counts.size, dtype=bool)
        whole[0] = False
        whole[cut.astype(np.int64)] = False
        sizes.append(counts[whole & (counts > 0)])
    return np.concatenate(sizes) if sizes else np.array([], dtype=np.int64)


def instance_size_grid(references: Iterable[np.ndarray], *, fractions: Sequence[float] = _FRACTIONS) -> list[int]:
    """``min_size`` values to try: fractions of the 5th percentile of the whole reference objects."""
    sizes = whole_object_sizes(references)
    if not sizes.size:
        return []
    typical_small = float(np.percentile(sizes, _PERCENTILE))
    return sorted({math.ceil(f * typical_small) for f in fractions} - {0, 1})


def _pooled_f1(predictions, references, min_size: int, interior: int, boundary: int) -> dict[str, Any]:
    tp = fp = fn = 0
    for pred, ref in zip(predictions, references, strict=True):
        objects = split_instances(pred, interior=interior, boundary=boundary, min_size=min_size)
        found = detection_metrics(objects, ref, iou_threshold=INSTANCE_IOU)
        tp, fp, fn = tp + found.tp, fp + found.fp, fn + found.fn
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return {"min_size": min_size, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "chosen": False}


def choose_split_min_size(
    predictions: Sequence[Any],
    references: Sequence[Any],
    *,
    interior: int,
    boundary: int,
    min_gain: float = 0.0,
    candidates: Sequence[int] | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """The ``split_instances`` ``min_size`` with the best pooled object F1 over the cases.

    Parameters
    ----------
    predictions
        Background / interior / boundary label maps (arrays or Volumes), e.g. the folds' validation
        predictions after the per-class postprocessing.
    references
        The cases' instance ids (one id per object, 0 background).
    interior, boundary
        The class values of object interiors and boundaries.
    min_gain
        A size is kept only if it raises the F1 of keeping everything by more than this.
    candidates
        Sizes to try besides 0 (default: :func:`instance_size_grid` of the references).

    Returns
    -------
    (int, list of dict)
        The chosen size (0: keep every object) and one report row per size tried: ``min_size``,
        ``f1``, ``tp``, ``fp``, ``fn``, ``chosen``.
    """
    preds, refs = paired_arrays(predictions, references)
    sizes = instance_size_grid(refs) if candidates is None else sorted({int(n) for n in candidates} - {0})
    report = [_pooled_f1(preds, refs, n, interior, boundary) for n in (0, *sizes)]
    best = max(report, key=lambda row: row["f1"])  # the first (smallest) of equal scores
    chosen = best if best["f1"] > report[0]["f1"] + min_gain else report[0]
    chosen["chosen"] = True
    return int(chosen["min_size"]), report
