"""Inference building blocks: sliding-window prediction, predictor wrappers, runtime settings.

Pure functions on arrays in memory (no files, no bundles):

- :func:`voxseg.inference.window.sliding_window` (numpy, no torch) runs a patch runner over a whole
  ``(C, *spatial)`` image and blends the tiles (Gaussian or constant weights), in about
  ``(K + 1) * voxels * 4`` bytes: the one window of every backend; :func:`sliding_window` is the same
  for torch predictors;
- :class:`MirrorTTA`, :class:`Ensemble`, :class:`AutocastPredictor` are predictors that wrap
  predictors (mirror test-time augmentation, fold ensembles, bf16 autocast) and compose;
- :func:`probabilities_to_labels` turns probabilities into labels (threshold or argmax);
- :class:`Predictor` chains preprocessing, sliding window, TTA, fold ensembles, restoration to the
  input's geometry and postprocessing (``Predictor.from_work(WORK).predict(volume)``);
- :mod:`voxseg.inference.runtime` sets threads, precision and the C allocator for fast CPU inference.

See ``docs/inference.md``.
"""

import sys
import types
from importlib import import_module
from typing import Any

# Lazy: ``voxseg.inference.batch`` and ``voxseg.inference.runtime`` are also used by the
# onnxruntime backend (``voxseg predict --backend onnxruntime``), which must not import torch.
_WHERE = {
    "Predictor": "predictor",
    "Prediction": "predictor",
    "configure_allocator": "runtime",
    "configure_threads": "runtime",
    "cpu_supports_bf16": "runtime",
    "peak_rss_bytes": "runtime",
    "reset_peak_rss": "runtime",
    "resolve_precision": "runtime",
    "PatchPredictor": "sliding_window",
    "importance_map": "sliding_window",
    "sliding_window": "sliding_window",
    "tile_grid": "tiling",
    "tile_starts": "tiling",
    "PatchRunner": "window",
    "importance_weights": "window",
    "AutocastPredictor": "wrappers",
    "Ensemble": "wrappers",
    "MirrorTTA": "wrappers",
    "probabilities_to_labels": "wrappers",
}


class _Package(types.ModuleType):
    """The package's module type: ``sliding_window`` is both a submodule and its main function.

    Importing the submodule makes the import system set ``voxseg.inference.sliding_window`` to the
    module; the public name stays the function (as it was when this package imported eagerly).
    """

    @property
    def sliding_window(self) -> Any:
        from voxseg.inference.sliding_window import sliding_window as function

        return function

    @sliding_window.setter
    def sliding_window(self, value: Any) -> None:  # the import system's setattr of the submodule
        pass


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(import_module(f"voxseg.inference.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'voxseg.inference' has no attribute {name!r}")


__all__ = [
    "Predictor",
    "Prediction",
    "sliding_window",
    "tile_starts",
    "tile_grid",
    "importance_map",
    "PatchPredictor",
    "PatchRunner",
    "importance_weights",
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
