"""A model's training domain: the spacings and image sizes it was trained on (numpy only).

Recorded in ``bundle.json`` (``training_domain``) at export from the work folder's fingerprint;
the pre-flight check (:mod:`voxseg.inference.preflight`) compares every input with it. Bundles
made before it existed fall back to :meth:`TrainingDomain.from_plan` (the plan's target spacing,
median shape and patch), marked ``source="plan"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxseg.errors import ConfigError

__all__ = ["TrainingDomain"]


def _floats(values: Any, key: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"training_domain: {key} must be a list of numbers, got {values!r}") from None
    if not out or not all(np.isfinite(v) and v > 0 for v in out):
        raise ConfigError(f"training_domain: {key} must hold positive numbers, got {list(out)}")
    return out


@dataclass(frozen=True)
class TrainingDomain:
    """Per-axis ranges (array order) of the training images.

    Attributes
    ----------
    spacing_min, spacing_max
        Smallest and largest voxel size (mm) per axis over the training cases.
    extent_min, extent_max
        Smallest and largest field of view (mm, shape x spacing) per axis.
    source
        ``"fingerprint"`` (measured on the training cases) or ``"plan"`` (fallback: target
        spacing, and the plan's median shape or patch as the field of view).
    """

    spacing_min: tuple[float, ...]
    spacing_max: tuple[float, ...]
    extent_min: tuple[float, ...]
    extent_max: tuple[float, ...]
    source: str = "fingerprint"

    @classmethod
    def from_cases(cls, spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]]) -> TrainingDomain:
        """From the spacing and (uncropped) shape of every training case."""
        sp = np.asarray(spacings, dtype=np.float64)
        extent = sp * np.asarray(shapes, dtype=np.float64)
        return cls(
            tuple(map(float, sp.min(0))),
            tuple(map(float, sp.max(0))),
            tuple(map(float, extent.min(0))),
            tuple(map(float, extent.max(0))),
        )

    @classmethod
    def from_fingerprint(cls, fingerprint: Any) -> TrainingDomain:
        """From a :class:`~voxseg.fingerprint.Fingerprint`."""
        cases = fingerprint.cases
        return cls.from_cases([c.spacing for c in cases], [c.shape for c in cases])

    @classmethod
    def from_plan(
        cls, target_spacing: Sequence[float], median_shape: Sequence[int], patch_size: Sequence[int]
    ) -> TrainingDomain:
        """The fallback for bundles without a recorded domain: the target spacing, and the median
        shape (else the patch) at that spacing as the field of view."""
        spacing = tuple(float(s) for s in target_spacing)
        shape = tuple(median_shape) if len(median_shape) == len(spacing) else tuple(patch_size)
        extent = tuple(float(n) * s for n, s in zip(shape, spacing, strict=True))
        return cls(spacing, spacing, extent, extent, source="plan")

    def to_json(self) -> dict[str, Any]:
        return {
            "spacing_min": list(self.spacing_min),
            "spacing_max": list(self.spacing_max),
            "extent_min": list(self.extent_min),
            "extent_max": list(self.extent_max),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainingDomain:
        if not isinstance(data, Mapping):
            raise ConfigError(f"training_domain must be a JSON object, got {type(data).__name__}")
        keys = ("spacing_min", "spacing_max", "extent_min", "extent_max")
        missing = [k for k in keys if k not in data]
        if missing:
            raise ConfigError(f"training_domain lacks {', '.join(missing)}")
        values = [_floats(data[k], k) for k in keys]
        if len({len(v) for v in values}) != 1:
            raise ConfigError("training_domain: every range needs one value per axis")
        return cls(*values)
