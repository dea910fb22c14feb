"""Prediction with a bundle's ONNX models and onnxruntime, without importing torch.

The whole pipeline is data from ``bundle.json``: preprocessing (the plan's spacing and
normalization, :func:`voxseg.preprocessing.preprocess_case`), a sliding window with Gaussian
blending, mirror test-time augmentation, the fold ensemble (softmax/sigmoid, averaged), the way
back to the input's geometry (:func:`voxseg.preprocessing.restore_probabilities`) and the
postprocessing spec. It follows :class:`voxseg.inference.predictor.Predictor` step by step; the
sliding window is voxseg's one window, :func:`voxseg.inference.window.sliding_window` (numpy).

Fixed-shape models are centre-cropped / zero-padded to their shape and back, as by the torch
predictor; a plan channel named ``mask`` may come from the ``mask`` input. Not supported (yet):
interactive models (prompt channels).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.bundle.load import Bundle, open_bundle
from voxseg.bundle.notice import terms
from voxseg.errors import BundleError, ConfigError, InputImageError
from voxseg.inference.tiling import fit_shape, unfit_shape
from voxseg.inference.window import sliding_window
from voxseg.io.volume import Volume, require_same_grid
from voxseg.planning import Plan
from voxseg.postprocessing import PostprocessingSpec, apply_postprocessing
from voxseg.preprocessing import preprocess_case, restore_probabilities

__all__ = [
    "OnnxPredictor",
    "OnnxPrediction",
    "load_onnx_predictor",
]


def _softmax(y: np.ndarray) -> np.ndarray:
    if y.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-y))
    e = np.exp(y - y.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class OnnxPrediction:
    """Labels on the input's geometry, optional ``(K, *shape)`` float16 probabilities, timings."""

    labels: Volume
    probabilities: np.ndarray | None
    seconds: dict[str, float]


class OnnxPredictor:
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
        self.plan = plan
        self.config = plan.configuration(configuration)
        self.postprocessing = postprocessing or PostprocessingSpec()
        if plan.interactive:
            raise BundleError("the onnxruntime backend does not support interactive models yet; use --backend torch")
        if not 0 <= overlap < 1:
            raise ConfigError(f"overlap must be in [0, 1), got {overlap!r}")
        batch_size = 1 if batch_size == "auto" else batch_size  # onnxruntime: one tile per call (measured)
        self.tta, self.overlap, self.threshold, self.batch_size = bool(tta), float(overlap), threshold, int(batch_size)
        self.model_id = f"{plan.dataset_name} (onnx)"
        self.model_sha256: str | None = None
        self.model_terms: dict[str, Any] | None = None
        self.folds: tuple[int, ...] | None = None
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
            "backend": "onnxruntime",
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

    def _predict_grid(self, data: np.ndarray) -> np.ndarray:
        fixed, spatial = self.config.fixed_shape, tuple(data.shape[1:])
        refit = fixed is not None and tuple(fixed) != spatial
        if refit:
            data = fit_shape(data, fixed)
        probs = sliding_window(
            data, self._run_tiles, self.config.patch_size, overlap=self.overlap, batch_size=self.batch_size
        )
        if refit:
            probs = unfit_shape(probs, spatial, background=0 if probs.shape[0] > 1 else None)
        return probs

    def _predict_array(self, data: np.ndarray, progress) -> np.ndarray:
        if data.ndim - 1 == self.config.spatial_dims:
            return self._predict_grid(data)
        return np.stack([self._predict_grid(data[:, z]) for z in range(data.shape[1])], axis=1)

    def _channels(self, images: Volume | Sequence[Volume], mask: Volume | None) -> list[Volume]:
        """The plan's channels in order; a channel named ``mask`` may come from ``mask``."""
        channels = [images] if isinstance(images, Volume) else list(images)
        names = [self.plan.channel_names[k] for k in sorted(self.plan.channel_names)]
        mask_index = next((k for k, n in enumerate(names) if n.lower() == "mask"), None)
        if mask is not None and mask_index is not None and len(channels) == len(names) - 1:
            channels.insert(mask_index, mask.with_array((np.asarray(mask.array) > 0).astype(np.uint8)))
        if len(channels) != len(names):
            raise InputImageError(
                None,
                f"the model expects {len(names)} channel(s) ({', '.join(names)}), got {len(channels)}",
                "pass one image per channel, in this order",
            )
        return channels

    def _labels(self, probs: np.ndarray) -> np.ndarray:
        k = probs.shape[0]
        t = 0.5 if self.threshold is None else float(self.threshold)
        labels = (probs[k - 1] > t).astype(np.uint8) if k <= 2 else probs.argmax(axis=0).astype(np.uint8)
        values = self.plan.class_values
        if k > 1 and values != tuple(range(len(values))):
            labels = np.asarray(values, dtype=np.uint16 if max(values) > 255 else np.uint8)[labels]
        return labels

    # ---- prediction --------------------------------------------------------------------
    def predict(
        self,
        images: Volume | Sequence[Volume],
        *,
        mask: Volume | None = None,
        probabilities: bool = False,
        progress=None,
    ) -> OnnxPrediction:
        """Predict one case (one Volume per plan channel); labels on the input's geometry.

        ``mask``: labels are set to 0 where it is 0 (unlike the torch Predictor, it does not
        restrict the normalization statistics).
        """
        t_start = time.perf_counter()
        channels = self._channels(images, mask)
        case = preprocess_case(
            channels,
            target_spacing=self.config.target_spacing,
            normalization=self.plan.normalization,
            anisotropy_threshold=self.plan.anisotropy_threshold,
        )
        props = case.properties
        seconds = {"preprocess": time.perf_counter() - t_start}
        t0 = time.perf_counter()
        probs = self._predict_array(case.data, progress)
        seconds["network"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        identity = tuple(props.shape_after_resampling) == tuple(props.original_shape) and props.crop_box.is_full(
            props.original_shape
        )
        if not identity:
            background = 0 if probs.shape[0] > 1 else None
            probs = restore_probabilities(probs, props, dtype=probs.dtype, background_channel=background)
        labels = self._labels(probs)
        if mask is not None:
            fix = "resample the mask onto the image's grid"
            require_same_grid(mask, channels[0], what="mask", reference_name="the image", fix=fix)
            labels[np.asarray(mask.array) == 0] = 0
        result = Volume.like(labels, channels[0].geometry)
        if not self.postprocessing.is_identity:
            result = apply_postprocessing(result, self.postprocessing)
        seconds["postprocess"] = time.perf_counter() - t0
        seconds["total"] = time.perf_counter() - t_start
        kept = probs.astype(np.float16) if probabilities else None
        return OnnxPrediction(result, kept, {k: round(v, 4) for k, v in seconds.items()})


def load_onnx_predictor(
    bundle_or_name: str | Path,
    *,
    folds: Sequence[int] | None = None,
    index: Any = None,
    cache: str | Path | None = None,
    models: str | Path | None = None,
    offline: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> OnnxPredictor:
    """:func:`voxseg.bundle.load_predictor` for the onnxruntime backend: a bundle folder, ``.zip``
    or ``NAME[@VERSION]`` (installed on first use); ``options`` go to :class:`OnnxPredictor`
    (``tta``, ``overlap``, ``threshold``, ``batch_size``, ``num_threads``)."""
    from voxseg.bundle.cache import resolve_bundle

    bundle = resolve_bundle(bundle_or_name, index=index, cache=cache, models=models, offline=offline, progress=progress)
    return OnnxPredictor.from_bundle(bundle, folds=folds, **options)
