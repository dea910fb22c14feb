"""How one input channel is normalized: data chosen by planning, applied by preprocessing.

| scheme              | what preprocessing does                                                            |
|---------------------|------------------------------------------------------------------------------------|
| ``zscore``          | ``(x - mean) / std`` with the case's own statistics (inside the nonzero region when  |
|                     | ``use_nonzero_mask``; outside it the result is 0)                                  |
| ``ct``              | clip to ``[clip_low, clip_high]`` (dataset foreground 0.5/99.5 percentiles), then   |
|                     | ``(x - mean) / std`` with the dataset's foreground ``mean``/``std``                 |
| ``percentile_minmax``| min-max to [0, 1] with max = the ``percentile`` of the voxels inside the mask      |
|                     | (channel ``mask_channel``, or the whole image when None), values clipped to [0, 1]; |
|                     | the microbleed models' scheme                                                       |
| ``mask``            | the channel is a binary mask: ``x > 0`` as 0/1                                     |
| ``none``            | unchanged (cast to float32)                                                        |
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from voxseg.errors import ConfigError

__all__ = ["Normalization", "SCHEMES"]

Scheme = Literal["zscore", "ct", "percentile_minmax", "mask", "none"]
SCHEMES: tuple[str, ...] = ("zscore", "ct", "percentile_minmax", "mask", "none")


@dataclass(frozen=True)
class Normalization:
    """Normalization of one channel (see the module table)."""

    scheme: Scheme = "zscore"
    mean: float | None = None
    std: float | None = None
    clip_low: float | None = None
    clip_high: float | None = None
    percentile: float = 99.0
    mask_channel: int | None = None
    use_nonzero_mask: bool = False

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ConfigError(f"unknown normalization scheme {self.scheme!r} (choose from {', '.join(SCHEMES)})")
        if self.scheme == "ct" and None in (self.mean, self.std, self.clip_low, self.clip_high):
            raise ConfigError("ct normalization needs mean, std, clip_low and clip_high")
        if self.scheme == "ct" and self.std is not None and self.std <= 0:
            raise ConfigError(f"ct normalization needs std > 0, got {self.std}")
        if not 0 < self.percentile <= 100:
            raise ConfigError(f"percentile must be in (0, 100], got {self.percentile}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Normalization:
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"invalid normalization {data!r} ({exc})") from None
