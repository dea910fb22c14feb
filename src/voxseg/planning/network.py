"""A network as data (:class:`NetworkSpec`): what the planner decides and ``plan.json`` holds.

Pure data, no torch: :mod:`voxseg.nets` builds the module from it through its registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from voxseg.errors import ConfigError

__all__ = ["NetworkSpec"]


@dataclass(frozen=True)
class NetworkSpec:
    """A network as data: a registered ``name`` and its keyword arguments."""

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kwargs": _jsonable(dict(self.kwargs))}

    @classmethod
    def from_json(cls, data: Any) -> NetworkSpec:
        if isinstance(data, NetworkSpec):
            return data
        if not isinstance(data, Mapping) or "name" not in data:
            raise ConfigError(f"a network spec is {{'name': ..., 'kwargs': {{...}}}}, got {data!r}")
        unknown = sorted(set(data) - {"name", "kwargs"})
        if unknown:
            raise ConfigError(f"network spec has unknown key(s) {', '.join(unknown)}")
        kwargs = data.get("kwargs") or {}
        if not isinstance(kwargs, Mapping):
            raise ConfigError(f"network kwargs must be a mapping, got {kwargs!r}")
        return cls(str(data["name"]), dict(kwargs))

    @property
    def spatial_dims(self) -> int:
        return int(self.kwargs["spatial_dims"])

    @property
    def in_channels(self) -> int:
        return int(self.kwargs["in_channels"])

    @property
    def out_channels(self) -> int:
        return int(self.kwargs["out_channels"])

    def downsampling(self, axis: int) -> int:
        """How many times the network downsamples ``axis``: the product of its ``strides`` (1 without)."""
        total = 1
        for s in self.kwargs.get("strides") or ():
            total *= int(s[axis]) if isinstance(s, (list, tuple)) else int(s)
        return max(total, 1)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
