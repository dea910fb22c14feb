"""Point and click encodings: the extra input channels of an interactive network.

- ``"geodesic"``: InteractiveNet's exponentialised geodesic distance map
  ``exp(-d_geo / scale)``, 1 at the points and falling faster across strong edges than inside
  homogeneous tissue (see :mod:`voxseg.interactive.geodesic` for the distance).
- ``"gaussian"``: ``exp(-d^2 / (2 sigma_mm^2))`` of the Euclidean distance ``d`` (mm) to the
  nearest point: a heat map that ignores the image.

The method is a plan field (``plan.interactive["encoding"]``); its parameters are the keyword
arguments of :func:`geodesic_map` / :func:`gaussian_map`. Maps are computed on the crop around
the object (:func:`crop_to_points`), where the network sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from voxseg.errors import ConfigError
from voxseg.fingerprint.cropping import CropBox, crop
from voxseg.interactive.geodesic import geodesic_distance
from voxseg.interactive.points import Click
from voxseg.registry import Registry

__all__ = [
    "ENCODINGS",
    "geodesic_map",
    "gaussian_map",
    "encode_points",
    "encode_clicks",
    "crop_to_points",
    "seed_mask",
]

Encoder = Callable[..., np.ndarray]
ENCODINGS: Registry[Encoder] = Registry("point encoding")


def seed_mask(shape: Sequence[int], points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Boolean array of ``shape``, True at the (rounded) points; points outside are an error."""
    shape = tuple(int(s) for s in shape)
    pts = np.rint(np.asarray(points, dtype=np.float64)).astype(np.int64).reshape(-1, len(shape))
    if len(pts) == 0:
        raise ConfigError("no points to encode")
    if np.any(pts < 0) or np.any(pts >= np.asarray(shape)):
        raise ConfigError(f"points {pts.tolist()} are not all inside the array of shape {shape}")
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(pts.T)] = True
    return mask


def _spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    sp = tuple(float(s) for s in spacing)
    if len(sp) != ndim or any(not np.isfinite(s) or s <= 0 for s in sp):
        raise ConfigError(f"spacing must be {ndim} positive numbers, got {list(spacing)}")
    return sp


@ENCODINGS.register("geodesic")
def geodesic_map(
    image: np.ndarray,
    points: np.ndarray | Sequence[Sequence[float]],
    *,
    spacing: Sequence[float] | None = None,
    lamb: float = 1.0,
    iterations: int = 2,
    scale: float = 1.0,
) -> np.ndarray:
    """Exponentialised geodesic distance map ``exp(-d / scale)`` from the points (float32).

    Parameters
    ----------
    image
        2D or 3D intensities, normalised (z-score): the intensity term uses them as given.
    points
        ``(N, ndim)`` voxel indices (rounded) inside ``image``.
    spacing
        Voxel size (mm, array order); default 1.
    lamb
        Weight of the intensity term in ``[0, 1]``: 0 is a Euclidean distance in mm, 1 (the
        default, InteractiveNet's) an intensity-only distance; in between mixes both.
    iterations
        Raster-scan iterations; 2 give the exact graph distance on most images, 3 on noise.
    scale
        Distance at which the map falls to ``1/e`` (units of ``d``: mm for ``lamb = 0``,
        intensity for ``lamb = 1``).

    Returns
    -------
    numpy.ndarray
        float32 in ``(0, 1]``, 1 at the points.
    """
    image = np.asarray(image)
    if scale <= 0:
        raise ConfigError(f"scale must be positive, got {scale}")
    if int(iterations) < 1:
        raise ConfigError(f"iterations must be at least 1, got {iterations}")
    if not 0.0 <= float(lamb) <= 1.0:
        raise ConfigError(f"lamb must be between 0 and 1, got {lamb}")
    seeds = seed_mask(image.shape, points)
    dist = geodesic_distance(
        image, seeds, spacing=_spacing(spacing, image.ndim), lamb=float(lamb), iterations=int(iterations)
    )
    dist *= np.float32(-1.0 / scale)
    return np.exp(dist, out=dist)


def gaussian_map(
    shape: Sequence[int],
    points: np.ndarray | Sequence[Sequence[float]],
    *,
    spacing: Sequence[float] | None = None,
    sigma_mm: float = 5.0,
) -> np.ndarray:
    """Gaussian heat map ``exp(-d^2 / (2 sigma_mm^2))`` of the distance to the nearest point.

    Parameters
    ----------
    shape
        Spatial shape of the map.
    points
        ``(N, ndim)`` voxel indices (rounded) inside ``shape``.
    spacing
        Voxel size (mm, array order); default 1 (then ``sigma_mm`` is in voxels).
    sigma_mm
        Standard deviation of the Gaussian in mm.

    Returns
    -------
    numpy.ndarray
        float32 in ``[0, 1]``, 1 at the points.
    """
    if sigma_mm <= 0:
        raise ConfigError(f"sigma_mm must be positive, got {sigma_mm}")
    seeds = seed_mask(shape, points)
    dist = ndi.distance_transform_edt(~seeds, sampling=_spacing(spacing, seeds.ndim)).astype(np.float32)
    np.square(dist, out=dist)
    dist *= np.float32(-0.5 / sigma_mm**2)
    return np.exp(dist, out=dist)


