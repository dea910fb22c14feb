"""Training inputs for interactive models: fresh simulated extreme points on every draw.

:class:`PromptSampler` plays the role of :class:`voxseg.training.sampling.PatchSampler` for an
interactive model. Each draw picks a case and one labelled object (a connected component of
one class), simulates jittered extreme points for it (:func:`~voxseg.interactive.extreme_points`),
crops the case to the points plus a margin, adds the prompt encoding as an extra channel and
fits the crop to the patch size. The target is that object alone: other objects in the crop are
background, as for a user who pointed at one object.

:func:`prompt_inputs` is the crop-and-encode step on its own, shared with inference (where the
points come from the user).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from voxseg.errors import ConfigError
from voxseg.fingerprint.cropping import CropBox
from voxseg.interactive.config import PromptConfig
from voxseg.interactive.encoding import crop_to_points, encode_points
from voxseg.interactive.points import extreme_points, jitter_points

__all__ = ["PromptSampler", "prompt_inputs", "LabelledObject", "find_objects"]


def prompt_inputs(
    data: np.ndarray,
    points: np.ndarray,
    *,
    config: PromptConfig,
    spacing: Sequence[float],
    encoding_channel: int = 0,
) -> tuple[np.ndarray, CropBox]:
    """Crop ``(C, *spatial)`` channels to the points plus ``config.margin_mm`` and add the encoding.

    Returns the ``(C + 1, *crop)`` float32 network input (the encoding of ``points`` over channel
    ``encoding_channel`` last) and the crop box in ``data``'s spatial grid.
    """
    data = np.asarray(data)
    ndim = data.ndim - 1
    if not 0 <= encoding_channel < data.shape[0]:
        raise ConfigError(f"encoding_channel {encoding_channel} is not one of the {data.shape[0]} image channels")
    (crop,), box = crop_to_points([data], points, margin_mm=config.margin_mm, spacing=spacing)
    local = np.asarray(points, dtype=np.int64) - np.asarray(box.start)
    channel = encode_points(
        crop[encoding_channel],
        local,
        method=config.encoding,
        spacing=spacing,
        **dict(config.encoding_params),
    )
    out = np.empty((data.shape[0] + 1, *crop.shape[-ndim:]), dtype=np.float32)
    out[:-1] = crop
    out[-1] = channel
    return out, box


@dataclass(frozen=True)
class LabelledObject:
    """One connected component of one class: its value, bounding box and one of its voxels."""

    value: int
    box: CropBox
    voxel: tuple[int, ...]


def find_objects(label: np.ndarray, *, ignore_label: int | None = None) -> list[LabelledObject]:
    """Connected components (face connectivity) of every foreground class of ``label``."""
    label = np.asarray(label)
    out = []
    for value in np.unique(label):
        if value == 0 or (ignore_label is not None and value == ignore_label):
            continue
        components, _ = ndi.label(label == value)
        for index, slices in enumerate(ndi.find_objects(components), start=1):
            if slices is None:
                continue
            local = np.argwhere(components[slices] == index)[0]
            box = CropBox(tuple(s.start for s in slices), tuple(s.stop for s in slices))
            out.append(
                LabelledObject(int(value), box, tuple(int(a + s.start) for a, s in zip(local, slices, strict=True)))
            )
    return out


def _object_mask(label: np.ndarray, obj: LabelledObject) -> np.ndarray:
    """The object's voxels inside its bounding box (the component holding ``obj.voxel``)."""
    region = np.asarray(label[obj.box.slices]) == obj.value
    components, _ = ndi.label(region)
    local = tuple(v - s for v, s in zip(obj.voxel, obj.box.start, strict=True))
    return components == components[local]


def _paste(mask: np.ndarray, mask_box: CropBox, box: CropBox) -> np.ndarray:
    """``mask`` (covering ``mask_box``) as seen inside ``box`` (False where it does not reach)."""
    out = np.zeros(box.shape, dtype=bool)
    lo = np.maximum(mask_box.start, box.start)
    hi = np.minimum(mask_box.stop, box.stop)
    if np.any(hi <= lo):
        return out
    src = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, mask_box.start, strict=True))
    dst = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, box.start, strict=True))
    out[dst] = mask[src]
    return out


