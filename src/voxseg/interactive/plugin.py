"""Interactive (prompted) models plug into the bundle's golden test (see :mod:`voxseg.registry`).

``voxseg.prompted``: the ``interactive`` task's golden case is a crop around a validation case's
largest object with its six extreme points (:meth:`InteractiveGolden.crop`), run through
:func:`voxseg.interactive.pipeline.predict_points` (:meth:`InteractiveGolden.outputs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from voxseg.errors import BundleError
from voxseg.io.volume import Volume

__all__ = ["InteractiveGolden", "register_prompted"]


class InteractiveGolden:
    """The golden case of an extreme-point model."""

    def crop(self, manifest: Any, images: Sequence[Volume], label: np.ndarray | None):
        """A crop around the label's largest object (its box plus the prompt margin and 2 mm) and the
        object's six extreme points in it (deterministic, the plan's inward offset)."""
        from voxseg.interactive.config import PromptConfig
        from voxseg.interactive.evaluate import largest_object
        from voxseg.interactive.points import extreme_points

        if label is None or not np.any(label):
            raise BundleError("the golden test of an interactive model needs a case with an object")
        obj = largest_object(label)
        spacing = np.asarray(images[0].spacing)
        config = PromptConfig.from_json(manifest.plan.interactive)
        grow = np.ceil((config.margin_mm + 2.0) / spacing).astype(int)
        idx = np.argwhere(obj)
        lo, hi = np.maximum(idx.min(0) - grow, 0), np.minimum(idx.max(0) + grow + 1, obj.shape)
        sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        crop = [Volume(np.ascontiguousarray(v.array[sl]), v.spacing) for v in images]
        inward = PromptConfig.for_spacing(tuple(spacing)).inward
        points = extreme_points(obj[sl], inward=inward, spacing=tuple(spacing))
        return crop, np.asarray(points, dtype=np.int64)

    def outputs(self, predictor: Any, images: list[Volume], points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from voxseg.interactive.pipeline import predict_points

        prob, mask = predict_points(predictor, images, np.asarray(points, dtype=np.int64))
        return mask, prob[None]


def register_prompted() -> None:
    from voxseg.bundle.golden import PROMPTED

    if "interactive" not in PROMPTED:
        PROMPTED.register("interactive", InteractiveGolden())
