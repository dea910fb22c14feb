"""Inference building blocks: sliding-window prediction, predictor wrappers, runtime settings.

Pure functions on arrays in memory (no files, no bundles):

- :func:`sliding_window` runs a patch predictor over a whole ``(C, *spatial)`` image and blends
  the tiles (Gaussian or constant weights), in about ``(K + 1) * voxels * 4`` bytes;
- :class:`MirrorTTA`, :class:`Ensemble`, :class:`AutocastPredictor` are predictors that wrap
  predictors (mirror test-time augmentation, fold ensembles, bf16 autocast) and compose;
- :func:`probabilities_to_labels` turns probabilities into labels (threshold or argmax);
- :class:`Predictor` chains preprocessing, sliding window, TTA, fold ensembles, restoration to the
  input's geometry and postprocessing (``Predictor.from_work(WORK).predict(volume)``);
- :mod:`voxseg.inference.runtime` sets threads, precision and the C allocator for fast CPU inference.

See ``docs/inference.md``.
"""

from voxseg.inference.predictor import Prediction, Predictor
from voxseg.inference.runtime import (
    configure_allocator,
    configure_threads,
    cpu_supports_bf16,
    peak_rss_bytes,
    reset_peak_rss,
    resolve_precision,
)
from voxseg.inference.sliding_window import PatchPredictor, importance_map, sliding_window, tile_grid, tile_starts
from voxseg.inference.wrappers import AutocastPredictor, Ensemble, MirrorTTA, probabilities_to_labels

__all__ = [
    "Predictor",
    "Prediction",
    "sliding_window",
    "tile_starts",
    "tile_grid",
    "importance_map",
    "PatchPredictor",
    "MirrorTTA",
    "Ensemble",
    "AutocastPredictor",
    "probabilities_to_labels",
    "configure_allocator",
    "configure_threads",
    "cpu_supports_bf16",
    "resolve_precision",
    "peak_rss_bytes",
    "reset_peak_rss",
]
