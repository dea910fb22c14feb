"""Where voxseg keeps things: resolved CLI flag > environment variable > platform default.

Library functions take explicit paths; only the CLI (and the top-level convenience API) call
these resolvers, at the edge.

| what    | env var         | default (platformdirs)                  |
|---------|-----------------|-----------------------------------------|
| cache   | VOXSEG_CACHE    | user cache dir, e.g. ~/.cache/voxseg    |
| models  | VOXSEG_MODELS   | user data dir / models                  |
| data    | VOXSEG_DATA     | user data dir / data                    |
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import platformdirs

__all__ = ["Paths", "resolve_paths"]

_APP = "voxseg"


@dataclass(frozen=True)
class Paths:
    """Resolved folders, each with where its value came from (flag, env or default)."""

    cache: Path
    models: Path
    data: Path
    sources: dict[str, str]

    def as_dict(self) -> dict[str, str]:
        d = asdict(self)
        return {k: str(v) for k, v in d.items() if k != "sources"}


def _resolve(flag: str | Path | None, env: str, default: Path) -> tuple[Path, str]:
    if flag:
        return Path(flag).expanduser(), "flag"
    value = os.environ.get(env)
    if value:
        return Path(value).expanduser(), f"${env}"
    return default, "default"


def resolve_paths(
    *, cache: str | Path | None = None, models: str | Path | None = None, data: str | Path | None = None
) -> Paths:
    """Resolve voxseg's folders (nothing is created)."""
    user_data = Path(platformdirs.user_data_dir(_APP, appauthor=False))
    c, cs = _resolve(cache, "VOXSEG_CACHE", Path(platformdirs.user_cache_dir(_APP, appauthor=False)))
    m, ms = _resolve(models, "VOXSEG_MODELS", user_data / "models")
    d, ds = _resolve(data, "VOXSEG_DATA", user_data / "data")
    return Paths(c, m, d, {"cache": cs, "models": ms, "data": ds})
