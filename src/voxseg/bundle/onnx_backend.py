"""Prediction with a bundle's ONNX models and onnxruntime, without importing torch.

An :class:`OnnxPredictor` is the one pipeline (:class:`voxseg.inference.pipeline.Pipeline`:
preprocessing, voxseg's one sliding window, restoration to the input's geometry, labels,
postprocessing, all data from ``bundle.json``) with an onnxruntime patch runner: each fold's
session over the mirrorings (logits averaged), softmax/sigmoid, the folds averaged. Fixed-shape
models are centre-cropped / zero-padded to their shape and back; a plan channel named ``mask`` may
come from the ``mask`` input. Not supported (yet): interactive models (prompt channels).
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
from voxseg.planning import Plan
from voxseg.postprocessing import PostprocessingSpec

__all__ = [
    "OnnxPredictor",
    "OnnxPrediction",
]


def _softmax(y: np.ndarray) -> np.ndarray:
    if y.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-y))
    e = np.exp(y - y.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


#: The onnxruntime backend's result: the pipeline's :class:`~voxseg.inference.pipeline.Prediction`.
OnnxPrediction = Prediction


class OnnxPredictor(Pipeline):
    """A bundle's fold ensemble run by onnxruntime (see the module docstring).

    Parameters
    ----------
    sessions
        One ``onnxruntime.InferenceSession`` per fold.
    plan, configuration, postprocessing
        From ``bundle.json``.
    tta, overlap, threshold, batch_size
        As for :class:`voxseg.inference.predictor.Predictor`.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        sessions: Sequence[Any],
        plan: Plan,
        *,
        configuration: str,
        postprocessing: PostprocessingSpec | None = None,
        tta: bool = True,
        overlap: float = 0.5,
        threshold: float | None = None,
        batch_size: int = 1,
    ):
        self.sessions = list(sessions)
        if plan.interactive:
            raise BundleError("the onnxruntime backend does not support interactive models yet; use --backend torch")
        batch_size = 1 if batch_size == "auto" else batch_size  # onnxruntime: one tile per call (measured)
        super().__init__(
            plan,
            configuration=configuration,
            postprocessing=postprocessing,
            tta=tta,
            overlap=overlap,
            threshold=threshold,
            batch_size=batch_size,
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
        **options: Any,
    ) -> OnnxPredictor:
        """Sessions for the bundle's ``model_fold_K.onnx`` files (export with ``onnx=True``)."""
        import onnxruntime as ort

        if not isinstance(bundle, Bundle):
            bundle = open_bundle(bundle, cache=cache)
        m = bundle.manifest
        chosen = m.folds if folds is None else tuple(int(f) for f in folds)
        names = {f: m.onnx_file(f) for f in chosen}
        missing = [n for n in names.values() if n not in m.files]
        if missing:
            raise BundleError(f"{bundle.source}: no {missing[0]}; export the bundle with --onnx")
        opts = ort.SessionOptions()
        if num_threads:
            opts.intra_op_num_threads = int(num_threads)
        sessions = [
            ort.InferenceSession(bundle.read(n), sess_options=opts, providers=["CPUExecutionProvider"])
            for n in names.values()
        ]
        out = cls(sessions, m.plan, configuration=m.configuration, postprocessing=m.postprocessing, **options)
        out.model_id, out.folds, out.model_sha256 = m.reference, chosen, bundle.sha256
        out.model_terms = terms(m)
        return out

    def settings(self) -> dict[str, Any]:
        """The options that shape a prediction (JSON-ready; recorded in batch manifests)."""
        return {
            "backend": self.backend,
            "configuration": self.config.name,
            "folds": None if self.folds is None else list(self.folds),
            "networks": len(self.sessions),
            "tta": self.tta,
            "overlap": self.overlap,
            "threshold": self.threshold,
            "postprocessing": self.postprocessing.to_json(),
            "model_sha256": self.model_sha256,
        }

    # ---- network -----------------------------------------------------------------------
    def _run_tiles(self, x: np.ndarray) -> np.ndarray:
        total = None
        for sess in self.sessions:
            name = sess.get_inputs()[0].name
            logits = None
            for dims in self._flips:
                xin = np.ascontiguousarray(np.flip(x, dims)) if dims else x
                y = sess.run(None, {name: xin})[0].astype(np.float32, copy=False)
                y = np.flip(y, dims) if dims else y
                logits = y.copy() if logits is None else logits + y
            probs = _softmax(logits / len(self._flips))
            total = probs if total is None else total + probs
        return total / len(self.sessions)

    def patch_runner(self) -> Callable[[np.ndarray], np.ndarray]:
        """Each fold's session over the mirrorings (logits averaged), softmax (sigmoid), folds averaged."""
        return self._run_tiles