def _fit_crop(arrays: list[np.ndarray], patch: tuple[int, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """A random ``patch`` window of larger crops, zero padding (at a random offset) around smaller ones."""
    shape = arrays[0].shape[-len(patch) :]
    src, dst = [], []
    for n, p in zip(shape, patch, strict=True):
        if n >= p:
            start = int(rng.integers(0, n - p + 1))
            src.append(slice(start, start + p))
            dst.append(slice(0, p))
        else:
            start = int(rng.integers(0, p - n + 1))
            src.append(slice(0, n))
            dst.append(slice(start, start + n))
    out = []
    for arr in arrays:
        lead = arr.shape[: arr.ndim - len(patch)]
        res = np.zeros(lead + patch, dtype=arr.dtype)
        res[(Ellipsis, *dst)] = arr[(Ellipsis, *src)]
        out.append(res)
    return out


def _fit_resize(image: np.ndarray, target: np.ndarray, patch: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Scale the whole crop to ``patch``: linear for the channels, nearest for the target."""
    zoom = [p / n for p, n in zip(patch, target.shape, strict=True)]
    channels = np.stack([ndi.zoom(c, zoom, order=1, grid_mode=True, mode="nearest") for c in image])
    labels = ndi.zoom(target, zoom, order=0, grid_mode=True, mode="nearest")
    return _exact(channels, patch), _exact(labels, patch)


def _exact(array: np.ndarray, patch: tuple[int, ...]) -> np.ndarray:
    """Trim or zero-pad the trailing axes to exactly ``patch`` (zoom can be off by one)."""
    out = np.zeros(array.shape[: array.ndim - len(patch)] + patch, dtype=array.dtype)
    common = tuple(slice(0, min(a, p)) for a, p in zip(array.shape[-len(patch) :], patch, strict=True))
    out[(Ellipsis, *common)] = array[(Ellipsis, *common)]
    return out


class PromptSampler:
    """Draw ``(image channels + prompt encoding, target)`` training pairs with fresh points.

    Parameters
    ----------
    cases
        Objects with ``data`` (``(C, *spatial)`` float32) and ``label`` arrays, e.g. from
        :func:`voxseg.training.sampling.load_cases` (preprocessed cases, memory-mapped).
    patch_size
        The network's input size (spatial).
    config
        Prompt settings (``plan.interactive``).
    spacing
        Voxel size of the preprocessed grid (the plan's target spacing), mm, array order.
    ignore_label
        Label of unannotated voxels: never an object, kept in the target.
    encoding_channel
        The image channel the geodesic encoding reads.

    Attributes
    ----------
    prompt_channels
        How many trailing input channels are prompts (augmented spatially only).
    """

    prompt_channels = 1

    def __init__(
        self,
        cases: Sequence,
        patch_size: Sequence[int],
        *,
        config: PromptConfig | None = None,
        spacing: Sequence[float],
        ignore_label: int | None = None,
        encoding_channel: int = 0,
    ):
        self.cases = list(cases)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.config = config or PromptConfig()
        self.spacing = tuple(float(s) for s in spacing)
        self.ignore_label = ignore_label
        self.encoding_channel = int(encoding_channel)
        if not self.cases:
            raise ConfigError("no training cases to sample from")
        ndim = np.asarray(self.cases[0].label).ndim
        if len(self.patch_size) != ndim or len(self.spacing) != ndim:
            raise ConfigError(f"patch size {self.patch_size} and spacing {self.spacing} must have {ndim} values")
        self.objects = [find_objects(c.label, ignore_label=ignore_label) for c in self.cases]
        self._usable = [i for i, objs in enumerate(self.objects) if objs]
        if not self._usable:
            raise ConfigError("no case has a labelled object: interactive training needs objects to point at")

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One pair: ``(C + 1, *patch)`` float32 input and ``(1, *patch)`` int16 target (0/1, ignore)."""
        image, target = self._draw(rng)
        image = self._extra_channels(image, target, rng)
        if self.config.fit == "resize":
            image, target = _fit_resize(image, target, self.patch_size)
        else:
            image, target = _fit_crop([image, target], self.patch_size, rng)
        return image, target[None]

    def _draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A case, an object, fresh points: the ``(C + 1, *crop)`` input and the crop's target."""
        i = self._usable[int(rng.integers(len(self._usable)))]
        case, objects = self.cases[i], self.objects[i]
        obj = objects[int(rng.integers(len(objects)))]
        mask = _object_mask(case.label, obj)
        cfg = self.config
        points = extreme_points(mask, rng=rng, inward=cfg.inward, spacing=self.spacing) + np.asarray(obj.box.start)
        label = np.asarray(case.label)
        if cfg.jitter_mm > 0:
            points = jitter_points(points, label.shape, rng=rng, jitter=cfg.jitter_mm, spacing=self.spacing)
        image, box = prompt_inputs(
            np.asarray(case.data), points, config=cfg, spacing=self.spacing, encoding_channel=self.encoding_channel
        )
        target = _paste(mask, obj.box, box).astype(np.int16)
        if self.ignore_label is not None:
            target[label[box.slices] == self.ignore_label] = self.ignore_label
        return image, target

    def _extra_channels(self, image: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Channels appended after the prompt encoding (none here; see ``RefineSampler``)."""
        return image

    def batch(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``batch_size`` pairs stacked: ``(B, C + 1, *patch)`` and ``(B, 1, *patch)``."""
        pairs = [self.sample(rng) for _ in range(batch_size)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
