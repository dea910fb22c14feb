"""The model index: which models exist, their versions, where to download them, their sha256.

An index is a JSON file:

.. code-block:: json

    {
      "schema_version": 1,
      "models": {
        "mouse-lung-nodules": {
          "description": "Lung nodules in mouse micro-CT (instances)",
          "versions": {
            "v1": {"urls": ["https://example.org/mln-v1.zip", "https://mirror.org/mln-v1.zip"],
                   "sha256": "<64 hex digits>", "size": 1234567, "description": "first release"},
            "v2": {"urls": ["models/mouse-lung-nodules-v2.zip"], "sha256": "...", "size": 2345678}
          }
        }
      }
    }

URLs are tried in order (mirrors). ``http(s)://`` and ``ftp://`` URLs are downloaded; ``file://``
URLs and plain paths are local files, a relative path being relative to the index itself (for the
built-in index shipped in the package, to the ``voxseg/bundle`` package folder: that is how
built-in models ship as package data). ``NAME`` without a version means the latest version by
version ordering (``v2 < v10``, ``1.0 < 1.0.1``, a leading ``v`` ignored).

Several indexes combine: the built-in one first, then each extra one (``--index`` / ``VOXSEG_INDEX``);
a later index's entry for the same ``NAME@VERSION`` wins. No torch here.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlparse

from voxseg.bundle._util import check_name, check_version, is_sha256, version_key
from voxseg.errors import BundleError
from voxseg.io.safe_json import read_json

__all__ = [
    "IndexEntry",
    "ModelIndex",
    "load_index",
    "builtin_index_path",
    "builtin_models_dir",
    "is_builtin_archive",
    "INDEX_SCHEMA_VERSION",
]

log = logging.getLogger(__name__)

INDEX_SCHEMA_VERSION = 1
_REMOTE = ("http", "https", "ftp")


def builtin_index_path() -> Path:
    """The index shipped inside the package (``voxseg/bundle/index.json``)."""
    return Path(__file__).with_name("index.json")


def builtin_models_dir() -> Path:
    """The folder of the model archives shipped inside the package (``voxseg/bundle/models``)."""
    return Path(__file__).with_name("models")


def is_builtin_archive(path: str | Path) -> bool:
    """True for an archive in :func:`builtin_models_dir` (a model that needs no download)."""
    try:
        return Path(path).resolve().parent == builtin_models_dir().resolve()
    except (OSError, ValueError):
        return False


def is_remote(url: str) -> bool:
    return urlparse(url).scheme in _REMOTE


def local_path_of(url: str) -> Path:
    """The path of a local URL (``file:///x/y.zip`` or a plain path)."""
    parsed = urlparse(url)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(url)


@dataclass(frozen=True)
class IndexEntry:
    """One downloadable version of a model."""

    name: str
    version: str
    urls: tuple[str, ...]
    sha256: str
    size: int | None = None
    description: str = ""
    index: str = ""  # where this entry was read from
    task: str = ""  # the bundle's task ("semantic", "instances", "interactive"); "" when the index omits it
    license: str = ""  # the bundle's licence, so listings can show it before installing ("" when omitted)
    intended_use: str = ""  # the bundle's intended use (same)

    def local_path(self) -> Path | None:
        """The first URL that is a local file (``file://`` or a path), or None."""
        return next((local_path_of(u) for u in self.urls if not is_remote(u)), None)

    @property
    def builtin(self) -> bool:
        """Shipped inside the package: installing it reads a local archive, nothing is downloaded."""
        path = self.local_path()
        return path is not None and is_builtin_archive(path)

    def to_json(self) -> dict[str, Any]:
        out = {"urls": list(self.urls), "sha256": self.sha256, "size": self.size, "description": self.description}
        for key in ("task", "license", "intended_use"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class ModelIndex:
    """Models by name and version, combined from one or more index files."""

    entries: Mapping[str, Mapping[str, IndexEntry]] = field(default_factory=dict)
    descriptions: Mapping[str, str] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.entries)

    def versions(self, name: str) -> list[str]:
        """Versions of ``name``, oldest first."""
        return sorted(self.entries.get(name, {}), key=version_key)

    def resolve(self, name: str, version: str | None = None, *, installed: Sequence[str] = ()) -> IndexEntry:
        """The entry for ``NAME@VERSION`` (latest when ``version`` is None), with a helpful error.

        ``installed`` names the models installed locally (e.g. from a zip, not in any index): an
        unknown ``name`` is matched against them too in the "did you mean" hint.
        """
        if name not in self.entries:
            import difflib

            local = sorted(set(installed) - set(self.entries))
            close = difflib.get_close_matches(name, [*self.names(), *local], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(self.names()) or "none"
            also = f"; installed: {', '.join(local)}" if local else ""
            raise BundleError(f"model {name!r} is not in the index (known: {known}{also}){hint}")
        versions = self.versions(name)
        if version is None:
            version = versions[-1]
        if version not in self.entries[name]:
            raise BundleError(f"model {name!r} has no version {version!r} (available: {', '.join(versions)})")
        return self.entries[name][version]

    def merged(self, other: ModelIndex) -> ModelIndex:
        entries = {k: dict(v) for k, v in self.entries.items()}
        for name, versions in other.entries.items():
            entries.setdefault(name, {}).update(versions)
        return ModelIndex(entries, {**self.descriptions, **other.descriptions})


def _resolve_url(url: Any, base: str, where: str) -> str:
    if not isinstance(url, str) or not url:
        raise BundleError(f"{where}: every url must be a non-empty string, got {url!r}")
    parsed = urlparse(url)
    if parsed.scheme in (*_REMOTE, "file") or Path(url).is_absolute():
        return url
    if parsed.scheme:
        raise BundleError(f"{where}: unsupported URL scheme {parsed.scheme!r} in {url!r} (use http(s), ftp or file)")
    if is_remote(base):
        return urljoin(base, url)
    return str((Path(base).parent / url).resolve())


def parse_index(data: Any, *, source: str) -> ModelIndex:
    """Validate index JSON read from ``source`` (a path or URL; relative URLs resolve against it)."""
    if not isinstance(data, Mapping):
        raise BundleError(f"{source}: an index is a JSON object with 'models'")
    if data.get("schema_version", INDEX_SCHEMA_VERSION) != INDEX_SCHEMA_VERSION:
        raise BundleError(
            f"{source}: index schema_version {data.get('schema_version')!r} is not supported "
            f"(this voxseg reads {INDEX_SCHEMA_VERSION})"
        )
    models = data.get("models", {})
    if not isinstance(models, Mapping):
        raise BundleError(f"{source}: 'models' must map model names to their versions")
    entries: dict[str, dict[str, IndexEntry]] = {}
    descriptions = {}
    for name, model in models.items():
        check_name(name, f"{source}: model name")
        if not isinstance(model, Mapping) or not isinstance(model.get("versions"), Mapping):
            raise BundleError(f"{source}: model {name!r} needs a 'versions' object")
        descriptions[name] = str(model.get("description", ""))
        entries[name] = {}
        for ver, info in model["versions"].items():
            check_version(ver, f"{source}: {name} version")
            entries[name][ver] = _entry(name, ver, info, source)
    return ModelIndex(entries, descriptions)


def _entry(name: str, ver: str, info: Any, source: str) -> IndexEntry:
    where = f"{source}: {name}@{ver}"
    if not isinstance(info, Mapping):
        raise BundleError(f"{where} must be an object with urls and sha256")
    unknown = sorted(set(info) - {"urls", "url", "sha256", "size", "description", "task", "license", "intended_use"})
    if unknown:
        raise BundleError(f"{where} has unknown key(s) {', '.join(unknown)}")
    urls = info.get("urls", [info["url"]] if "url" in info else [])
    if isinstance(urls, str) or not isinstance(urls, Sequence) or not urls:
        raise BundleError(f"{where} needs 'urls': a non-empty list of URLs (mirrors, tried in order)")
    digest = info.get("sha256")
    if not is_sha256(digest):
        raise BundleError(f"{where} needs 'sha256': 64 lower-case hex digits, got {digest!r}")
    size = info.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise BundleError(f"{where}: 'size' must be a byte count, got {size!r}")
    texts = {}
    for key in ("task", "license", "intended_use"):
        texts[key] = info.get(key, "")
        if not isinstance(texts[key], str):
            raise BundleError(f"{where}: {key!r} must be a string, got {texts[key]!r}")
    resolved = tuple(_resolve_url(u, source, where) for u in urls)
    return IndexEntry(name, ver, resolved, digest, size, str(info.get("description", "")), source, **texts)


def _read_local(path: Path) -> Any:
    try:
        return read_json(path, error=BundleError, fix="fix the index file")
    except FileNotFoundError:
        raise BundleError(f"{path}: no such index file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{path}: unreadable index ({exc})") from None


def _read_remote(url: str, cache: Path | None, offline: bool) -> Any:
    """Download an index (no known hash: it changes), keeping a copy for offline use."""
    if cache is None:
        raise BundleError(f"{url}: a remote index needs a cache folder")
    copy = cache / "indexes" / (hashlib.sha256(url.encode()).hexdigest()[:16] + ".json")
    if not offline:
        try:
            import pooch

            copy.parent.mkdir(parents=True, exist_ok=True)
            tmp = copy.with_suffix(".new")  # an index changes: always refresh, keep the old copy on failure
            pooch.HTTPDownloader(progressbar=False, timeout=30)(url, str(tmp), None)
            tmp.replace(copy)
        except Exception as exc:  # network errors come in many types (requests, OSError, ...)
            if not copy.is_file():
                raise BundleError(f"{url}: cannot download the index ({exc}) and no cached copy exists") from None
            log.warning("%s: cannot download the index (%s); using the cached copy", url, exc)
    elif not copy.is_file():
        raise BundleError(f"{url}: offline and no cached copy of this index; run once online")
    return _read_local(copy)


def load_index(
    extra: str | Path | Sequence[str | Path] | None = None,
    *,
    builtin: bool = True,
    cache: str | Path | None = None,
    offline: bool = False,
) -> ModelIndex:
    """The built-in index combined with ``extra`` indexes (paths or URLs; later ones win).

    Parameters
    ----------
    extra
        One index or several (``--index``; ``VOXSEG_INDEX`` is read by the CLI, not here).
    builtin
        Include the index shipped in the package.
    cache
        Folder keeping copies of remote indexes (used when offline or the server is down).
    offline
        Never touch the network: remote indexes come from their cached copies.
    """
    sources: list[str] = [str(builtin_index_path())] if builtin else []
    if extra is not None:
        sources += [str(extra)] if isinstance(extra, (str, Path)) else [str(e) for e in extra]
    index = ModelIndex()
    for src in sources:
        if is_remote(src):
            data = _read_remote(src, Path(cache) if cache is not None else None, offline)
        else:
            path = local_path_of(src)
            src = str(path.resolve())
            data = _read_local(path)
        index = index.merged(parse_index(data, source=src))
    return index
