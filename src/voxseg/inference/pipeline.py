"""The one prediction pipeline (no torch): a case's images → a label map on their exact geometry.

::

    channels (checked) ─► preprocess_case (crop, normalize, resample; the training code)
      ─► [fixed shape: crop/pad] ─► sliding window over the patch runner (voxseg.inference.window)
      ─► [fixed shape: back] ─► restore_probabilities (original grid)
      ─► labels (argmax, or a threshold for binary models) ─► zero outside ``mask`` ─► postprocessing

:class:`Pipeline` holds every step but the network: a backend supplies the *patch runner* (tiles →
class probabilities, with its own test-time augmentation and fold ensemble) by implementing
:meth:`Pipeline.patch_runner`. :class:`voxseg.inference.predictor.Predictor` runs torch networks,
:class:`voxseg.bundle.onnx_backend.OnnxPredictor` onnxruntime (or OpenVINO) sessions; a backend with
other arithmetic (:class:`voxseg.nnunet.exact.NnunetExactPredictor`) overrides the steps it computes
differently. A 2D configuration applied to a 3D image runs slice by slice along axis 0.
Probabilities are accumulated per class in float32 (float16 above :data:`FLOAT16_ABOVE_BYTES`).
With more than two classes and no probabilities asked for, the classes go back to the input grid one
at a time into a running argmax (:func:`voxseg.preprocessing.restore_argmax`): the memory then grows
with the classes on the preprocessed grid only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxseg.errors import ConfigError, InputImageError
from voxseg.inference.tiling import FLOAT16_ABOVE_BYTES, auto_batch_size, fit_shape, tile_grid, unfit_shape
from voxseg.inference.window import PatchRunner, sliding_window
from voxseg.io import Volume, require_same_grid
from voxseg.planning import ConfigurationPlan, Plan
from voxseg.postprocessing import PostprocessingSpec, apply_postprocessing
from voxseg.preprocessing import preprocess_case, restore_argmax, restore_probabilities

__all__ = ["Prediction", "Pipeline", "FLOAT16_ABOVE_BYTES", "MASK_CHANNEL_NAME", "labels_from_probabilities"]

MASK_CHANNEL_NAME = "mask"


@dataclass(frozen=True)
class Prediction:
    """The result of :meth:`Pipeline.predict`.

    Attributes
    ----------
    labels
        Label map on the input's exact geometry (shape, spacing, origin, direction); uint8
        (uint16 for label values above 255, or instance ids when the postprocessing makes instances).
    probabilities
        ``(K, *input_shape)`` float16 class probabilities on the input grid when requested, else None.
    seconds
        Timings: ``"preprocess"``, ``"network"``, ``"restore"``, ``"postprocess"``, ``"total"``.
    """

    labels: Volume
    probabilities: np.ndarray | None
    seconds: dict[str, float]


class Pipeline:
    """Every step of a prediction but the network (see the module docstring).

    Parameters
    ----------
    plan
        The plan the networks were trained with (channels, labels, normalization, configurations).
    configuration
        Plan configuration (default ``plan.default_configuration``).
    postprocessing
        Applied to the label map (default: none).
    tta
        Mirror test-time augmentation over the configuration's ``mirror_axes`` (done by the runner).
    overlap
        Sliding-window overlap in ``[0, 1)``.
    threshold
        Binary models only: foreground where ``P(fg) > threshold`` (default 0.5, the argmax).
    batch_size
        Tiles per runner call, or ``"auto"``: as many as fit :data:`voxseg.inference.tiling.TILE_BATCH_VOXELS`.
    """

    backend = "none"
    #: Whether the runner takes tiles of any (divisible) size; ONNX networks take the plan's patch only.
    tiles_any_size = True

    def __init__(
        self,
        plan: Plan,
        *,
        configuration: str | None = None,
        postprocessing: PostprocessingSpec | None = None,
        tta: bool = True,
        overlap: float = 0.5,
        threshold: float | None = None,
        batch_size: int | str = "auto",
        skip_background: bool = False,
    ):
        if not isinstance(plan, Plan):
            raise ConfigError(f"{type(self).__name__} needs a voxseg.planning.Plan, got {type(plan).__name__}")
        self.plan = plan
        self.config: ConfigurationPlan = plan.configuration(configuration)
        self.configuration = self.config.name
        self.postprocessing = postprocessing if postprocessing is not None else PostprocessingSpec()
        if not isinstance(self.postprocessing, PostprocessingSpec):
            raise ConfigError(f"postprocessing must be a PostprocessingSpec, got {type(postprocessing).__name__}")
        check_options(overlap, threshold, batch_size, plan)
        self.tta = bool(tta)
        self.overlap = float(overlap)
        self.threshold = None if threshold is None else float(threshold)
        self.batch_size = auto_batch_size(self.config.patch_size) if batch_size == "auto" else int(batch_size)
        #: Tiles of pure background (:func:`voxseg.inference.skip.background_tile_test`) are not run.
        self.skip_background = bool(skip_background)
        kwargs = self.config.network.kwargs
        self.num_outputs: int | None = self.config.network.out_channels if "out_channels" in kwargs else None
        self.activation = "sigmoid" if self.num_outputs == 1 else "softmax"
        self.model_id = "custom"
        self.model_sha256: str | None = None  # of the bundle's bundle.json, when loaded from a bundle
        self.model_terms: dict[str, Any] | None = None  # licence and intended use (voxseg.bundle.notice)
        self.model_card: str | None = None  # the bundle's model card (README.md), None for a work folder
        self.folds: tuple[int, ...] | None = None

    # ---- what a backend supplies -----------------------------------------------------------
    def patch_runner(self) -> PatchRunner:
        """Tiles ``(B, C, *patch)`` float32 → class probabilities ``(B, K, *patch)`` (TTA and folds included)."""
        raise NotImplementedError(f"{type(self).__name__} has no patch runner")

    def check_model(self) -> None:
        """Refuse a prediction this model cannot make (e.g. an interactive model without points)."""

    def window_options(self) -> dict[str, Any]:
        """Extra :func:`~voxseg.inference.window.sliding_window` options: the tile ``skip`` test of
        ``skip_background`` (:mod:`voxseg.inference.skip`)."""
        if not self.skip_background:
            return {}
        from voxseg.inference.skip import skip_options

        return skip_options(self.plan.normalization, self.num_classes)

    # ---- prediction ------------------------------------------------------------------------
    def predict(
        self,
        images: Volume | Sequence[Volume],
        *,
        mask: Volume | None = None,
        probabilities: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> Prediction:
        """Predict one case.

        Parameters
        ----------
        images
            One Volume per plan channel (a plan channel named ``"mask"`` may come from ``mask``).
        mask
            Region of interest on the image's grid: voxels where it is 0 are labelled 0; it feeds a
            plan channel named ``"mask"`` (and so the normalization statistics that use it).
        probabilities
            Also return the ``(K, *shape)`` float16 probabilities on the input grid.
        progress
            Called as ``progress(tiles_done, tiles_total)``.

        Raises
        ------
        InputImageError
            Wrong channel count, a 2D image for a 3D model, a mask whose geometry differs.
        ConfigError
            The model cannot predict without more input (an interactive model needs points).
        """
        self.check_model()
        t_start = time.perf_counter()
        seconds: dict[str, float] = {}
        channels = self.channels(images, mask)
        case = preprocess_case(
            channels,
            target_spacing=self.config.target_spacing,
            normalization=self.plan.normalization,
            anisotropy_threshold=self.plan.anisotropy_threshold,
        )
        props, data = case.properties, case.data
        del case
        seconds["preprocess"] = time.perf_counter() - t_start
        t0 = time.perf_counter()
        probs = self.predict_array(data, progress)
        del data
        seconds["network"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        background = 0 if self.activation == "softmax" else None
        if _is_identity(props):
            restored = probs
        elif not probabilities and probs.shape[0] > 2:  # many classes: never all of them on the input grid
            restored = restore_argmax(probs, props, background_channel=background)
        else:
            restored = restore_probabilities(probs, props, dtype=probs.dtype, background_channel=background)
        del probs
        labels = self.labels(restored) if restored.dtype.kind == "f" else self.class_values(restored)
        kept = None if not probabilities else restored.astype(np.float16, copy=False)
        seconds["restore"] = time.perf_counter() - t0
        return self._finish(labels, kept, channels[0], mask, seconds, t_start)

    def _finish(self, labels, kept, first: Volume, mask: Volume | None, seconds: dict, t_start: float) -> Prediction:
        """Zero outside the mask, postprocess, time: the last steps every backend shares."""
        t0 = time.perf_counter()
        if mask is not None:
            labels[np.asarray(mask.array) == 0] = 0
        result = Volume.like(labels, first.geometry)
        if not self.postprocessing.is_identity:
            result = apply_postprocessing(result, self.postprocessing)
        seconds["postprocess"] = time.perf_counter() - t0
        seconds["total"] = time.perf_counter() - t_start
        return Prediction(result, kept, {k: round(v, 4) for k, v in seconds.items()})

    def channels(self, images: Volume | Sequence[Volume], mask: Volume | None) -> list[Volume]:
        """The plan's channels in order (a ``mask`` channel filled from ``mask``), validated."""
        channels = [images] if isinstance(images, Volume) else list(images)
        if not channels or not all(isinstance(v, Volume) for v in channels):
            raise InputImageError(None, "images must be a Volume or a list of Volumes (one per channel)")
        names = [self.plan.channel_names[k] for k in sorted(self.plan.channel_names)]
        mask_index = next((k for k, n in enumerate(names) if n.lower() == MASK_CHANNEL_NAME), None)
        if mask is not None:
            if not isinstance(mask, Volume):
                raise InputImageError(None, f"mask must be a Volume, got {type(mask).__name__}")
            _check_mask(mask, channels[0])
        if len(channels) == len(names) - 1 and mask_index is not None and mask is not None:
            channels.insert(mask_index, mask.with_array((np.asarray(mask.array) > 0).astype(np.uint8)))
        if len(channels) != len(names):
            if mask_index is not None and len(channels) == len(names) - 1:  # the mask is what is missing
                fix = f"give the {names[mask_index]!r} channel as a mask file with -b/--mask (mask= in Python)"
            else:
                fix = "pass one image per channel, in this order"
            raise InputImageError(
                None, f"the model expects {len(names)} channel(s) ({', '.join(names)}), got {len(channels)}", fix
            )
        need = self.config.spatial_dims
        for k, vol in enumerate(channels):
            if vol.ndim < need:  # one plain sentence: what is wrong and what to do
                which = "the image" if len(channels) == 1 else f"channel {k} ({names[k]})"
                shape = "×".join(str(n) for n in vol.shape)
                raise InputImageError(
                    None,
                    f"{which} is {vol.ndim}D ({shape}) but this model segments {need}D images: "
                    f"give it a {need}D image or choose a {vol.ndim}D model",
                    channel=k,
                )
        return channels

    def predict_array(self, data: np.ndarray, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Probabilities ``(K, *spatial)`` on the preprocessed grid; 2D configs of 3D data slice by slice."""
        nd = self.config.spatial_dims
        spatial = tuple(data.shape[1:])
        num_classes = self.num_classes
        dtype = np.float16 if num_classes * math.prod(spatial) * 4 > FLOAT16_ABOVE_BYTES else np.float32
        if len(spatial) == nd:
            return self._predict_grid(data, dtype, progress)
        grid_shape = self.config.fixed_shape or spatial[1:]
        per_slice = math.prod(len(s) for s in tile_grid(grid_shape, self.config.patch_size, self.overlap))
        total = per_slice * spatial[0]
        out = np.empty((num_classes, *spatial), dtype=dtype)
        for z in range(spatial[0]):
            done = z * per_slice
            tick = None if progress is None else (lambda d, _t, base=done: progress(base + d, total))
            out[:, z] = self._predict_grid(data[:, z], dtype, tick)
        return out

    def _predict_grid(self, data: np.ndarray, dtype: Any, progress: Callable[[int, int], None] | None) -> np.ndarray:
        fixed = self.config.fixed_shape
        spatial = tuple(data.shape[1:])
        refit = fixed is not None and tuple(fixed) != spatial
        if refit:
            data = fit_shape(data, fixed)
        probs = sliding_window(
            data,
            self.patch_runner(),
            self.config.patch_size,
            overlap=self.overlap,
            batch_size=self.batch_size,
            out_dtype=dtype,
            progress=progress,
            **self.window_options(),
        )
        if refit:
            probs = unfit_shape(probs, spatial, background=0 if self.activation == "softmax" else None)
        return probs

    @property
    def num_classes(self) -> int:
        """Output channels ``K`` of the networks (the plan's class count when the spec does not say)."""
        return self.num_outputs if self.num_outputs is not None else self.plan.num_classes

    def labels(self, probs: np.ndarray) -> np.ndarray:
        """Label values (the plan's) from ``(K, *spatial)`` probabilities."""
        labels = labels_from_probabilities(probs, threshold=self.threshold)
        if probs.shape[0] > 1:
            return self.class_values(labels)
        if labels.dtype != np.uint8 and int(labels.max(initial=0)) <= 255:
            labels = labels.astype(np.uint8)
        return labels

    def class_values(self, labels: np.ndarray) -> np.ndarray:
        """Channel indices (argmax) -> the plan's label values."""
        values = self.plan.class_values
        if values != tuple(range(len(values))):
            lut = np.asarray(values, dtype=np.uint16 if max(values) > 255 else np.uint8)
            labels = lut[labels]
        elif labels.dtype != np.uint8 and int(labels.max(initial=0)) <= 255:
            labels = labels.astype(np.uint8)
        return labels


def labels_from_probabilities(
    probabilities: np.ndarray, *, threshold: float | None = None, chunk_voxels: int = 1 << 24
) -> np.ndarray:
    """Labels from ``(K, *spatial)`` probabilities (numpy), without a volume-sized int64 temporary.

    ``K == 1`` (sigmoid) or ``K == 2`` (softmax): ``1`` where the last channel ``> threshold``
    (default 0.5: the argmax, ties to background); ``K > 2``: the argmax (first maximum), a
    ``threshold`` is refused. uint8 labels (int32 above 256 classes), computed in slabs of about
    ``chunk_voxels`` voxels along the first spatial axis.
    """
    probs = np.asarray(probabilities)
    if probs.ndim < 2:
        raise ConfigError("labels need (K, *spatial) probabilities with at least one spatial axis")
    k = probs.shape[0]
    if threshold is not None and k > 2:
        raise ConfigError(f"a threshold applies to 1 or 2 output channels, got {k} (labels come from the argmax)")
    if threshold is not None and not 0 <= threshold <= 1:
        raise ConfigError(f"threshold must be in [0, 1], got {threshold}")
    t = 0.5 if threshold is None else float(threshold)
    labels = np.zeros(probs.shape[1:], dtype=np.uint8 if k <= 256 else np.int32)
    slab = max(1, chunk_voxels // max(1, math.prod(probs.shape[2:])))
    for z in range(0, probs.shape[1], slab):
        part, out = probs[:, z : z + slab], labels[z : z + slab]
        if k <= 2:
            np.greater(part[k - 1], t, out=out, casting="unsafe")
            continue
        best = part[0].copy()
        for c in range(1, k):
            better = part[c] > best
            out[better] = c
            np.maximum(best, part[c], out=best)
    return labels


def check_options(overlap: Any, threshold: Any, batch_size: Any, plan: Plan) -> None:
    """One-line errors for options no backend can use."""
    if not isinstance(overlap, (int, float)) or isinstance(overlap, bool) or not 0 <= overlap < 1:
        raise ConfigError(f"overlap must be in [0, 1), got {overlap!r}")
    if threshold is not None:
        if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise ConfigError(f"threshold must be in [0, 1], got {threshold!r}")
        if plan.num_classes > 2:
            raise ConfigError(
                f"a threshold applies to binary models; this one has {plan.num_classes} classes (labels use the argmax)"
            )
    if batch_size != "auto" and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise ConfigError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")


def _check_mask(mask: Volume, image: Volume) -> None:
    try:
        require_same_grid(
            mask,
            image,
            what="mask",
            reference_name="the image",
            fix="the mask must lie on the image's voxel grid (same shape, spacing, origin, direction)",
            fix_geometry="resample the mask onto the image's grid",
        )
    except InputImageError as exc:
        raise exc.about(mask=True) from None


def _is_identity(props: Any) -> bool:
    """The preprocessed grid is the original grid (no crop, no resampling)."""
    return tuple(props.shape_after_resampling) == tuple(props.original_shape) and props.crop_box.is_full(
        props.original_shape
    )
