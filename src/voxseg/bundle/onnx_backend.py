"""Prediction with a bundle's ONNX models (onnxruntime or OpenVINO), without importing torch.

An :class:`OnnxPredictor` is the one pipeline (:class:`voxseg.inference.pipeline.Pipeline`:
preprocessing, voxseg's one sliding window, restoration to the input's geometry, labels,
postprocessing, all data from ``bundle.json``) over engine runners (:mod:`voxseg.inference.runners`:
onnxruntime or OpenVINO): each fold's runner over the mirrorings (logits averaged), softmax/sigmoid,
the folds averaged; optionally, tiles that :func:`background_tile_test` finds to be background are
not run (``skip_background``). Fixed-shape
models are centre-cropped / zero-padded to their shape and back; a plan channel named ``mask`` may
come from the ``mask`` input. Interactive models run through the same runner with their prompt
channel (:func:`voxseg.interactive.pipeline.predict_points`), one patch-sized tile at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.bundle.load import Bundle, open_bundle
from voxseg.bundle.notice import terms
from voxseg.errors import BundleError
from voxseg.inference.pipeline import Pipeline, Prediction
from voxseg.inference.skip import background_tile_test
from voxseg.inference.tiling import confident_tiles
from voxseg.planning import Plan
from voxseg.planning.plan import refuse_interactive
from voxseg.postprocessing import PostprocessingSpec

__all__ = [
    "OnnxPredictor",
    "OnnxPrediction",
    "background_tile_test",
]


def _softmax(y: np.ndarray) -> np.ndarray:
    if y.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-y))
    e = np.exp(y - y.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


#: The onnxruntime backend's result: the pipeline's :class:`~voxseg.inference.pipeline.Prediction`.
OnnxPrediction = Prediction


class OnnxPredictor(Pipeline):
    """A bundle's fold ensemble run by onnxruntime or OpenVINO (see the module docstring).

    Parameters
    ----------
    runners
        One patch runner per fold (:mod:`voxseg.inference.runners`: raw logits of a tile batch).
    plan, configuration, postprocessing
        From ``bundle.json``.
    tta, overlap, threshold, batch_size
        As for :class:`voxseg.inference.predictor.Predictor`.
    skip_background
        Do not run tiles that :func:`background_tile_test` finds to be background (they count as
        background outputs). Off by default: see its agreement in ``benchmarks/README.md``.
    tta_confident
        Confident-tile TTA: a tile whose un-flipped pass is confident everywhere
        (:func:`~voxseg.inference.tiling.confident_tiles`) skips its other mirrorings. Off by default.
    """

    #: ONNX networks are exported for the plan's patch (only the batch axis is dynamic).
    tiles_any_size = False

    def __init__(
        self,
        runners: Sequence[Any],
        plan: Plan,
        *,
        configuration: str,
        postprocessing: PostprocessingSpec | None = None,
        tta: bool = True,
        overlap: float = 0.5,
        threshold: float | None = None,
        batch_size: int = 1,
        skip_background: bool = False,
        tta_confident: bool = False,
    ):
        self.runners = list(runners)
        self.backend = getattr(self.runners[0], "name", "onnxruntime") if self.runners else "onnxruntime"
        self.precision = getattr(self.runners[0], "precision", "fp32") if self.runners else "fp32"
        self.calibration: dict[str, Any] | None = None
        self.tta_confident = bool(tta_confident)
        self.tiles = [0, 0]  # confident-tile TTA: [tiles seen, tiles kept confident]
        batch_size = 1 if batch_size == "auto" else batch_size  # onnxruntime: one tile per call (measured)
        super().__init__(
            plan,
            configuration=configuration,
            postprocessing=postprocessing,
            tta=tta,
            overlap=overlap,
            threshold=threshold,
            batch_size=batch_size,
            skip_background=skip_background,
        )
        self.model_id = f"{plan.dataset_name} (onnx)"
        axes = self.config.mirror_axes if self.tta else ()
        self._flips = [c for r in range(len(axes) + 1) for c in itertools.combinations([a + 2 for a in axes], r)]

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle | str | Path,
        *,
        folds: Sequence[int] | None = None,
        cache: str | Path | None = None,
        num_threads: int | None = None,
        backend: str = "onnxruntime",
        precision: str = "fp32",
        **options: Any,
    ) -> OnnxPredictor:
        """Runners for the bundle's ``model_fold_K.onnx`` files (export with ``onnx=True``).

        ``backend``: ``onnxruntime``, ``openvino`` or ``auto`` (the fastest here for this model, from
        a short calibration cached in the voxseg cache folder, see :mod:`voxseg.bundle.calibrate`);
        ``precision``: ``fp32``, or for OpenVINO ``bf16`` (native bf16 CPUs) or ``int8`` (calibrated
        on the bundle's golden input).
        """
        from voxseg.inference.runners import make_runner

        if not isinstance(bundle, Bundle):
            bundle = open_bundle(bundle, cache=cache)
        m = bundle.manifest
        chosen = m.folds if folds is None else tuple(int(f) for f in folds)
        names = {f: m.onnx_file(f) for f in chosen}
        missing = [n for n in names.values() if n not in m.files]
        if missing:
            raise BundleError(f"{bundle.source}: no {missing[0]}; export the bundle with --onnx")
        calibration = None
        if backend == "auto":
            from voxseg.bundle.calibrate import choose_backend

            calibration = choose_backend(bundle, threads=num_threads, cache=cache)
            backend = calibration["backend"]
        extra = {}
        if precision == "int8":
            from voxseg.bundle.calibrate import golden_tiles

            extra["calibration"] = golden_tiles(bundle)
        runners = [
            make_runner(backend, bundle.read(n), threads=num_threads, precision=precision, **extra)
            for n in names.values()
        ]
        out = cls(runners, m.plan, configuration=m.configuration, postprocessing=m.postprocessing, **options)
        out.calibration = calibration
        out.model_id, out.folds, out.model_sha256 = m.reference, chosen, bundle.sha256
        out.model_terms = terms(m)
        return out

    def settings(self) -> dict[str, Any]:
        """The options that shape a prediction (JSON-ready; recorded in batch manifests)."""
        return {
            "backend": self.backend,
            "precision": self.precision,
            **({"backend_choice": self.calibration} if self.calibration else {}),
            "configuration": self.config.name,
            "folds": None if self.folds is None else list(self.folds),
            "networks": len(self.runners),
            "tta": self.tta,
            "tta_confident": self.tta_confident,
            "overlap": self.overlap,
            "threshold": self.threshold,
            "skip_background": self.skip_background,
            "postprocessing": self.postprocessing.to_json(),
            "model_sha256": self.model_sha256,
        }

    # ---- network -----------------------------------------------------------------------
    def _run_tiles(self, x: np.ndarray) -> np.ndarray:
        total = None
        for runner in self.runners:
            probs = _softmax(self._mirrored(runner, x))
            total = probs if total is None else total + probs
        return total / len(self.runners)

    def _mirrored(self, runner: Any, x: np.ndarray) -> np.ndarray:
        """One fold's logits averaged over the mirrorings (confident tiles: the un-flipped pass)."""
        logits = np.array(runner(x), dtype=np.float32)  # a copy: never the runner's own buffer
        if len(self._flips) == 1:
            return logits
        rows: Any = slice(None)
        if self.tta_confident:
            sure = confident_tiles(logits)
            self.tiles[0] += len(sure)
            self.tiles[1] += int(sure.sum())
            if sure.all():
                return logits
            rows = np.flatnonzero(~sure)
        part, acc = x[rows], logits[rows]
        for dims in self._flips[1:]:
            acc += np.flip(runner(np.ascontiguousarray(np.flip(part, dims))), dims)
        logits[rows] = acc / len(self._flips)
        return logits

    def check_model(self) -> None:
        refuse_interactive(self.plan, self.model_id)

    def patch_runner(self) -> Callable[[np.ndarray], np.ndarray]:
        """Each fold's runner over the mirrorings (logits averaged), softmax (sigmoid), folds averaged."""
        return self._run_tiles
