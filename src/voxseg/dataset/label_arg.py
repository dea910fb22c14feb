"""The ``--labels`` argument of ``voxseg dataset import``: ``{value: name}`` from JSON text, a file or a mapping."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from voxseg.errors import ConfigError
from voxseg.io.safe_json import loads_json

__all__ = ["parse_labels"]


def parse_labels(labels: str | Path | Mapping[Any, Any] | None) -> dict[int, str] | None:
    """``{value: name}`` from a mapping, JSON text or a JSON file: ``{"1": "liver"}`` or ``{"liver": 1}``."""
    if labels is None:
        return None
    data: Any = labels
    if isinstance(labels, (str, Path)):
        text = str(labels).strip()
        path = Path(text)
        if not text.startswith("{") and path.suffix.lower() == ".json":
            if not path.is_file():
                raise ConfigError(f"--labels {path}: file not found")
            text = path.read_text(encoding="utf-8")
        data = loads_json(
            text, source="--labels", error=ConfigError, fix='give e.g. {"1": "liver", "2": "tumour"}', max_bytes=1 << 20
        )
    if not isinstance(data, Mapping):
        raise ConfigError('--labels: expected a JSON object like {"1": "liver", "2": "tumour"}')
    out: dict[int, str] = {}
    for key, value in data.items():
        value_first = isinstance(value, str) or (isinstance(key, int) and not isinstance(key, bool))
        number, name = (key, value) if value_first else (value, key)
        try:
            out[int(number)] = str(name)
        except (TypeError, ValueError):
            raise ConfigError(f"--labels: {key!r}: {value!r} is not a value and a name") from None
    if any(v < 0 for v in out):
        raise ConfigError(f"--labels: negative label values {sorted(v for v in out if v < 0)}")
    out.setdefault(0, "background")
    if out[0] != "background":
        raise ConfigError(f"--labels: value 0 is the background, not {out[0]!r}")
    if len(set(out.values())) != len(out):
        raise ConfigError(f"--labels: two values share a name in {out}")
    return out
