"""nnU-Net v2's own inference arithmetic, for imported models: :class:`NnunetExactPredictor`.

voxseg's :class:`~voxseg.inference.Predictor` runs an imported model with voxseg's preprocessing and
blending, which agree with ``nnUNetv2_predict`` on ~99.4-99.8% of voxels (docs/nnunet.md). This
predictor reproduces nnU-Net's choices where they differ:

* resampling (:func:`resample_like_nnunet`): cubic spline with edge ("nearest") boundaries and the
  output clipped to the input's range (``skimage.transform.resize(mode="edge", anti_aliasing=False)``),
  ``order_z=0`` along a separate low-resolution axis (spacing ratio > 3, decided from the source
  spacing, then the target), logits resampled back with order 1;
* sliding window: nnU-Net's step rule, zero padding of axes shorter than the patch, gaussian
  (``sigma = patch / 8`` around ``patch // 2``) with its tails kept, logits averaged over tiles,
  mirrorings and folds, accumulated in float16 as ``nnUNetv2_predict`` does;
* labels: the argmax of the resampled logits.

It reuses voxseg's cropping (nonzero region, holes filled), normalization, channel checks, label
values and postprocessing. Resampling needs SciPy only.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from voxseg.errors import ConfigError
from voxseg.fingerprint.cropping import crop, crop_to_nonzero, uncrop
from voxseg.inference.predictor import Prediction, Predictor
from voxseg.inference.sliding_window import torch_runner
from voxseg.inference.window import sliding_window
from voxseg.inference.wrappers import MirrorTTA
from voxseg.io import Volume
from voxseg.preprocessing.intensity import normalize
from voxseg.preprocessing.pipeline import full_target_spacing

__all__ = ["NnunetExactPredictor", "resample_like_nnunet", "nnunet_gaussian", "nnunet_steps"]

ANISOTROPY = 3.0


def _lowres_axis(current: Sequence[float], new: Sequence[float]) -> int | None:
    for spacing in (current, new):
        sp = np.asarray(spacing, dtype=np.float64)
        if sp.max() / sp.min() > ANISOTROPY:
            axes = np.flatnonzero(sp.max() / sp == 1)
            return int(axes[0]) if axes.size == 1 else None
    return None


def _resize(x: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """skimage's ``resize(x, shape, order, mode="edge", anti_aliasing=False)`` on float64."""
    if tuple(x.shape) == tuple(shape):
        return x.copy()
    zoom = [m / n for n, m in zip(x.shape, shape, strict=True)]
    out = ndimage.zoom(x, zoom, order=order, mode="nearest", grid_mode=True)
    if order > 0:
        np.clip(out, x.min(), x.max(), out=out)
    return out


def resample_like_nnunet(
    data: np.ndarray,
    shape: Sequence[int],
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    *,
    order: int,
    order_z: int = 0,
) -> np.ndarray:
    """nnU-Net's ``resample_data_or_seg_to_shape`` for images/logits ``(C, *spatial)``; keeps the dtype."""
    shape = tuple(int(s) for s in shape)
    if tuple(data.shape[1:]) == shape:
        return data
    axis = _lowres_axis(current_spacing, new_spacing) if data.ndim == 4 else None
    out = np.zeros((data.shape[0], *shape), dtype=data.dtype)
    for c in range(data.shape[0]):
        x = data[c].astype(np.float64)
        if axis is None:
            out[c] = _resize(x, shape, order)
            continue
        inplane = [s for k, s in enumerate(shape) if k != axis]
        moved = np.moveaxis(x, axis, 0)
        here = np.stack([_resize(sl, inplane, order) for sl in moved])
        here = np.moveaxis(here, 0, axis)
        if here.shape[axis] != shape[axis]:
            coords = np.meshgrid(
                *[(n / m) * (np.arange(m) + 0.5) - 0.5 for n, m in zip(here.shape, shape, strict=True)], indexing="ij"
            )
            here = ndimage.map_coordinates(here, np.stack(coords), order=order_z, mode="nearest")
        out[c] = here
    return out


