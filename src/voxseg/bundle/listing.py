"""What models there are: :func:`list_models` (installed and available, with their licence and
intended use) and :func:`next_version` (the version a new model of a name gets)."""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxseg.bundle._util import version_key
from voxseg.bundle.cache import IndexArg, InstalledModel, _dirs, installed_models
from voxseg.bundle.index import IndexEntry, ModelIndex, is_builtin_archive, load_index
from voxseg.errors import BundleError
from voxseg.io.safe_json import loads_json, read_json

__all__ = ["ModelInfo", "list_models", "next_version"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """One row of :func:`list_models`: a version installed, available from an index, or both."""

    name: str
    version: str
    installed: bool
    available: bool
    latest: bool
    description: str = ""
    size: int | None = None
    path: Path | None = None
    task: str = ""  # "semantic", "instances" or "interactive" ("" when unknown)
    builtin: bool = False  # shipped inside the package (no download)
    source: str = ""  # where it was installed from, else the index's first URL
    license: str = ""  # the bundle's license (from the index before installing; "" when unknown)
    intended_use: str = ""  # what the model is for, likewise

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "path": None if self.path is None else str(self.path)}


def _manifest_fields(path: Path | None) -> dict[str, str]:
    """``task``, ``license`` and ``intended_use`` of a bundle folder's or built-in archive's ``bundle.json``."""
    if path is None:
        return {}
    try:
        if path.is_dir():
            data = read_json(path / "bundle.json")
        else:  # a built-in archive of the package: trusted, and one small member is read
            with zipfile.ZipFile(path) as zf:
                data = loads_json(zf.read("bundle.json"), source=path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: data[k] for k in ("task", "license", "intended_use") if isinstance(data.get(k), str)}


def _listing_fields(entry: IndexEntry | None, inst: InstalledModel | None) -> dict[str, Any]:
    """task, builtin, source, license and intended use of one :func:`list_models` row."""
    builtin_path = entry.local_path() if entry is not None and entry.builtin else None
    fields = _manifest_fields(inst.path if inst else builtin_path)
    return {
        "task": fields.get("task") or (entry.task if entry else ""),
        "builtin": (entry is not None and entry.builtin) or (inst is not None and is_builtin_archive(inst.source)),
        "source": inst.source if inst else (entry.urls[0] if entry and entry.urls else ""),
        "license": fields.get("license") or (getattr(entry, "license", "") if entry else ""),
        "intended_use": fields.get("intended_use") or (getattr(entry, "intended_use", "") if entry else ""),
    }


def list_models(
    *,
    index: IndexArg = None,
    cache: str | Path | None = None,
    models: str | Path | None = None,
    offline: bool = False,
) -> list[ModelInfo]:
    """Installed models and models available from the index(es), one row per ``NAME@VERSION``."""
    cache_dir, models_dir = _dirs(cache, models)
    try:
        idx = load_index(index, cache=cache_dir, offline=offline)
    except BundleError as exc:
        log.warning("%s; listing installed models only", exc)
        idx = ModelIndex()
    have = {(m.name, m.version): m for m in installed_models(models_dir)}
    keys = set(have) | {(n, v) for n in idx.names() for v in idx.versions(n)}
    rows = []
    for name in sorted({n for n, _ in keys}):
        versions = sorted((v for n, v in keys if n == name), key=version_key)
        for ver in versions:
            entry = idx.entries.get(name, {}).get(ver)
            inst = have.get((name, ver))
            rows.append(
                ModelInfo(
                    name,
                    ver,
                    installed=inst is not None,
                    available=entry is not None,
                    latest=ver == versions[-1],
                    description=(entry.description if entry else "") or idx.descriptions.get(name, ""),
                    size=entry.size if entry else None,
                    path=inst.path if inst else None,
                    **_listing_fields(entry, inst),
                )
            )
    return rows


def next_version(
    name: str, *, index: IndexArg = None, models: str | Path | None = None, after: Sequence[str] = ()
) -> str:
    """The version after the newest ``name`` installed, listed in the index(es) or in ``after`` (e.g.
    the parent of a fine-tuned model, installed or not): ``v2`` -> ``v3``, ``1.0.3`` -> ``1.0.4``
    (its last number plus one); ``v1`` when there is none."""
    cache_dir, models_dir = _dirs(None, models)
    known = [*after, *(m.version for m in installed_models(models_dir) if m.name == name)]
    try:
        known += load_index(index, cache=cache_dir, offline=True).versions(name)
    except BundleError as exc:
        log.warning("%s; numbering from the installed versions only", exc)
    if not known:
        return "v1"
    newest = max(known, key=version_key)
    numbers = list(re.finditer(r"\d+", newest))
    if not numbers:
        return f"{newest}-2"
    last = numbers[-1]
    return f"{newest[: last.start()]}{int(last.group()) + 1}{newest[last.end() :]}"
