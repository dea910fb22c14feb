"""Dice per class, and the label bookkeeping shared by the metrics (numpy only).

Definitions
-----------
``dice = 2 |P ∩ R| / (|P| + |R|)`` for the voxels of one class in the prediction ``P`` and the
reference ``R``. When the class is absent from both, Dice is **1.0** (nothing to find, nothing
found); it is never NaN. Voxels whose reference value is ``ignore_label`` are left out of both
``P`` and ``R``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import fastremap
import numpy as np

from voxseg.errors import ConfigError, InputImageError
from voxseg.io.volume import Volume

__all__ = ["dice", "resolve_labels", "pair_arrays"]


def pair_arrays(pred: Any, ref: Any) -> tuple[np.ndarray, np.ndarray, Volume | None]:
    """Arrays of a prediction and a reference of one shape; the reference Volume if given."""
    p = pred.array if isinstance(pred, Volume) else np.asarray(pred)
    r = ref.array if isinstance(ref, Volume) else np.asarray(ref)
    if p.shape != r.shape:
        raise InputImageError(None, f"prediction shape {p.shape} differs from reference shape {r.shape}")
    if p.ndim not in (2, 3):
        raise InputImageError(None, f"expected 2D or 3D label maps, got shape {p.shape}")
    volume = ref if isinstance(ref, Volume) else pred if isinstance(pred, Volume) else None
    return p, r, volume


def resolve_labels(
    labels: Iterable[int] | Mapping[str, int] | None,
    arrays: Iterable[np.ndarray] = (),
    ignore_label: int | None = None,
) -> tuple[tuple[int, ...], int | None]:
    """Foreground labels to score, and the ignore label.

    ``labels`` may be a list of label values, a ``dataset.json`` labels mapping (name -> value;
    background and ``"ignore"`` are dropped, ``"ignore"`` becomes the ignore label unless one is
    given) or None: the nonzero values found in ``arrays`` (1 for bool masks).
    """
    if isinstance(labels, Mapping):
        if ignore_label is None:
            ignore_label = labels.get("ignore")
        labels = [v for k, v in labels.items() if k != "ignore" and int(v) != 0]
    if labels is None:
        found: set[int] = set()
        for arr in arrays:
            found.update(int(v) for v in fastremap.unique(arr) if v != 0)
        labels = sorted(found - ({ignore_label} if ignore_label is not None else set()))
    out = []
    for value in labels:
        if isinstance(value, (bool, np.bool_)) or not float(value).is_integer() or int(value) <= 0:
            raise ConfigError(f"labels must be foreground label values (integers > 0), got {value!r}")
        out.append(int(value))
    if ignore_label is not None and ignore_label in out:
        raise ConfigError(f"label {ignore_label} is the ignore label and cannot be scored")
    return tuple(dict.fromkeys(out)), ignore_label


def dice(
    pred: np.ndarray | Volume,
    ref: np.ndarray | Volume,
    *,
    labels: Iterable[int] | Mapping[str, int] | None = None,
    ignore_label: int | None = None,
) -> dict[int, float]:
    """Dice coefficient per class: ``{label: dice}``.

    Parameters
    ----------
    pred, ref
        Label maps (or bool masks) of one shape, ndarray or Volume.
    labels
        Label values to score (or a dataset.json labels mapping); default: every nonzero value in
        either map (``{1}`` for bool masks).
    ignore_label
        Reference value marking unannotated voxels, excluded from the score.

    Returns
    -------
    dict
        ``label -> Dice`` in [0, 1]; 1.0 when the label is absent from both (see module docstring).
    """
    p, r, _ = pair_arrays(pred, ref)
    labels, ignore_label = resolve_labels(labels, (p, r), ignore_label)
    valid = (r != ignore_label) if ignore_label is not None else None
    out = {}
    for label in labels:
        pm = p == label
        if valid is not None:
            pm &= valid
        rm = r == label
        denominator = int(np.count_nonzero(pm)) + int(np.count_nonzero(rm))
        if denominator == 0:
            out[label] = 1.0
        else:
            out[label] = 2.0 * int(np.count_nonzero(pm & rm)) / denominator
    return out
