"""The one-call Python API: ``mask = voxseg.predict(image, model=...)``.

>>> from voxseg import predict, postprocess
>>> mask = predict(image_array, model="work/", spacing=(0.1, 0.1, 0.1))   # doctest: +SKIP
>>> instances = postprocess(mask)                                          # doctest: +SKIP

Arrays in, array out (same shape); Volumes in, Volume out (same geometry); a path in, a Volume
out. For many images, build the model once (:func:`voxseg.models.resolve.resolve_model`) and
pass the Predictor as ``model``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voxseg.errors import InputImageError
from voxseg.io import Volume, read_image

if TYPE_CHECKING:
    from voxseg.inference.options import PredictOptions
    from voxseg.inference.predictor import Predictor

__all__ = ["predict", "preflight_volumes", "preflight_files"]

ImageLike = np.ndarray | Volume | str | Path


def predict(
    image: ImageLike | Sequence[ImageLike],
    *,
    model: str | Path | Predictor,
    spacing: Sequence[float] | None = None,
    mask: ImageLike | None = None,
    force: bool = False,
    max_minutes: float | None = 30.0,
    options: PredictOptions | None = None,
    **changes: Any,
) -> np.ndarray | Volume:
    """Segment one image with a trained model.

    Parameters
    ----------
    image
        A 2D/3D numpy array (axes in array order, ``(z, y, x)``), a :class:`~voxseg.io.Volume`, an
        image path, or a list of those (one per channel of a multi-channel model).
    model
        A training work folder, a model bundle or name (when :mod:`voxseg.bundle` is installed),
        or a ready :class:`~voxseg.inference.predictor.Predictor`.
    spacing
        Voxel size (mm, array order) of array input; default 1 mm. Ignored for Volumes and files,
        which carry their own.
    mask
        Region of interest (same kinds as ``image``, on its grid): labels are 0 outside it.
    force, max_minutes
        The pre-flight check (:mod:`voxseg.inference.preflight`) runs before the model loads: it
        warns (``logging``) about spacing or field of view far from the model's training images
        and raises :class:`~voxseg.inference.preflight.PreflightError` when a case would take
        longer than ``max_minutes`` or more memory than is free, unless ``force``.
    options, changes
        How to predict (:class:`~voxseg.inference.options.PredictOptions`); ``changes`` are its
        fields (``folds``, ``configuration``, ``tta``, ``overlap``, ``precision``, ``device``,
        ``threshold``, ``batch_size``, ``num_threads``...), e.g. ``tta=False``.

    Returns
    -------
    numpy.ndarray or Volume
        The label map: an array of the input's shape for array input, else a Volume on the
        input's geometry.
    """
    from voxseg.inference.options import PredictOptions
    from voxseg.models.resolve import resolve_model

    opts = (options or PredictOptions()).replace(**changes)
    items = list(image) if isinstance(image, (list, tuple)) else [image]
    if not items:
        raise InputImageError(None, "no image given", "pass an array, a Volume or a path")
    volumes = [_as_volume(item, spacing, None) for item in items]
    mask_volume = None if mask is None else _as_volume(mask, spacing, volumes[0])
    given = opts if isinstance(model, (str, Path)) or options is not None or changes else None
    known = spacing is not None or not isinstance(items[0], np.ndarray)
    _preflight(volumes, model, known, mask, given, force, max_minutes)
    predictor = resolve_model(model, given)
    result = predictor.predict(volumes, mask=mask_volume)
    return result.labels.array if isinstance(items[0], np.ndarray) else result.labels


def _preflight(volumes, model, spacing_known: bool, mask, options, force: bool, max_minutes) -> None:
    from voxseg.inference.preflight import PreflightLimits

    limits = PreflightLimits(
        max_minutes=max_minutes,
        force=force,
        force_hint="pass force=True",
        time_limit_hint="max_minutes= to change the limit",
        memory_limit_hint="free memory",
    )
    report = preflight_volumes(
        volumes, model, options, spacing_known=spacing_known, mask_given=mask is not None, limits=limits
    )
    for warning in report.warnings:
        logging.getLogger(__name__).warning("%s", warning)
    report.check()


def preflight_volumes(
    volumes: Sequence[Volume],
    model: Any,
    options: PredictOptions | None = None,
    *,
    spacing_known: bool = True,
    mask_given: bool = False,
    limits: Any = None,
    name: str = "image",
    probabilities: bool = False,
    **changes: Any,
) -> Any:
    """The pre-flight check of one in-memory case (its channel Volumes) for ``model`` (a name, a path
    or a Predictor), before the model loads: a :class:`~voxseg.inference.preflight.PreflightReport`
    (warnings, stated work, refusals; ``report.check()`` raises the first refusal). Used by the API,
    napari and the web app; the CLI checks files (headers only) the same way. ``name`` names the
    case in messages."""
    from voxseg.inference.preflight import PreflightLimits, preflight
    from voxseg.io.headers import ImageHeader
    from voxseg.models.resolve import describe_model
    from voxseg.settings import resolve_paths

    facts = describe_model(model, options, probabilities=probabilities, **changes)
    headers = [
        ImageHeader.of_volume(v, name if k == 0 else f"{name} channel {k}", spacing_known=spacing_known)
        for k, v in enumerate(volumes)
    ]
    return preflight(
        [headers],
        facts,
        limits=limits or PreflightLimits(),
        cache_dir=resolve_paths().cache,
        mask_given=mask_given,
    )


def preflight_files(
    inputs: str | Path,
    model: Any,
    options: PredictOptions | None = None,
    *,
    mask_dir: str | Path | None = None,
    file_ending: str | None = None,
    series: str | None = None,
    limits: Any = None,
    measure: bool = True,
    probabilities: bool = False,
    **changes: Any,
) -> Any:
    """The pre-flight check of the cases an input names (a file, a folder, a list; headers only) for
    ``model``, before it loads: a :class:`~voxseg.inference.preflight.PreflightReport`. ``options``
    (and ``changes``, its fields) say how it will predict (folds, TTA, overlap...).
    Used by ``voxseg predict`` and the Ray engine."""
    from voxseg.inference.inputs import select_inputs
    from voxseg.inference.preflight import PreflightLimits, preflight
    from voxseg.models.resolve import describe_model
    from voxseg.settings import resolve_paths

    cases = select_inputs(inputs, file_ending=file_ending, mask_dir=mask_dir, series=series).cases
    described = describe_model(model, options, probabilities=probabilities, **changes)
    return preflight(
        cases, described, limits=limits or PreflightLimits(), cache_dir=resolve_paths().cache, measure=measure
    )


def _as_volume(item: Any, spacing: Sequence[float] | None, like: Volume | None) -> Volume:
    if isinstance(item, Volume):
        return item
    if isinstance(item, (str, Path)):
        return read_image(item)
    if isinstance(item, np.ndarray):
        if item.ndim not in (2, 3):
            raise InputImageError(
                None,
                f"array of shape {item.shape} is not a 2D or 3D image",
                "pass one array per channel (no channel or batch axis)",
            )
        if like is not None:
            if item.shape != like.shape:
                raise InputImageError(
                    None, f"mask has shape {item.shape}, the image {like.shape}", "draw it on the image grid"
                )
            return like.with_array(item)
        sp = None if spacing is None else tuple(float(s) for s in spacing)
        if sp is not None and len(sp) != item.ndim:
            raise InputImageError(
                None, f"spacing {sp} has {len(sp)} values for a {item.ndim}D array", "give one per axis"
            )
        return Volume(item, sp or ())
    raise InputImageError(None, f"cannot segment a {type(item).__name__}", "pass a numpy array, a Volume or a path")
