"""One case through preprocessing (crop → normalize → resample) and back to its original geometry.

The same functions run at training time (:func:`preprocess_case` on each training case) and at
prediction time (:func:`preprocess_case` on the input, then :func:`restore_to_original` or
:func:`restore_probabilities` on the network output), so a prediction overlays its input exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxseg.errors import ConfigError, InputImageError
from voxseg.fingerprint.cropping import CropBox, crop, crop_to_nonzero, uncrop
from voxseg.io import Geometry, Volume, require_same_grid
from voxseg.planning.normalization import Normalization

from .intensity import _normalize_inplace
from .resampling import lowres_axis, resample_to_shape, resampled_shape

__all__ = [
    "CaseProperties",
    "PreprocessedCase",
    "preprocess_case",
    "restore_to_original",
    "restore_probabilities",
    "full_target_spacing",
]

INVERSE_ORDER = 1  # labels, probabilities and float maps go back with linear interpolation
ORDER_Z = 1  # along the low-resolution axis of anisotropic data, both ways (nnU-Net: 0; see docs)


@dataclass(frozen=True)
class CaseProperties:
    """Everything needed to map a preprocessed array back onto the original image (JSON-ready).

    Spatial tuples are in array axis order (see :mod:`voxseg.io.volume`).
    """

    original_shape: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[tuple[float, ...], ...]
    crop_box: CropBox
    shape_after_crop: tuple[int, ...]
    shape_after_resampling: tuple[int, ...]
    target_spacing: tuple[float, ...]
    lowres_axis: int | None = None
    anisotropy_threshold: float = 3.0

    @property
    def geometry(self) -> Geometry:
        """The original image's geometry."""
        return Geometry(self.spacing, self.origin, self.direction)

    @property
    def resampled_spacing(self) -> tuple[float, ...]:
        """The spacing actually reached (the target, up to the rounding of the shape)."""
        return tuple(
            s * n / m for s, n, m in zip(self.spacing, self.shape_after_crop, self.shape_after_resampling, strict=True)
        )

    def preprocessed_geometry(self) -> Geometry:
        """Geometry of the preprocessed grid in the original world coordinates."""
        first = [
            start + 0.5 * n / m - 0.5
            for start, n, m in zip(self.crop_box.start, self.shape_after_crop, self.shape_after_resampling, strict=True)
        ]
        offset = np.asarray(self.direction) @ (np.asarray(first) * np.asarray(self.spacing))
        origin = tuple(float(v) for v in np.asarray(self.origin) + offset)
        return Geometry(self.resampled_spacing, origin, self.direction)

    def to_json(self) -> dict[str, Any]:
        return {
            "original_shape": list(self.original_shape),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": [list(row) for row in self.direction],
            "crop_box": self.crop_box.to_json(),
            "shape_after_crop": list(self.shape_after_crop),
            "shape_after_resampling": list(self.shape_after_resampling),
            "target_spacing": list(self.target_spacing),
            "lowres_axis": self.lowres_axis,
            "anisotropy_threshold": self.anisotropy_threshold,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CaseProperties:
        try:
            return cls(
                original_shape=tuple(int(v) for v in data["original_shape"]),
                spacing=tuple(float(v) for v in data["spacing"]),
                origin=tuple(float(v) for v in data["origin"]),
                direction=tuple(tuple(float(v) for v in row) for row in data["direction"]),
                crop_box=CropBox.from_json(data["crop_box"]),
                shape_after_crop=tuple(int(v) for v in data["shape_after_crop"]),
                shape_after_resampling=tuple(int(v) for v in data["shape_after_resampling"]),
                target_spacing=tuple(float(v) for v in data["target_spacing"]),
                lowres_axis=None if data.get("lowres_axis") is None else int(data["lowres_axis"]),
                anisotropy_threshold=float(data.get("anisotropy_threshold", 3.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid case properties ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True, eq=False)
class PreprocessedCase:
    """A preprocessed case.

    Attributes
    ----------
    data
        float32 ``(C, *spatial)``, C-contiguous.
    label
        uint8 (or int16 when a value exceeds 255) ``(*spatial)``, ignore label kept; None without a label.
    properties
        How to go back to the original geometry.
    class_locations
        Label value -> ``(N, ndim)`` int array of sampled voxel indices (filled by the store).
    """

    data: np.ndarray
    label: np.ndarray | None
    properties: CaseProperties
    class_locations: Mapping[int, np.ndarray] = field(default_factory=dict)


def full_target_spacing(target_spacing: Sequence[float], spacing: Sequence[float]) -> tuple[float, ...]:
    """The target spacing with one value per axis.

    A 3D image with a 2-value target (a 2D configuration, nnU-Net's convention) keeps its own
    spacing along axis 0.
    """
    target = tuple(float(v) for v in target_spacing)
    if len(spacing) == 3 and len(target) == 2:
        target = (float(spacing[0]), *target)
    if len(target) != len(spacing):
        raise ConfigError(f"target spacing {target} has {len(target)} values for a {len(spacing)}D image")
    if not all(math.isfinite(t) and t > 0 for t in target):
        raise ConfigError(f"target spacing must be positive, got {target}")
    return target


def _check_images(images: Sequence[Volume], label: Volume | None) -> None:
    if len(images) == 0:
        raise InputImageError(None, "no image channel given", "pass one Volume per channel")
    first = images[0]
    for k, img in enumerate(images[1:], start=1):
        require_same_grid(
            img,
            first,
            what=f"channel {k}",
            reference_name="channel 0",
            fix="all channels of a case must share one voxel grid",
            fix_geometry="resample the channels onto one grid first",
        )
    if label is not None:
        fix = "the label must be drawn on the image's voxel grid"
        require_same_grid(label, first, what="label", reference_name="the image", fix=fix)


def _label_array(label: np.ndarray) -> np.ndarray:
    """The label as uint8 (values <= 255) or int16; refuses negative or fractional values."""
    if label.dtype == bool:
        return label.astype(np.uint8)
    if label.dtype.kind == "f" and not np.array_equal(label, np.round(label)):
        raise InputImageError(None, "label holds non-integer values", "a label image holds integer class values")
    lo, hi = (float(label.min()), float(label.max())) if label.size else (0.0, 0.0)
    if lo < 0 or hi > np.iinfo(np.int16).max:
        raise InputImageError(
            None,
            f"label values must lie in 0..32767, found {lo:g}..{hi:g}",
            "class values are small non-negative integers",
        )
    return label.astype(np.uint8 if hi <= 255 else np.int16, copy=False)


def preprocess_case(
    images: Sequence[Volume],
    label: Volume | None = None,
    *,
    target_spacing: Sequence[float],
    normalization: Sequence[Normalization],
    anisotropy_threshold: float = 3.0,
    case_id: str = "",
) -> PreprocessedCase:
    """Crop to nonzero, normalize each channel, resample to ``target_spacing``.

    Parameters
    ----------
    images
        One Volume per channel, all on one grid (shape, spacing, origin, direction).
    label
        Optional label on the same grid (integer values, the ignore label included).
    target_spacing
        Spacing (mm, array order) to resample to; see :func:`full_target_spacing` for 2-value targets.
    normalization
        One :class:`~voxseg.planning.Normalization` per channel.
    anisotropy_threshold
        Spacing ratio above which the low-resolution axis is resampled separately.
    case_id
        Used in log messages only.

    Raises
    ------
    InputImageError
        Channels or label on different grids, or an invalid label.
    ConfigError
        Wrong number of normalization schemes, or an invalid target spacing.
    """
    _check_images(images, label)
    if len(normalization) != len(images):
        raise ConfigError(f"{len(normalization)} normalization schemes for {len(images)} image channels")
    first = images[0]
    target = full_target_spacing(target_spacing, first.spacing)
    lab = None if label is None else _label_array(label.array)
    needs_mask = any(n.scheme == "zscore" and n.use_nonzero_mask for n in normalization)
    box, nonzero = crop_to_nonzero([img.array for img in images], lab, fill=needs_mask)
    data = np.empty((len(images), *box.shape), dtype=np.float32)
    for c, img in enumerate(images):
        data[c] = crop(img.array, box)
    _normalize_inplace(data, normalization, nonzero_mask=nonzero if needs_mask else None, name=case_id)
    del nonzero
    new_shape = resampled_shape(box.shape, first.spacing, target)
    axis = lowres_axis(first.spacing, target, anisotropy_threshold=anisotropy_threshold)
    data = _resample_channels(data, new_shape, normalization, axis)
    if lab is not None:
        lab = resample_to_shape(crop(lab, box), new_shape, order=1, is_label=True, lowres_axis=axis, order_z=ORDER_Z)
        lab = np.ascontiguousarray(lab)
    props = CaseProperties(
        original_shape=first.shape,
        spacing=first.spacing,
        origin=first.origin,
        direction=first.direction,
        crop_box=box,
        shape_after_crop=box.shape,
        shape_after_resampling=new_shape,
        target_spacing=target,
        lowres_axis=axis,
        anisotropy_threshold=float(anisotropy_threshold),
    )
    return PreprocessedCase(data, lab, props)


def _resample_channels(
    data: np.ndarray, shape: tuple[int, ...], normalization: Sequence[Normalization], axis: int | None
) -> np.ndarray:
    """Cubic B-spline per channel (``percentile_minmax`` clipped to [0, 1] again); ``mask`` channels
    as binary labels (linear, then argmax), so they stay 0/1."""
    if tuple(data.shape[1:]) == shape:
        return data

    def one(c: int) -> np.ndarray:
        if normalization[c].scheme == "mask":
            binary = (data[c] > 0.5).astype(np.uint8)
            out = resample_to_shape(binary, shape, order=1, is_label=True, lowres_axis=axis, order_z=ORDER_Z)
            return out.astype(np.float32)
        out = resample_to_shape(data[c], shape, order=3, lowres_axis=axis, order_z=ORDER_Z)
        if normalization[c].scheme == "percentile_minmax":  # the spline overshoots; the scheme promises [0, 1]
            np.clip(out, 0.0, 1.0, out=out)
        return out

    if data.shape[0] == 1:  # no second full-size copy for the common single-channel case
        return one(0)[None]
    out = np.empty((data.shape[0], *shape), dtype=np.float32)
    for c in range(data.shape[0]):
        out[c] = one(c)
    return out


def _check_shape(array: np.ndarray, expected: tuple[int, ...], what: str) -> None:
    if tuple(array.shape) != expected:
        raise ValueError(f"{what} has shape {tuple(array.shape)}, the preprocessed grid is {expected}")


def restore_to_original(array: np.ndarray, properties: CaseProperties, *, is_label: bool) -> np.ndarray:
    """Map an array on the preprocessed grid back onto the original image grid.

    Labels are resampled class by class (linear, running argmax; values and dtype kept) and 0
    outside the crop box; other arrays linearly (float32) and 0 outside.

    Returns
    -------
    numpy.ndarray
        Shape ``properties.original_shape``: wrap it with ``Volume.like(out, properties.geometry)``.
    """
    array = np.asarray(array)
    _check_shape(array, properties.shape_after_resampling, "array")
    back = resample_to_shape(
        array,
        properties.shape_after_crop,
        order=INVERSE_ORDER,
        is_label=is_label,
        lowres_axis=properties.lowres_axis,
        order_z=ORDER_Z,
    )
    return uncrop(back, properties.crop_box, properties.original_shape, fill=0)


def restore_probabilities(
    probabilities: np.ndarray,
    properties: CaseProperties,
    *,
    dtype: np.dtype | type = np.float32,
    background_channel: int | None = 0,
) -> np.ndarray:
    """Map class probabilities ``(C, *preprocessed)`` back to ``(C, *original_shape)``.

    Class by class (linear interpolation in float32, one class in memory at a time), written into
    an output of ``dtype`` (float32 or float16). Outside the crop box the background channel is 1
    and the others 0 (all 0 when ``background_channel`` is None, e.g. for sigmoid outputs).
    """
    probabilities = np.asarray(probabilities)
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"probabilities are restored as float16 or float32, got {dtype}")
    if probabilities.ndim != len(properties.original_shape) + 1:
        raise ValueError(f"probabilities must be (C, *spatial), got shape {probabilities.shape}")
    _check_shape(probabilities[0], properties.shape_after_resampling, "probabilities")
    out = np.zeros((probabilities.shape[0], *properties.original_shape), dtype=dtype)
    if background_channel is not None:
        out[background_channel] = 1
    inside = properties.crop_box.slices
    for c in range(probabilities.shape[0]):
        out[c][inside] = resample_to_shape(
            probabilities[c],
            properties.shape_after_crop,
            order=INVERSE_ORDER,
            lowres_axis=properties.lowres_axis,
            order_z=ORDER_Z,
        )
    return out


def restore_argmax(
    probabilities: np.ndarray, properties: CaseProperties, *, background_channel: int | None = 0
) -> np.ndarray:
    """The argmax over classes of :func:`restore_probabilities`, without holding the restored classes.

    Class by class, each class is resampled to the crop box (float32) and compared with the running
    maximum, so the memory is two crop-box float32 volumes and the labels instead of ``C`` volumes
    of the original shape (117 classes on a 1 mm brain: ~65 MB instead of ~1.7 GB in float16).
    Ties go to the lower channel, as ``argmax`` does. Outside the crop box the answer is
    ``background_channel`` (0 when None). Returns channel indices, uint8 (int32 above 256 channels).
    """
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != len(properties.original_shape) + 1:
        raise ValueError(f"probabilities must be (C, *spatial), got shape {probabilities.shape}")
    _check_shape(probabilities[0], properties.shape_after_resampling, "probabilities")
    channels = probabilities.shape[0]
    dtype = np.uint8 if channels <= 256 else np.int32
    labels = np.full(properties.original_shape, background_channel or 0, dtype=dtype)
    best = inside = None
    for c in range(channels):
        restored = resample_to_shape(
            probabilities[c], properties.shape_after_crop, order=INVERSE_ORDER,
            lowres_axis=properties.lowres_axis, order_z=ORDER_Z,
        )  # fmt: skip
        if best is None:  # a copy: resampling may hand back the input itself
            best, inside = np.array(restored, dtype=np.float32), np.zeros(restored.shape, dtype=dtype)
            continue
        restored = np.asarray(restored, dtype=np.float32)
        higher = restored > best
        inside[higher] = c
        np.maximum(best, restored, out=best)
        del restored, higher
    labels[properties.crop_box.slices] = inside if inside is not None else 0
    return labels