def nnunet_gaussian(patch_size: Sequence[int]) -> np.ndarray:
    """nnU-Net's tile weights: a unit impulse at ``patch // 2`` blurred with ``sigma = patch / 8``,
    scaled to a maximum of 10, in float16, zeros replaced by the smallest nonzero weight."""
    tmp = np.zeros(patch_size)
    tmp[tuple(p // 2 for p in patch_size)] = 1
    g = ndimage.gaussian_filter(tmp, [p / 8 for p in patch_size], 0, mode="constant", cval=0)
    g /= g.max() / 10
    out = g.astype(np.float16)
    out[out == 0] = out[out != 0].min()
    return out


def nnunet_steps(size: int, patch: int, step: float = 0.5) -> list[int]:
    """Tile starts along one axis (nnU-Net's ``compute_steps_for_sliding_window``)."""
    n = math.ceil((size - patch) / (patch * step)) + 1
    if n == 1:
        return [0]
    width = (size - patch) / (n - 1)
    return [int(np.round(width * i)) for i in range(n)]


class NnunetExactPredictor(Predictor):
    """A :class:`~voxseg.inference.Predictor` that computes as ``nnUNetv2_predict`` does (see module).

    Build it like a Predictor, e.g. ``NnunetExactPredictor.from_bundle("model.zip", tta=False)``.
    ``overlap`` is nnU-Net's ``1 - step_size``; ``precision`` applies to the network as usual.
    """

    @classmethod
    def from_bundle(cls, bundle: Any, *, folds: Sequence[int] | None = None, **options: Any) -> NnunetExactPredictor:
        from voxseg.bundle import resolve_bundle
        from voxseg.bundle.notice import terms

        opened = resolve_bundle(bundle)
        m = opened.manifest
        chosen = m.folds if folds is None else tuple(int(f) for f in folds)
        options.setdefault("postprocessing", m.postprocessing)
        options.setdefault("precision", "fp32")
        networks = [opened.network(f) for f in chosen]
        out = cls(networks, m.plan, configuration=m.configuration, **options)
        out.model_id, out.folds, out.model_sha256, out.model_terms = m.reference, chosen, opened.sha256, terms(m)
        return out

    def predict(
        self,
        images: Volume | Sequence[Volume],
        *,
        mask: Volume | None = None,
        probabilities: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> Prediction:
        """Predict one case with nnU-Net's arithmetic; ``probabilities`` are the softmax of the logits."""
        if self.tta_confident:
            raise ConfigError("exact nnU-Net arithmetic runs every mirroring; drop --tta-confident (or --exact)")
        if self.skip_background:
            raise ConfigError("exact nnU-Net arithmetic runs every tile; drop --skip-background (or --exact)")
        t_start = time.perf_counter()
        channels = self.channels(images, mask)
        first = channels[0]
        flat = first.ndim == 2  # 2D images: nnU-Net's (1, y, x) with a large slice spacing
        spacing = (999.0, *first.spacing) if flat else tuple(first.spacing)
        raw = np.stack([np.asarray(v.array, dtype=np.float32) for v in channels])
        if flat:
            raw = raw[:, None]
        box, nonzero = crop_to_nonzero(raw)
        data = normalize(crop(raw, box), self.plan.normalization, nonzero_mask=nonzero)
        target = full_target_spacing(self.config.target_spacing, spacing)
        cropped = tuple(data.shape[1:])
        new_shape = [round(s / t * n) for s, t, n in zip(spacing, target, cropped, strict=True)]
        data = resample_like_nnunet(data, new_shape, spacing, target, order=3)
        seconds = {"preprocess": time.perf_counter() - t_start}
        t0 = time.perf_counter()
        logits = self._fold_logits(np.ascontiguousarray(data))
        seconds["network"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        logits = resample_like_nnunet(logits, cropped, target, spacing, order=1)
        labels = self._labels_from_logits(logits)
        full = uncrop(labels, box, raw.shape[1:], fill=0)
        probs = None
        if probabilities:
            soft = torch.softmax(torch.from_numpy(logits.astype(np.float32)), 0).numpy()
            probs = np.zeros((soft.shape[0], *raw.shape[1:]), dtype=np.float16)
            probs[0] = 1
            probs[(slice(None), *box.slices)] = soft
            probs = probs[:, 0] if flat else probs
        full = full[0] if flat else full
        seconds["restore"] = time.perf_counter() - t0
        return self._finish(full, probs, first, mask, seconds, t_start)  # mask, postprocessing: the pipeline's

    def _labels_from_logits(self, logits: np.ndarray) -> np.ndarray:
        idx = np.argmax(logits, axis=0)
        values = np.asarray(self.plan.class_values, dtype=np.uint16 if max(self.plan.class_values) > 255 else np.uint8)
        return values[idx]

    def _fold_logits(self, data: np.ndarray) -> np.ndarray:
        total = None
        for net in self.networks:
            net.eval()
            logits = self._sliding_window(data, net)
            total = logits if total is None else np.add(total, logits, out=total)
        if len(self.networks) > 1:
            total /= len(self.networks)
        return total

    def _mirrored(self, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """nnU-Net's mirroring: the mean over the identity and every flip combination, summed in its
        order (:class:`~voxseg.inference.MirrorTTA` adds them in that order, in float32, several
        flips per network call for small patches: only the convolutions' rounding differs)."""
        axes = tuple(self.config.mirror_axes) if self.tta else ()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return MirrorTTA(net, axes)(x)

    def _sliding_window(self, data: np.ndarray, net: torch.nn.Module) -> np.ndarray:
        """nnU-Net's tiling (its steps on the zero-padded grid, its Gaussian, float16 sums) run by
        voxseg's one window; a 2D model on 3D data goes slice by slice."""
        patch = tuple(self.config.patch_size)
        nd = len(patch)
        spatial = tuple(data.shape[1:])
        lead = spatial[: len(spatial) - nd]
        grid = spatial[len(spatial) - nd :]
        starts = []
        for size, p in zip(grid, patch, strict=True):
            padded = max(size, p)
            below = (padded - size) // 2
            starts.append([s - below for s in nnunet_steps(padded, p, 1.0 - self.overlap)])
        gaussian = nnunet_gaussian(patch)
        run = torch_runner(lambda x: self._mirrored(net, x), self.device)
        out = np.empty((self.num_classes, *spatial), dtype=np.float16)
        for prefix in itertools.product(*[range(n) for n in lead]):
            out[(slice(None), *prefix)] = sliding_window(
                data[(slice(None), *prefix)], run, patch, grid=starts, weights=gaussian, out_dtype=np.float16
            )
        return out
