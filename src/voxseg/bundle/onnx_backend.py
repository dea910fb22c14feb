"""Prediction with a bundle's ONNX models and onnxruntime, without importing torch.

The whole pipeline is data from ``bundle.json``: preprocessing (the plan's spacing and
normalization, :func:`voxseg.preprocessing.preprocess_case`), a sliding window with Gaussian
blending, mirror test-time augmentation, the fold ensemble (softmax/sigmoid, averaged), the way
back to the input's geometry (:func:`voxseg.preprocessing.restore_probabilities`) and the
postprocessing spec. It follows :class:`voxseg.inference.predictor.Predictor` step by step; the
tiling rule and importance map are the same as :mod:`voxseg.inference.sliding_window`, written
again in numpy here because that module imports torch.

Fixed-shape models are centre-cropped / zero-padded to their shape and back, as by the torch
predictor; a plan channel named ``mask`` may come from the ``mask`` input. Not supported (yet):
interactive models (prompt channels).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.bundle.load import Bundle, open_bundle
from voxseg.bundle.notice import terms
from voxseg.errors import BundleError, ConfigError, InputImageError
from voxseg.io.volume import Volume, require_same_grid
from voxseg.planning import Normalization, Plan
from voxseg.postprocessing import PostprocessingSpec, apply_postprocessing
from voxseg.preprocessing import preprocess_case, restore_probabilities
from voxseg.tiling import fit_shape, gaussian_weights, overlap_slices, tile_grid, tile_starts, unfit_shape

__all__ = [
    "OnnxPredictor",
    "OnnxPrediction",
    "load_onnx_predictor",
    "tile_grid",
    "tile_starts",
    "gaussian_map",
    "sliding_window_numpy",
]

Run = Callable[[np.ndarray], np.ndarray]
#: CT voxels below this (HU) are air: a tile of air only is background (``skip_background``).
AIR_HU = -500.0


@lru_cache(maxsize=8)
def gaussian_map(patch_size: tuple[int, ...], sigma_scale: float = 0.125) -> np.ndarray:
    """The Gaussian tile weights of :func:`voxseg.inference.sliding_window.importance_map` (float32)."""
    out = gaussian_weights(patch_size, (sigma_scale,) * len(patch_size))
    out.setflags(write=False)
    return out


def _add_tile(out, weight_sum, pred, start, patch, spatial, weights) -> None:
    img_sl, tile_sl = overlap_slices(start, patch, spatial)
    w = weights[tile_sl]
    out[(slice(None), *img_sl)] += pred[(slice(None), *tile_sl)] * w
    weight_sum[img_sl] += w


def sliding_window_numpy(
    image: np.ndarray,
    run: Run,
    patch_size: Sequence[int],
    *,
    overlap: float = 0.5,
    batch_size: int = 1,
    out_dtype: Any = np.float32,
    progress: Callable[[int, int], None] | None = None,
    skip: Callable[[np.ndarray], bool] | None = None,
    background: Sequence[float] | None = None,
) -> np.ndarray:
    """Blend ``run`` over ``image`` ``(C, *spatial)`` tile by tile; returns ``(K, *spatial)``.

    ``skip``: a cheap test on a tile's input (its in-image part, ``(C, *part)``); a tile it accepts
    is not run and contributes ``background`` (the ``K`` per-channel outputs of a background tile).
    """
    patch = tuple(int(p) for p in patch_size)
    spatial = image.shape[1:]
    weights = gaussian_map(patch)
    tiles = list(itertools.product(*tile_grid(spatial, patch, overlap)))
    weight_sum = np.zeros(spatial, dtype=out_dtype)
    out: np.ndarray | None = None
    if skip is not None:
        if background is None:
            raise ConfigError("sliding_window_numpy: skip needs background (the outputs of a skipped tile)")
        fill = np.asarray(background, dtype=np.float32).reshape(-1, *(1,) * len(patch))
        skipped = {t for t in tiles if skip(image[(slice(None), *overlap_slices(t, patch, spatial)[0])])}
        out = np.zeros((len(background), *spatial), dtype=out_dtype)
        for start in skipped:
            _add_tile(out, weight_sum, fill, start, patch, spatial, weights)
        tiles = [t for t in tiles if t not in skipped]
    batch = np.empty((batch_size, image.shape[0], *patch), dtype=np.float32)
    for first in range(0, len(tiles), batch_size):
        starts = tiles[first : first + batch_size]
        for k, start in enumerate(starts):
            img_sl, tile_sl = overlap_slices(start, patch, spatial)
            if any(t.start != 0 or t.stop != p for t, p in zip(tile_sl, patch, strict=True)):
                batch[k].fill(0)
            batch[k][(slice(None), *tile_sl)] = image[(slice(None), *img_sl)]
        pred = run(batch[: len(starts)])
        if out is None:
            out = np.zeros((pred.shape[1], *spatial), dtype=out_dtype)
        for k, start in enumerate(starts):
            _add_tile(out, weight_sum, pred[k], start, patch, spatial, weights)
        if progress is not None:
            progress(first + len(starts), len(tiles))
    if out is None:  # unreachable: every image has at least one tile
        raise ConfigError("sliding window produced no tiles")
    out /= weight_sum
    return out


def background_tile_test(normalization: Sequence[Normalization]) -> Callable[[np.ndarray], bool]:
    """A cheap test that a preprocessed tile ``(C, *part)`` holds only background: every CT channel
    at or below air (-500 HU, or the plan's lower clip when higher) and every other channel constant
    (the zero background outside the body, after normalization). Measured for agreement in
    ``benchmarks/cpu_less_arithmetic.py``; off by default."""
    limits = []
    for norm in normalization:
        if norm.scheme == "ct":
            limits.append((max(AIR_HU, float(norm.clip_low)) - float(norm.mean)) / float(norm.std) + 1e-4)
        else:
            limits.append(None)

    def test(tile: np.ndarray) -> bool:
        for channel, limit in zip(tile, limits, strict=True):
            low, high = float(channel.min()), float(channel.max())
            if (high > limit) if limit is not None else (high - low > 1e-6):
                return False
        return True

    return test


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
    runners
        One patch runner per fold (:mod:`voxseg.inference.runners`: raw logits of a tile batch).
    plan, configuration, postprocessing
        From ``bundle.json``.
    tta, overlap, threshold, batch_size
        As for :class:`voxseg.inference.predictor.Predictor`.
    skip_background
        Do not run tiles that :func:`background_tile_test` finds to be background (they count as
        background outputs). Off by default: see its agreement in ``benchmarks/README.md``.
    """

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
    ):
        self.runners = list(runners)
        self.backend = getattr(self.runners[0], "name", "onnxruntime") if self.runners else "onnxruntime"
        self.precision = getattr(self.runners[0], "precision", "fp32") if self.runners else "fp32"
        self.calibration: dict[str, Any] | None = None
        self.plan = plan
        self.config = plan.configuration(configuration)
        self.postprocessing = postprocessing or PostprocessingSpec()
        if plan.interactive:
            raise BundleError("the onnxruntime backend does not support interactive models yet; use --backend torch")
        if not 0 <= overlap < 1:
            raise ConfigError(f"overlap must be in [0, 1), got {overlap!r}")
        batch_size = 1 if batch_size == "auto" else batch_size  # onnxruntime: one tile per call (measured)
        self.tta, self.overlap, self.threshold, self.batch_size = bool(tta), float(overlap), threshold, int(batch_size)
        self.skip_background = bool(skip_background)
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
        backend: str = "onnxruntime",
        precision: str = "fp32",
        **options: Any,
    ) -> OnnxPredictor:
        """Runners for the bundle's ``model_fold_K.onnx`` files (export with ``onnx=True``).

        ``backend``: ``onnxruntime``, ``openvino`` or ``auto`` (the fastest here for this model, from
        a short calibration cached in the voxseg cache folder, see :mod:`voxseg.inference.calibrate`);
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
            from voxseg.inference.calibrate import choose_backend

            calibration = choose_backend(bundle, threads=num_threads, cache=cache)
            backend = calibration["backend"]
        extra = {}
        if precision == "int8":
            from voxseg.inference.calibrate import golden_tiles

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
            logits = None
            for dims in self._flips:
                xin = np.ascontiguousarray(np.flip(x, dims)) if dims else x
                y = runner(xin)
                y = np.flip(y, dims) if dims else y
                logits = y.copy() if logits is None else logits + y
            probs = _softmax(logits / len(self._flips))
            total = probs if total is None else total + probs
        return total / len(self.runners)

    def _predict_grid(self, data: np.ndarray) -> np.ndarray:
        fixed, spatial = self.config.fixed_shape, tuple(data.shape[1:])
        refit = fixed is not None and tuple(fixed) != spatial
        if refit:
            data = fit_shape(data, fixed)
        skip = {}
        if self.skip_background:
            k = int(self.config.network.kwargs.get("out_channels", self.plan.num_classes))
            background = [0.0] if k == 1 else [1.0] + [0.0] * (k - 1)  # sigmoid / softmax outputs
            skip = {"skip": background_tile_test(self.plan.normalization), "background": background}
        probs = sliding_window_numpy(
            data, self._run_tiles, self.config.patch_size, overlap=self.overlap, batch_size=self.batch_size, **skip
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
