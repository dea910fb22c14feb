"""The :class:`Predictor`: trained networks + plan -> a label map on the input's exact geometry.

Chain (the same preprocessing code as training)::

    images ─► preprocess_case (crop, normalize, resample) ─► [fixed shape: crop/pad]
           ─► sliding_window(MirrorTTA per fold, Ensemble of folds: softmax averaged)
           ─► [fixed shape: back] ─► restore_probabilities (original grid)
           ─► labels (argmax, or a threshold for binary models) ─► zero outside ``mask``
           ─► apply_postprocessing(spec)

A 2D configuration applied to a 3D image runs slice by slice along axis 0. Probabilities are accumulated
per class in float32 (float16 above :data:`FLOAT16_ABOVE_BYTES`), never in float64 nor as one-hot tensors.
With more than two classes and no probabilities asked for, the classes go back to the input grid one
at a time into a running argmax (:func:`voxseg.preprocessing.restore_argmax`): the memory then grows
with the classes on the preprocessed grid only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxseg.errors import ConfigError, InputImageError, VoxsegError
from voxseg.inference.runtime import configure_threads, cpu_supports_bf16, resolve_precision
from voxseg.inference.sliding_window import sliding_window, tile_grid
from voxseg.inference.wrappers import AutocastPredictor, Ensemble, MirrorTTA, probabilities_to_labels
from voxseg.interactive.planning import refuse_interactive
from voxseg.io import Volume, require_same_grid
from voxseg.planning import ConfigurationPlan, Plan
from voxseg.postprocessing import PostprocessingSpec, apply_postprocessing
from voxseg.preprocessing import preprocess_case, restore_argmax, restore_probabilities
from voxseg.tiling import FLOAT16_ABOVE_BYTES, auto_batch_size, fit_shape, unfit_shape

__all__ = ["Prediction", "Predictor", "AUTO_PRECISION_BF16", "FLOAT16_ABOVE_BYTES", "PRECISION_CHOICES"]

log = logging.getLogger(__name__)

#: ``precision="auto"`` means bf16 where the CPU/GPU supports it natively (measured on the
#: mouse-lung-ct phantoms: see docs/inference.md); set to False to make "auto" mean fp32.
AUTO_PRECISION_BF16 = True

PRECISION_CHOICES: tuple[str, ...] = ("auto", "bf16", "fp32")
MASK_CHANNEL_NAME = "mask"


@dataclass(frozen=True)
class Prediction:
    """The result of :meth:`Predictor.predict`.

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