@ENCODINGS.register("gaussian")
def _gaussian_encoder(image: np.ndarray, points: Any, *, spacing: Sequence[float] | None = None, **params: Any):
    return gaussian_map(np.shape(image), points, spacing=spacing, **params)


def encode_points(
    image: np.ndarray,
    points: np.ndarray | Sequence[Sequence[float]],
    *,
    method: str = "geodesic",
    spacing: Sequence[float] | None = None,
    **params: Any,
) -> np.ndarray:
    """The prompt channel for ``points`` over ``image``: a float32 array of ``image``'s shape.

    ``method`` names an encoding in :data:`ENCODINGS` (``"geodesic"`` or ``"gaussian"``);
    ``params`` are that encoding's keyword arguments (``lamb``, ``iterations``, ``scale`` or
    ``sigma_mm``), as stored in ``plan.interactive``.
    """
    encoder = ENCODINGS.get(method)
    try:
        return encoder(np.asarray(image), points, spacing=spacing, **params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for the {method!r} encoding ({exc})") from None


def encode_clicks(
    image: np.ndarray,
    clicks: Sequence[Click],
    *,
    method: str = "gaussian",
    spacing: Sequence[float] | None = None,
    **params: Any,
) -> np.ndarray:
    """Positive and negative click channels, ``(2, *image.shape)`` float32.

    Channel 0 encodes the positive clicks, channel 1 the negative ones (zeros when there are
    none), each with :func:`encode_points` (``method``, ``params``). The geodesic encoding
    reads the image; the Gaussian one only its shape.
    """
    image = np.asarray(image)
    out = np.zeros((2, *image.shape), dtype=np.float32)
    for channel, sign in ((0, True), (1, False)):
        pts = [c.position for c in clicks if c.positive is sign]
        if pts:
            out[channel] = encode_points(image, np.asarray(pts), method=method, spacing=spacing, **params)
    return out


def _margin_voxels(
    ndim: int, margin: int | Sequence[int], margin_mm: float | Sequence[float] | None, spacing
) -> np.ndarray:
    if margin_mm is not None:
        if spacing is None:
            raise ConfigError("margin_mm needs the spacing")
        mm = np.broadcast_to(np.asarray(margin_mm, dtype=np.float64), (ndim,))
        return np.ceil(mm / np.asarray(_spacing(spacing, ndim)) - 1e-9).astype(np.int64)
    vox = np.broadcast_to(np.asarray(margin, dtype=np.int64), (ndim,))
    if np.any(vox < 0):
        raise ConfigError(f"margin must be non-negative, got {np.asarray(margin).tolist()}")
    return vox.copy()


def crop_to_points(
    volumes: Sequence[np.ndarray],
    points: np.ndarray | Sequence[Sequence[float]],
    *,
    margin: int | Sequence[int] = 0,
    margin_mm: float | Sequence[float] | None = None,
    spacing: Sequence[float] | None = None,
) -> tuple[list[np.ndarray], CropBox]:
    """Crop arrays to the points' bounding box plus a margin (clipped to the image).

    Parameters
    ----------
    volumes
        Arrays sharing one spatial shape (images, label, encodings); leading channel axes are
        kept. The first one's trailing ``ndim`` axes define the spatial shape.
    points
        ``(N, ndim)`` voxel indices; their bounding box is what the user marked.
    margin, margin_mm
        Context around the box in voxels, or in mm (needs ``spacing``; overrides ``margin``).
    spacing
        Voxel size (mm, array order), for ``margin_mm``.

    Returns
    -------
    (list of numpy.ndarray, CropBox)
        Views of the arrays inside the box, and the box (:func:`voxseg.fingerprint.cropping.uncrop`
        pastes a result back; subtract ``box.start`` from points to move them into the crop).
    """
    if not volumes:
        raise ConfigError("no arrays to crop")
    pts = np.rint(np.asarray(points, dtype=np.float64)).astype(np.int64)
    if pts.ndim != 2 or len(pts) == 0:
        raise ConfigError(f"points must be a non-empty N x ndim array, got shape {pts.shape}")
    ndim = pts.shape[1]
    shape = np.asarray(np.shape(volumes[0])[-ndim:])
    for vol in volumes[1:]:
        if tuple(np.shape(vol)[-ndim:]) != tuple(shape):
            raise ConfigError(f"arrays to crop differ in shape: {np.shape(vol)} vs {tuple(shape)}")
    if np.any(pts < 0) or np.any(pts >= shape):
        raise ConfigError(f"points {pts.tolist()} are not all inside the image of shape {tuple(shape)}")
    pad = _margin_voxels(ndim, margin, margin_mm, spacing)
    start = np.maximum(pts.min(axis=0) - pad, 0)
    stop = np.minimum(pts.max(axis=0) + 1 + pad, shape)
    box = CropBox(tuple(start.tolist()), tuple(stop.tolist()))
    return [crop(np.asarray(v), box) for v in volumes], box
