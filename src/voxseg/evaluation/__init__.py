"""Segmentation metrics (numpy/scipy only; importing this never imports torch).

* :func:`dice`, :func:`hd95`, :func:`surface_dice`: per-class overlap and surface metrics.
* :func:`detection_metrics`: instance-level precision/recall/F1 with one-to-one matching.
* :func:`evaluate_case`, :func:`evaluate_folders`: per-case reports and the library side of
  ``voxseg evaluate PRED_DIR GT_DIR``.

Edge cases are defined, never NaN: see ``docs/postprocessing.md``.
"""

from voxseg.evaluation.detection import DetectionResult, detection_metrics
from voxseg.evaluation.folders import evaluate_case, evaluate_folders, summarize
from voxseg.evaluation.overlap import dice, resolve_labels
from voxseg.evaluation.surface import hd95, surface_dice, surface_distances

__all__ = [
    "dice",
    "hd95",
    "surface_dice",
    "surface_distances",
    "detection_metrics",
    "DetectionResult",
    "evaluate_case",
    "evaluate_folders",
    "summarize",
    "resolve_labels",
]