class Predictor:
    """Predict label maps with one or more trained networks (fold ensemble) of a plan.

    Parameters
    ----------
    networks
        One torch module per fold, built from the plan configuration's network spec and loaded.
    plan
        The plan the networks were trained with (channels, labels, normalization, configurations).
    configuration
        Plan configuration (default ``plan.default_configuration``).
    postprocessing
        Applied to the label map (default: none).
    tta
        Mirror test-time augmentation over the configuration's ``mirror_axes``.
    overlap
        Sliding-window overlap in ``[0, 1)``.
    precision
        ``"auto"`` (bf16 where the hardware supports it, see :data:`AUTO_PRECISION_BF16`), ``"bf16"``
        or ``"fp32"``. The precision really used is ``self.precision``.
    device
        ``"cpu"`` or ``"cuda"`` (``"cuda:1"``...).
    threshold
        Binary models only: foreground where ``P(fg) > threshold`` (default 0.5, the argmax).
    batch_size
        Tiles per network call, or ``"auto"`` (default): as many as fit
        :data:`voxseg.tiling.TILE_BATCH_VOXELS` (4 tiles of 40^3, 1 of 128^3), which on a CPU is
        several times faster than one tile per call. The number used is ``self.batch_size``.
    num_threads
        torch intra-op threads (None: leave as configured).
    """

    def __init__(
        self,
        networks: Sequence[torch.nn.Module],
        plan: Plan,
        *,
        configuration: str | None = None,
        postprocessing: PostprocessingSpec | None = None,
        tta: bool = True,
        overlap: float = 0.5,
        precision: str = "auto",
        device: str = "cpu",
        threshold: float | None = None,
        batch_size: int | str = "auto",
        num_threads: int | None = None,
    ):
        networks = list(networks)
        if not networks or not all(isinstance(n, torch.nn.Module) for n in networks):
            raise ConfigError("Predictor needs a non-empty list of torch networks (one per fold)")
        if not isinstance(plan, Plan):
            raise ConfigError(f"Predictor needs a voxseg.planning.Plan, got {type(plan).__name__}")
        self.plan = plan
        self.config: ConfigurationPlan = plan.configuration(configuration)
        self.configuration = self.config.name
        self.postprocessing = postprocessing if postprocessing is not None else PostprocessingSpec()
        if not isinstance(self.postprocessing, PostprocessingSpec):
            raise ConfigError(f"postprocessing must be a PostprocessingSpec, got {type(postprocessing).__name__}")
        _check_options(overlap, precision, threshold, batch_size, plan)
        self.tta = bool(tta)
        self.overlap = float(overlap)
        self.threshold = None if threshold is None else float(threshold)
        self.batch_size = auto_batch_size(self.config.patch_size) if batch_size == "auto" else int(batch_size)
        self.device = _device(device)
        if num_threads is not None:
            configure_threads(num_threads)
        wanted = precision
        if precision == "auto":
            wanted = "bf16" if AUTO_PRECISION_BF16 and _native_bf16(self.device) else "fp32"
        self.precision = resolve_precision(wanted, self.device)
        self.networks = networks
        self.num_outputs = self.config.network.out_channels if "out_channels" in self.config.network.kwargs else None
        self.activation = "sigmoid" if self.num_outputs == 1 else "softmax"
        members = [AutocastPredictor(net, precision=self.precision, device=self.device) for net in networks]
        axes = self.config.mirror_axes
        wrapped = [MirrorTTA(m, axes) for m in members] if self.tta and axes else members
        self._predictor = Ensemble(wrapped, activation=self.activation)
        self.model_id = "custom"
        self.model_sha256: str | None = None  # of the bundle's bundle.json, when loaded from a bundle
        self.model_terms: dict[str, Any] | None = None  # licence and intended use (voxseg.bundle.notice)
        self.folds: tuple[int, ...] | None = None
        self._options = {
            "configuration": self.configuration,
            "postprocessing": self.postprocessing,
            "tta": self.tta,
            "overlap": self.overlap,
            "precision": self.precision,
            "device": str(self.device),
            "threshold": self.threshold,
            "batch_size": self.batch_size,
        }

    def first_folds(self, n: int = 1) -> Predictor:
        """A predictor with the first ``n`` fold networks only (the same modules, other options kept)."""
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"first_folds needs n >= 1, got {n!r}")
        if n >= len(self.networks):
            return self
        other = Predictor(self.networks[:n], self.plan, **self._options)
        other.model_id, other.model_sha256, other.model_terms = self.model_id, self.model_sha256, self.model_terms
        other.folds = None if self.folds is None else self.folds[:n]
        return other

    # ---- construction from files -----------------------------------------------------------
    @classmethod
    def from_work(
        cls,
        work: str | Path,
        *,
        configuration: str | None = None,
        folds: Sequence[int] | None = None,
        **options: Any,
    ) -> Predictor:
        """The trained folds of a work folder (``voxseg plan`` + ``voxseg train``).

        Weights come from ``runs/<cfg>/fold_<k>/checkpoint/model.safetensors``; ``folds`` default to
        every finished fold; the postprocessing defaults to ``crossval/<cfg>/postprocessing.json``
        when it exists. Other keyword options go to :class:`Predictor`.
        """
        from voxseg.experiment.layout import WorkDir

        wd = WorkDir(Path(work))
        plan = Plan.load(wd.require_plan())
        cfg = plan.configuration(configuration).name
        trained = wd.trained_folds(cfg)
        chosen = list(trained) if folds is None else [int(f) for f in folds]
        if not chosen:
            raise VoxsegError(
                f"{wd.root}: no trained fold of configuration {cfg!r} (runs/{cfg}/fold_*/run.json with status "
                f"finished); train first with `voxseg train {wd.root}`"
            )
        missing = [f for f in chosen if f not in trained]
        if missing:
            raise VoxsegError(
                f"{wd.root}: fold(s) {', '.join(map(str, missing))} of {cfg!r} are not trained "
                f"(trained: {', '.join(map(str, trained)) or 'none'}); pick trained folds with --folds"
            )
        if options.get("postprocessing") is None and wd.postprocessing_path(cfg).is_file():
            options["postprocessing"] = PostprocessingSpec.load(wd.postprocessing_path(cfg))
        files = [wd.checkpoint_dir(cfg, f) / "model.safetensors" for f in chosen]
        predictor = cls.from_weights(plan, files, configuration=cfg, **options)
        predictor.model_id = f"work:{wd.root.resolve()}#{cfg}"
        predictor.folds = tuple(chosen)
        return predictor

    @classmethod
    def from_weights(
        cls,
        plan: Plan,
        weight_files: Sequence[str | Path],
        *,
        configuration: str | None = None,
        postprocessing: PostprocessingSpec | None = None,
        **options: Any,
    ) -> Predictor:
        """Build the configuration's network once per safetensors file and load its weights."""
        from safetensors.torch import load_file

        from voxseg.nets import build_network

        config = plan.configuration(configuration)
        networks = []
        for path in map(Path, weight_files):
            if not path.is_file():
                raise VoxsegError(f"{path}: weight file not found (train the fold or check the model path)")
            net = build_network(config.network)
            try:
                net.load_state_dict(load_file(str(path), device="cpu"))
            except (RuntimeError, OSError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise VoxsegError(
                    f"{path}: weights do not fit the plan's {config.network.name!r} network ({first[:200]}); "
                    "use the plan they were trained with"
                ) from None
            networks.append(net)
        return cls(networks, plan, configuration=config.name, postprocessing=postprocessing, **options)

    # ---- settings --------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The options that shape a prediction (JSON-ready; recorded in batch manifests)."""
        return {
            "configuration": self.configuration,
            "folds": None if self.folds is None else list(self.folds),
            "networks": len(self.networks),
            "tta": self.tta,
            "overlap": self.overlap,
            "precision": self.precision,
            "device": str(self.device),
            "threshold": self.threshold,
            "postprocessing": self.postprocessing.to_json(),
            "model_sha256": self.model_sha256,
        }

    def __repr__(self) -> str:
        return (
            f"Predictor({self.model_id}, configuration={self.configuration!r}, networks={len(self.networks)}, "
            f"tta={self.tta}, overlap={self.overlap}, precision={self.precision!r}, device={str(self.device)!r})"
        )

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
            The model is interactive (it needs points: :func:`voxseg.segment_from_points`).
        """
        refuse_interactive(self.plan, self.model_id)
        t_start = time.perf_counter()
        seconds: dict[str, float] = {}
        channels = self._channels(images, mask)
        first = channels[0]
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
        probs = self._predict_array(data, progress)
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
        labels = self._labels(restored) if restored.dtype.kind == "f" else self._class_values(restored)
        if not probabilities:
            restored = None
        elif restored.dtype != np.float16:
            restored = restored.astype(np.float16)
        seconds["restore"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if mask is not None:
            labels[np.asarray(mask.array) == 0] = 0
        result = Volume.like(labels, first.geometry)
        if not self.postprocessing.is_identity:
            result = apply_postprocessing(result, self.postprocessing)
        seconds["postprocess"] = time.perf_counter() - t0
        seconds["total"] = time.perf_counter() - t_start
        return Prediction(result, restored, {k: round(v, 4) for k, v in seconds.items()})

    def _channels(self, images: Volume | Sequence[Volume], mask: Volume | None) -> list[Volume]:
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
                )
        return channels

    def _predict_array(self, data: np.ndarray, progress: Callable[[int, int], None] | None) -> np.ndarray:
        """Probabilities ``(K, *spatial)`` on the preprocessed grid; 2D configs of 3D data slice by slice."""
        nd = self.config.spatial_dims
        spatial = tuple(data.shape[1:])
        num_classes = self._num_outputs()
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
        if fixed is not None and tuple(fixed) != spatial:
            data = fit_shape(data, fixed)
        probs = sliding_window(
            data,
            self._predictor,
            self.config.patch_size,
            overlap=self.overlap,
            batch_size=self.batch_size,
            device=self.device,
            out_dtype=dtype,
            progress=progress,
        )
        if fixed is not None and tuple(fixed) != spatial:
            probs = unfit_shape(probs, spatial, background=0 if self.activation == "softmax" else None)
        return probs

    def _num_outputs(self) -> int:
        if self.num_outputs is not None:
            return self.num_outputs
        return self.plan.num_classes

    def _labels(self, probs: np.ndarray) -> np.ndarray:
        labels = probabilities_to_labels(probs, threshold=self.threshold)
        if probs.shape[0] > 1:
            return self._class_values(labels)
        if labels.dtype != np.uint8 and int(labels.max(initial=0)) <= 255:
            labels = labels.astype(np.uint8)
        return labels

    def _class_values(self, labels: np.ndarray) -> np.ndarray:
        """Channel indices (argmax) -> the plan's label values."""
        values = self.plan.class_values
        if values != tuple(range(len(values))):
            lut = np.asarray(values, dtype=np.uint16 if max(values) > 255 else np.uint8)
            labels = lut[labels]
        elif labels.dtype != np.uint8 and int(labels.max(initial=0)) <= 255:
            labels = labels.astype(np.uint8)
        return labels


def _device(device: Any) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r} (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} is not available (torch sees no CUDA GPU); use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r} is not supported (use cpu, cuda or cuda:N)")
    return dev


def _native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_supports_bf16()


def _check_options(overlap: Any, precision: Any, threshold: Any, batch_size: Any, plan: Plan) -> None:
    if not isinstance(overlap, (int, float)) or isinstance(overlap, bool) or not 0 <= overlap < 1:
        raise ConfigError(f"overlap must be in [0, 1), got {overlap!r}")
    if precision not in PRECISION_CHOICES:
        raise ConfigError(f"unknown precision {precision!r} (choose from {', '.join(PRECISION_CHOICES)})")
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
    require_same_grid(
        mask,
        image,
        what="mask",
        reference_name="the image",
        fix="the mask must lie on the image's voxel grid (same shape, spacing, origin, direction)",
        fix_geometry="resample the mask onto the image's grid",
    )


def _is_identity(props: Any) -> bool:
    """The preprocessed grid is the original grid (no crop, no resampling)."""
    return tuple(props.shape_after_resampling) == tuple(props.original_shape) and props.crop_box.is_full(
        props.original_shape
    )
