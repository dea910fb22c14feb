"""Predictor wrappers: mirror test-time augmentation, fold ensembles, bf16 autocast; labels from probabilities.

Every wrapper is itself a predictor (``(B, C, *patch) -> (B, K, *patch)``), so they compose and plug
into :func:`~voxseg.inference.sliding_window`::

    nets = [AutocastPredictor(model, precision="bf16") for model in fold_models]
    predictor = Ensemble([MirrorTTA(net) for net in nets], activation="softmax")
    probs = sliding_window(image, predictor, patch_size, overlap=0.5)
    labels = probabilities_to_labels(probs)

:class:`MirrorTTA` averages what its predictor returns (logits of a network), :class:`Ensemble`
applies the activation per member and averages probabilities, as nnU-Net does across folds.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from typing import Literal, cast

import numpy as np
import torch

from voxseg.errors import ConfigError
from voxseg.inference.runtime import resolve_precision
from voxseg.inference.tiling import TILE_BATCH_VOXELS, confident_core

__all__ = ["MirrorTTA", "Ensemble", "AutocastPredictor", "probabilities_to_labels", "ACTIVATIONS"]

log = logging.getLogger(__name__)

PatchPredictor = Callable[[torch.Tensor], torch.Tensor]
ACTIVATIONS: tuple[str | None, ...] = ("softmax", "sigmoid", None)


class MirrorTTA:
    """Average a predictor over every combination of flips of the given spatial axes.

    Parameters
    ----------
    predictor
        The wrapped predictor.
    axes
        Spatial axes to mirror (0 = first spatial axis, i.e. z in 3D); None mirrors every spatial
        axis of the input. ``n`` axes cost ``2**n`` predictor calls (8 in 3D).

    confident
        Confident-tile TTA: when given (a probability in (0.5, 1), e.g.
        :data:`~voxseg.inference.tiling.CONFIDENT_PROBABILITY`), the un-flipped pass runs first and
        a tile whose every core voxel's most probable class reaches it keeps that pass alone (softmax;
        sigmoid for one channel); only the other tiles run the remaining flips. None: every flip
        of every tile. ``tiles`` counts ``[tiles seen, tiles kept confident]``.

    Each flipped input's output is flipped back before averaging (in float32).
    """

    def __init__(self, predictor: PatchPredictor, axes: Sequence[int] | None = None, *, confident: float | None = None):
        if not callable(predictor):
            raise ConfigError(f"MirrorTTA needs a callable predictor, got {type(predictor).__name__}")
        if axes is not None:
            axes = tuple(axes)
            if not all(isinstance(a, int) and a >= 0 for a in axes) or len(set(axes)) != len(axes):
                raise ConfigError(f"mirror axes must be distinct spatial axis indices >= 0, got {axes!r}")
            axes = tuple(sorted(axes))
        if confident is not None and not 0.5 < confident < 1:
            raise ConfigError(f"a confidence level must be in (0.5, 1), got {confident!r}")
        self.predictor = predictor
        self.axes: tuple[int, ...] | None = axes
        self.confident = None if confident is None else float(confident)
        self.tiles = [0, 0]

    def flips(self, spatial_ndim: int) -> list[tuple[int, ...]]:
        """The tensor dims flipped in each pass for a ``(B, C, *spatial)`` input (the first is ``()``)."""
        axes = tuple(range(spatial_ndim)) if self.axes is None else self.axes
        if axes and max(axes) >= spatial_ndim:
            raise ConfigError(f"mirror axes {axes} do not exist in a {spatial_ndim}D input (axes count from 0)")
        dims = [a + 2 for a in axes]
        return [combo for r in range(len(dims) + 1) for combo in itertools.combinations(dims, r)]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flips = self.flips(x.ndim - 2)
        if self.confident is None or len(flips) == 1:
            return self._sum(x, flips, None).div_(len(flips))
        first = self.predictor(x).to(torch.float32, copy=True)
        sure = _confident(first, self.confident)
        kept = int(sure.sum())
        self.tiles[0] += x.shape[0]
        self.tiles[1] += kept
        if kept == x.shape[0]:
            return first
        if kept == 0:
            return self._sum(x, flips[1:], first).div_(len(flips))
        rows = (~sure).nonzero().flatten()
        first[rows] = self._sum(x[rows], flips[1:], first[rows]).div_(len(flips))
        return first

    def _sum(self, x: torch.Tensor, flips: list[tuple[int, ...]], total: torch.Tensor | None) -> torch.Tensor:
        """``total`` (float32, owned) plus the predictor's outputs over ``flips``, flipped back."""
        n = x.shape[0]
        # several flips per predictor call while the call stays within TILE_BATCH_VOXELS (small
        # tiles: per-call overheads dominate a CPU forward pass); the sum keeps the flips' order
        group = max(1, min(len(flips), TILE_BATCH_VOXELS // max(1, n * math.prod(x.shape[2:]))))
        for k in range(0, len(flips), group):
            chunk = flips[k : k + group]
            inputs = [x.flip(dims) if dims else x for dims in chunk]
            out = self.predictor(inputs[0] if len(chunk) == 1 else torch.cat(inputs))
            for j, dims in enumerate(chunk):
                y = out if len(chunk) == 1 else out[j * n : (j + 1) * n]
                if dims:
                    y = y.flip(dims)
                if total is None:
                    total = y.to(torch.float32, copy=True)  # never alias the predictor's output or input
                else:
                    total.add_(y)
        return cast(torch.Tensor, total)

    def __repr__(self) -> str:
        return f"MirrorTTA({self.predictor!r}, axes={self.axes}, confident={self.confident})"


def _confident(logits: torch.Tensor, level: float) -> torch.Tensor:
    """Per tile: every voxel of its core has a most probable class of probability >= ``level``
    (torch twin of :func:`voxseg.inference.tiling.confident_tiles`)."""
    flat = logits[(slice(None), slice(None), *confident_core(logits.shape[2:]))].flatten(2)
    if flat.shape[1] == 1:
        return (flat[:, 0].abs() >= math.log(level / (1 - level))).all(dim=1)
    spread = torch.exp(flat - flat.amax(dim=1, keepdim=True)).sum(dim=1)
    return (spread <= 1.0 / level).all(dim=1)


class Ensemble:
    """Average the probabilities of several predictors (fold models), in float32.

    Parameters
    ----------
    predictors
        One or more predictors with the same number of output channels.
    activation
        Applied to each member's output before averaging: ``"softmax"`` over the channel axis
        (mutually exclusive classes), ``"sigmoid"`` (independent channels, e.g. one foreground
        channel) or None (members already return probabilities, or averaging logits is wanted).
    """

    def __init__(
        self, predictors: Sequence[PatchPredictor], activation: Literal["softmax", "sigmoid"] | None = "softmax"
    ):
        predictors = list(predictors)
        if not predictors or not all(callable(p) for p in predictors):
            raise ConfigError("Ensemble needs a non-empty list of callable predictors")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {activation!r} (choose from softmax, sigmoid, None)")
        self.predictors = predictors
        self.activation = activation

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        total: torch.Tensor | None = None
        for predictor in self.predictors:
            y = _activate(predictor(x), self.activation)
            if total is None:  # a fresh float32 tensor: never modify a member's own output in place
                total = y.to(torch.float32, copy=True) if self.activation is None else y.float()
            elif y.shape != total.shape:
                raise ConfigError(
                    f"ensemble members disagree on the output shape: {tuple(total.shape)} vs {tuple(y.shape)}"
                )
            else:
                total.add_(y)
        return cast(torch.Tensor, total).div_(len(self.predictors))

    def __repr__(self) -> str:
        return f"Ensemble({len(self.predictors)} predictors, activation={self.activation!r})"


def _activate(y: torch.Tensor, activation: str | None) -> torch.Tensor:
    if activation == "softmax":
        if y.shape[1] == 1:
            raise ConfigError(
                "softmax over a single output channel is always 1; use activation='sigmoid' for one-channel models"
            )
        return torch.softmax(y.float(), dim=1)
    if activation == "sigmoid":
        return torch.sigmoid(y.float())
    return y


class AutocastPredictor:
    """Run a torch module as a predictor: eval mode, ``inference_mode``, optional bf16 autocast.

    Parameters
    ----------
    model
        The network; it is put in eval mode and moved to ``device`` (in place).
    precision
        ``"fp32"`` or ``"bf16"`` (``torch.autocast`` with bfloat16; falls back to fp32 where the
        CPU/GPU has no native bf16, see :func:`~voxseg.inference.runtime.resolve_precision`).
        The precision really used is in ``self.precision``.
    device
        Where the model runs (default: where its parameters are). Inputs are moved there.

    Outputs are float32 tensors on ``device``. A model that returns a list or tuple (deep
    supervision) contributes its first, full-resolution output.
    """

    def __init__(self, model: torch.nn.Module, *, precision: str = "fp32", device: str | torch.device | None = None):
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"AutocastPredictor needs a torch.nn.Module, got {type(model).__name__}")
        if device is None:
            param = next(model.parameters(), None)
            device = param.device if param is not None else "cpu"
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model = model.eval().to(self.device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        enabled = self.precision == "bf16"
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled):
            y = self.model(x.to(self.device, non_blocking=True))
        if isinstance(y, (list, tuple)):
            y = y[0]
        return y if y.dtype == torch.float32 else y.float()

    def __repr__(self) -> str:
        return (
            f"AutocastPredictor({type(self.model).__name__}, precision={self.precision!r}, device={str(self.device)!r})"
        )


def probabilities_to_labels(
    probabilities: np.ndarray | torch.Tensor, *, threshold: float | None = None, chunk_voxels: int = 1 << 24
) -> np.ndarray | torch.Tensor:
    """Labels from ``(K, *spatial)`` probabilities, without a volume-sized int64 temporary.

    - ``K == 1`` (a sigmoid foreground channel): ``1`` where ``p > threshold`` (default 0.5).
    - ``K == 2`` (softmax background/foreground): ``1`` where ``p[1] > threshold``; the default 0.5
      gives the argmax (ties go to background).
    - ``K > 2``: the argmax over channels (a ``threshold`` is refused).

    Returns uint8 labels (int32 above 256 classes) of shape ``spatial``: numpy for numpy input, a
    tensor on the same device for tensor input. The work is done in slabs of about ``chunk_voxels``
    voxels along the first spatial axis.
    """
    if isinstance(probabilities, np.ndarray):  # the pipeline's own rule, in numpy
        from voxseg.inference.pipeline import labels_from_probabilities

        return labels_from_probabilities(probabilities, threshold=threshold, chunk_voxels=chunk_voxels)
    probs = probabilities
    if not isinstance(probs, torch.Tensor) or probs.ndim < 2:
        raise ConfigError("probabilities_to_labels needs a (K, *spatial) array with at least one spatial axis")
    k = probs.shape[0]
    if threshold is not None and k > 2:
        raise ConfigError(f"a threshold applies to 1 or 2 output channels, got {k} (labels come from the argmax)")
    if threshold is not None and not 0 <= threshold <= 1:
        raise ConfigError(f"threshold must be in [0, 1], got {threshold}")
    t = 0.5 if threshold is None else float(threshold)
    labels = torch.empty(probs.shape[1:], dtype=torch.uint8 if k <= 256 else torch.int32, device=probs.device)
    slab = max(1, chunk_voxels // max(1, probs[0, 0].numel()))
    with torch.inference_mode():
        for z in range(0, probs.shape[1], slab):
            part = probs[:, z : z + slab]
            labels[z : z + slab] = part[k - 1] > t if k <= 2 else part.argmax(dim=0)
    return labels
