"""Instance detection metrics: one-to-one matching of predicted and reference objects.

Matching rules
--------------
``match="overlap"``
    A predicted and a reference object may match when their IoU (voxels in both / voxels in
    either) is at least ``iou_threshold``.
``match="centroid"``
    They may match when their centroids are at most ``max_distance_mm`` apart (Euclidean, mm).

Among the allowed pairs, the matching is one-to-one and optimal (Hungarian algorithm,
``scipy.optimize.linear_sum_assignment``): first the largest number of matches, then the highest
total IoU (or the smallest total distance). A reference split into two predictions gives one true
positive and one false positive; two references merged into one prediction give one true positive
and one false negative.

Counts: TP = matched pairs, FP = unmatched predictions, FN = unmatched references.
``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)``, ``F1 = 2TP / (2TP + FP + FN)``. With no
objects at all in either image, all three are 1.0; with no predictions (but references) precision
is 1.0 and recall 0.0; with no references (but predictions) precision is 0.0 and recall 1.0 — so
none is ever NaN, and F1 is 0.0 whenever TP = 0 but something exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import cc3d
import fastremap
import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from voxseg.errors import ConfigError, InputImageError
from voxseg.evaluation.overlap import pair_arrays
from voxseg.evaluation.surface import _spacing
from voxseg.io.volume import Volume

__all__ = ["DetectionResult", "detection_metrics", "INSTANCE_IOU"]

INSTANCE_IOU = 0.5  # a predicted object matches a reference object at IoU >= 0.5 (StarDist, Cellpose)


@dataclass(frozen=True)
class DetectionResult:
    """Counts, rates and matched pairs ``(pred_id, ref_id, score)``; score is IoU or distance in mm."""

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    pairs: tuple[tuple[int, int, float], ...]
    unmatched_pred: tuple[int, ...]
    unmatched_ref: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["pairs"] = [list(p) for p in self.pairs]
        data["unmatched_pred"], data["unmatched_ref"] = list(self.unmatched_pred), list(self.unmatched_ref)
        return data


def _ids_and_sizes(inst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids, counts = fastremap.unique(inst, return_counts=True)
    keep = ids != 0
    return ids[keep].astype(np.int64), counts[keep].astype(np.int64)


def _overlap_candidates(p, r, p_ids, p_sizes, r_ids, r_sizes, threshold):
    both = (p != 0) & (r != 0)
    pv = np.searchsorted(p_ids, p[both])  # object index, not id: keeps the pair key small
    rv = np.searchsorted(r_ids, r[both])
    keys, inter = fastremap.unique(pv * max(r_ids.size, 1) + rv, return_counts=True)
    pi, ri = keys // max(r_ids.size, 1), keys % max(r_ids.size, 1)
    inter = inter.astype(np.float64)
    iou = inter / (p_sizes[pi] + r_sizes[ri] - inter)
    ok = iou >= threshold
    return pi[ok], ri[ok], iou[ok], 1.0 - iou[ok]  # cost in [0, 1)


def _centroids(inst: np.ndarray, ids: np.ndarray, sp: np.ndarray) -> np.ndarray:
    renumbered, mapping = fastremap.renumber(np.ascontiguousarray(inst), preserve_zero=True)
    stats = cc3d.statistics(renumbered)
    new = np.array([mapping[i] for i in ids.tolist()], dtype=np.int64)
    return stats["centroids"][new] * sp


def _centroid_candidates(p, r, p_ids, r_ids, sp, max_distance):
    cp, cr = _centroids(p, p_ids, sp), _centroids(r, r_ids, sp)
    found = cKDTree(cp).sparse_distance_matrix(cKDTree(cr), max_distance, output_type="ndarray")
    pi, ri, d = found["i"], found["j"], found["v"]
    cost = d / max_distance if max_distance > 0 else np.zeros_like(d)
    return pi.astype(np.int64), ri.astype(np.int64), d, cost


def _match(pi, ri, cost, n_p, n_r) -> list[tuple[int, int]]:
    """Optimal one-to-one matching over candidate pairs, solved per connected block."""
    if pi.size == 0:
        return []
    graph = coo_matrix((np.ones(pi.size), (pi, n_p + ri)), shape=(n_p + n_r, n_p + n_r))
    _, block = connected_components(graph, directed=False)
    pairs = []
    order = np.argsort(block[pi], kind="stable")
    pi, ri, cost = pi[order], ri[order], cost[order]
    bounds = np.flatnonzero(np.diff(block[pi])) + 1
    for sel in np.split(np.arange(pi.size), bounds):
        bp, br = np.unique(pi[sel]), np.unique(ri[sel])
        # valid costs are <= 1, so a forbidden pair costs more than any set of valid ones: the solver
        # first maximizes the number of valid matches, then minimizes their total cost
        forbidden = float(bp.size + br.size + 1)
        matrix = np.full((bp.size, br.size), forbidden)
        matrix[np.searchsorted(bp, pi[sel]), np.searchsorted(br, ri[sel])] = cost[sel]
        rows, cols = linear_sum_assignment(matrix)
        pairs.extend((int(bp[a]), int(br[b])) for a, b in zip(rows, cols, strict=True) if matrix[a, b] < forbidden)
    return pairs


def _rates(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return precision, recall, f1


def detection_metrics(
    pred_instances: np.ndarray | Volume,
    ref_instances: np.ndarray | Volume,
    *,
    match: Literal["overlap", "centroid"] = "overlap",
    iou_threshold: float = 0.1,
    max_distance_mm: float | None = None,
    spacing: Sequence[float] | None = None,
) -> DetectionResult:
    """Object-level precision, recall and F1 between two instance label images.

    Parameters
    ----------
    pred_instances, ref_instances
        Instance label images (one id per object, 0 background; e.g. from
        :func:`voxseg.postprocessing.instances`). A plain binary mask counts as one object.
    match
        ``"overlap"`` (IoU ≥ ``iou_threshold``) or ``"centroid"`` (distance ≤ ``max_distance_mm``).
    spacing
        Voxel size (array order, mm) for centroid distances; default the Volume's, else 1 mm.

    See the module docstring for the matching and the empty cases.
    """
    p, r, volume = pair_arrays(pred_instances, ref_instances)
    for name, arr in (("pred_instances", p), ("ref_instances", r)):
        if arr.dtype.kind not in "biu":
            raise InputImageError(None, f"{name} has dtype {arr.dtype}; expected integer instance ids")
    p_ids, p_sizes = _ids_and_sizes(p)
    r_ids, r_sizes = _ids_and_sizes(r)
    if match == "overlap":
        if max_distance_mm is not None:
            raise ConfigError("max_distance_mm is for match='centroid'; overlap matching uses iou_threshold")
        if not 0 < iou_threshold <= 1:
            raise ConfigError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        pi, ri, score, cost = _overlap_candidates(p, r, p_ids, p_sizes, r_ids, r_sizes, iou_threshold)
    elif match == "centroid":
        if max_distance_mm is None or not np.isfinite(max_distance_mm) or max_distance_mm < 0:
            raise ConfigError("match='centroid' needs max_distance_mm, a distance in mm >= 0")
        sp = _spacing(spacing, volume, p.ndim)
        if p_ids.size and r_ids.size:
            pi, ri, score, cost = _centroid_candidates(p, r, p_ids, r_ids, sp, float(max_distance_mm))
        else:
            pi = ri = np.zeros(0, np.int64)
            score = cost = np.zeros(0)
    else:
        raise ConfigError(f"match must be 'overlap' or 'centroid', got {match!r}")
    scores = {(int(a), int(b)): float(s) for a, b, s in zip(pi, ri, score, strict=True)}
    matched = sorted(_match(pi, ri, cost, p_ids.size, r_ids.size))
    pairs = tuple((int(p_ids[a]), int(r_ids[b]), scores[(a, b)]) for a, b in matched)
    matched_p, matched_r = {a for a, _ in matched}, {b for _, b in matched}
    tp = len(pairs)
    fp, fn = int(p_ids.size) - tp, int(r_ids.size) - tp
    return DetectionResult(
        tp,
        fp,
        fn,
        *_rates(tp, fp, fn),
        pairs,
        tuple(int(i) for k, i in enumerate(p_ids) if k not in matched_p),
        tuple(int(i) for k, i in enumerate(r_ids) if k not in matched_r),
    )
