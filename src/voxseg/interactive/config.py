"""``PromptConfig``: the ``plan.interactive`` settings as a frozen dataclass.

``plan.json`` stores them as a JSON object::

    "interactive": {"prompt": "extreme_points", "encoding": "geodesic",
                    "encoding_params": {"lamb": 1.0, "iterations": 2, "scale": 1.0},
                    "inward": [1, 2, 2], "jitter_mm": 2.0, "margin_mm": 10.0, "fit": "crop",
                    "clip_mm": 3.0}

Every field has a default, so ``{"prompt": "extreme_points", "encoding": "geodesic"}`` is a
complete setting.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from voxseg.errors import ConfigError

__all__ = ["PROMPTS", "FITS", "PromptConfig", "USER_INWARD_MM"]

PROMPTS = ("extreme_points",)

USER_INWARD_MM = 1.0
"""How far inside the object border (mm) simulated users place extreme points (training and evaluation)."""
FITS = ("crop", "resize")


@dataclass(frozen=True)
class PromptConfig:
    """How an interactive model is prompted, trained and fed.

    Parameters
    ----------
    prompt
        The prompt type; ``"extreme_points"`` (six points, InteractiveNet).
    encoding
        Name in :data:`voxseg.interactive.ENCODINGS` (``"geodesic"`` or ``"gaussian"``).
    encoding_params
        Keyword arguments of the encoding (``lamb``, ``iterations``, ``scale``; ``sigma_mm``).
    inward
        Voxels (of the preprocessed grid; one value or one per axis) the simulated points move
        inside the object.
    jitter_mm
        Standard deviation of the simulated points' Gaussian jitter (mm) during training.
    margin_mm
        Context added around the points' bounding box before cropping (mm).
    clip_mm
        The predicted mask is kept inside the points' bounding box grown by this much (mm): the
        points mark the object's ends, so what lies farther out is another structure. Positive
        clicks outside the box grow it. Raise it for imprecise points.
    fit
        How a crop meets the network's patch size in training: ``"crop"`` (a random patch
        inside a larger crop, zero padding around a smaller one: the voxel size stays the
        plan's, as at inference) or ``"resize"`` (the whole crop scaled to the patch).
    """

    prompt: str = "extreme_points"
    encoding: str = "geodesic"
    encoding_params: Mapping[str, Any] = field(default_factory=dict)
    inward: float | tuple[float, ...] = 2.0
    jitter_mm: float = 2.0
    margin_mm: float = 10.0
    fit: str = "crop"
    clip_mm: float = 3.0

    def __post_init__(self) -> None:
        from voxseg.interactive.encoding import ENCODINGS

        if self.prompt not in PROMPTS:
            raise ConfigError(f"unknown interactive prompt {self.prompt!r}; use one of {', '.join(PROMPTS)}")
        ENCODINGS.get(self.encoding)  # unknown names fail with "did you mean"
        if self.fit not in FITS:
            raise ConfigError(f"unknown fit {self.fit!r}; use one of {', '.join(FITS)}")
        if not isinstance(self.encoding_params, Mapping):
            raise ConfigError(f"encoding_params must be an object, got {self.encoding_params!r}")
        object.__setattr__(self, "encoding_params", dict(self.encoding_params))
        inward = self.inward
        if isinstance(inward, Sequence) and not isinstance(inward, str):
            inward = tuple(float(v) for v in inward)
        else:
            inward = float(inward)
        object.__setattr__(self, "inward", inward)
        for name in ("jitter_mm", "margin_mm", "clip_mm"):
            value = float(getattr(self, name))
            if not value >= 0:
                raise ConfigError(f"interactive {name} must be non-negative, got {value}")
            object.__setattr__(self, name, value)

    @classmethod
    def for_spacing(
        cls, spacing: Sequence[float], *, inward_mm: float = USER_INWARD_MM, **fields_: Any
    ) -> PromptConfig:
        """Settings for data at ``spacing`` (the plan's): points move about ``inward_mm`` inside.

        ``inward`` becomes ``round(inward_mm / spacing)`` voxels per axis: with the default 1 mm,
        a point stays on the last slice of thick (3 mm) slices, where a person sees the object
        end, and moves one voxel inside on a 0.8 mm grid (InteractiveNet's "interior margin
        points"). Other fields are passed through.
        """
        if inward_mm < 0:
            raise ConfigError(f"inward_mm must be non-negative, got {inward_mm}")
        inward = tuple(float(round(inward_mm / float(s))) for s in spacing)
        return cls(inward=inward, **fields_)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["inward"] = list(self.inward) if isinstance(self.inward, tuple) else self.inward
        return json.loads(json.dumps(out))

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> PromptConfig:
        """From ``plan.interactive`` (``None`` or ``{}`` give the defaults)."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(f"plan 'interactive' must be an object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown interactive setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**dict(data))
