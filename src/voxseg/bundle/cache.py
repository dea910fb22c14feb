"""Installing models: download once (pooch, sha256 checked), verify, extract, work offline after.

Folders (``cache`` and ``models`` default to :func:`voxseg.settings.resolve_paths`; the CLI passes
its ``--cache-dir`` / ``--models-dir`` flags):

```
CACHE/downloads/NAME-VERSION-<sha256[:12]>.zip   verified downloads (pooch; a bad one is deleted)
CACHE/downloads/NAME-VERSION-<sha256[:12]>.zip.part   an interrupted download, resumed (HTTP Range) next time
CACHE/locks/NAME-VERSION.lock                   held while NAME@VERSION is downloaded and installed
CACHE/indexes/<hash of url>.json                 copies of remote indexes, for offline use
CACHE/bundles/<sha256>/                          zips opened by path, extracted once
MODELS/NAME/VERSION/                             installed bundles: bundle.json, weights/, README.md,
                                                 installed.json (source, sha256 of the archive, date)
```

The archive's sha256 is checked before anything is extracted; the extracted files are checked
against ``bundle.json`` before the model is moved into place. A second install of an installed
model touches no network. No torch here.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from filelock import FileLock, Timeout

from voxseg.bundle._util import parse_reference, sha256_file, version_key
from voxseg.bundle.archive import ArchiveLimits, extract_zip
from voxseg.bundle.download import ResumableDownloader
from voxseg.bundle.index import IndexEntry, is_remote, load_index, local_path_of
from voxseg.bundle.load import INSTALL_RECORD, Bundle, open_bundle, open_extracted
from voxseg.errors import BundleError
from voxseg.io import write_json_atomic
from voxseg.io.atomic import clean_stale_parts
from voxseg.io.safe_json import read_json

__all__ = [
    "InstalledModel",
    "install",
    "installed_models",
    "resolve_bundle",
]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
IndexArg = str | Path | Sequence[str | Path] | None


@dataclass(frozen=True)
class InstalledModel:
    """A model installed under ``MODELS/NAME/VERSION/``."""

    name: str
    version: str
    path: Path
    sha256: str
    source: str
    installed: str

    @property
    def reference(self) -> str:
        return f"{self.name}@{self.version}"

    def open(self) -> Bundle:
        """Open (and verify) the installed bundle."""
        return open_bundle(self.path)


def _dirs(cache: str | Path | None, models: str | Path | None) -> tuple[Path, Path]:
    if cache is None or models is None:
        from voxseg.settings import resolve_paths

        paths = resolve_paths(cache=cache, models=models)
        return paths.cache, paths.models
    return Path(cache), Path(models)


def _record(path: Path) -> InstalledModel | None:
    try:
        data = read_json(path / INSTALL_RECORD)
        return InstalledModel(
            data["name"], data["version"], path, data["sha256"], data.get("source", ""), data.get("installed", "")
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def installed_models(models: str | Path | None = None) -> list[InstalledModel]:
    """Models installed under ``models`` (name, then version order)."""
    root = _dirs(None, models)[1] if models is None else Path(models)
    found = [m for p in sorted(root.glob("*/*")) if p.is_dir() and (m := _record(p)) is not None]
    return sorted(found, key=lambda m: (m.name, version_key(m.version)))


def find_installed(models: Path, name: str, version: str | None = None) -> InstalledModel | None:
    matches = [m for m in installed_models(models) if m.name == name and version in (None, m.version)]
    return matches[-1] if matches else None


def looks_like_path(ref: str) -> bool:
    return "/" in ref or os.sep in ref or ref.lower().endswith(".zip") or Path(ref).exists()


def install(
    name_or_path: str | Path,
    *,
    index: IndexArg = None,
    cache: str | Path | None = None,
    models: str | Path | None = None,
    offline: bool = False,
    progress: Progress | None = None,
    retries: int = 1,
    limits: ArchiveLimits = ArchiveLimits(),
) -> InstalledModel:
    """Install ``NAME[@VERSION]`` from the index(es), or a local bundle ``.zip`` / folder.

    Parameters
    ----------
    name_or_path
        ``mouse-lung-nodules``, ``mouse-lung-nodules@v1``, or ``./model.zip``.
    index
        Extra index file(s) or URL(s), combined with the built-in index.
    cache, models
        Download cache and install folders (default: :func:`voxseg.settings.resolve_paths`).
    offline
        Never download: succeed only if the model is installed (or a local file).
    progress
        ``progress(done_bytes, total_bytes)`` during downloads.
    retries
        Extra attempts per mirror after a network error.

    Raises
    ------
    BundleError
        Unknown name or version, every mirror failed, checksum mismatch (the message gives the
        expected and actual sha256; the bad download is deleted), or an unsafe bundle.
    """
    cache_dir, models_dir = _dirs(cache, models)
    ref = str(name_or_path)
    _sweep_staging(models_dir)
    if isinstance(name_or_path, Path) or looks_like_path(ref):
        return _install_local(Path(ref), models_dir, limits)
    name, version = parse_reference(ref)
    have = find_installed(models_dir, name, version)
    if version is not None and have is not None:
        return have  # instant and offline
    try:
        installed_names = [m.name for m in installed_models(models_dir)]
        entry = load_index(index, cache=cache_dir, offline=offline).resolve(name, version, installed=installed_names)
    except BundleError:
        if have is not None:  # NAME without version: the latest installed one will do
            return have
        raise
    if version is None and have is not None and version_key(have.version) > version_key(entry.version):
        return have  # NAME without version: a local version newer than the index's (e.g. fine-tuned)
    have = find_installed(models_dir, name, entry.version)
    if have is not None:
        if have.sha256 != entry.sha256:
            log.warning("%s is installed from another archive than the index lists", have.reference)
        return have
    if offline and entry.local_path() is None:
        raise BundleError(f"{name}@{entry.version} is not installed and offline mode forbids downloading it")
    fetched = partial(fetch, entry, cache_dir, progress=progress, retries=retries, offline=offline)
    if entry.local_path() is not None:  # nothing to download: verified in place
        archive, url = fetched()
        return _install_archive(archive, entry.sha256, models_dir, limits, source=url, expect=entry)
    with _install_lock(cache_dir, entry) as lock:  # a second process waits here, then finds it installed
        have = find_installed(models_dir, name, entry.version)
        if have is not None and have.sha256 == entry.sha256:
            return have
        clean_downloads(cache_dir, held=Path(lock.lock_file))
        archive, url = fetched()
        return _install_archive(archive, entry.sha256, models_dir, limits, source=url, expect=entry)


_LOCK_SUFFIX = ".lock"


def _sweep_staging(models_dir: Path) -> list[Path]:
    """Remove the staging folders (``.install.PID.X.part``, ``NAME/.VERSION.PID.X.part``) of installs
    killed before they could clean up: only those whose process no longer runs."""
    if not models_dir.is_dir():
        return []
    removed = clean_stale_parts(models_dir, "install")
    for folder in models_dir.iterdir():
        if folder.is_dir() and not folder.name.startswith("."):
            removed += clean_stale_parts(folder)
    return removed


def _install_lock(cache: Path, entry: IndexEntry) -> FileLock:
    """The lock held while ``NAME@VERSION`` is downloaded and installed (``CACHE/locks/*.lock``)."""
    folder = cache / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(folder / f"{entry.name}-{entry.version}{_LOCK_SUFFIX}")


def clean_downloads(cache: Path, *, held: Path | None = None) -> list[Path]:
    """Delete the temporary files (``tmpXXXXXXXX``) a killed install left in ``CACHE/downloads``,
    when no other install is running (every lock in ``CACHE/locks`` but ``held``, the caller's,
    is free); return what was deleted."""
    folder = cache / "downloads"
    if not folder.is_dir():
        return []
    for lock_path in (cache / "locks").glob(f"*{_LOCK_SUFFIX}"):
        if held is not None and lock_path.resolve() == held.resolve():
            continue
        lock = FileLock(lock_path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return []  # another install is running: its temporary file may be in use
        lock.release()
    removed = []
    for leftover in folder.glob("tmp*"):
        if leftover.is_file():
            leftover.unlink(missing_ok=True)
            removed.append(leftover)
            log.info("removed %s, left by an interrupted install", leftover)
    return removed


def _install_local(path: Path, models_dir: Path, limits: ArchiveLimits) -> InstalledModel:
    if not path.exists():
        raise BundleError(f"{path}: no such file (give a bundle .zip, a bundle folder, or a model NAME)")
    if path.is_dir():
        bundle = open_bundle(path, limits=limits)
        digest = sha256_file(path / "bundle.json")
        return _place(models_dir, bundle, digest, str(path.resolve()), copy_from=path)
    return _install_archive(path, sha256_file(path), models_dir, limits, source=str(path.resolve()))


def _install_archive(
    archive: Path,
    digest: str,
    models_dir: Path,
    limits: ArchiveLimits,
    *,
    source: str,
    expect: IndexEntry | None = None,
) -> InstalledModel:
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".install.{os.getpid()}.", suffix=".part", dir=models_dir))
    try:
        folder = extract_zip(archive, staging / "bundle", limits=limits)
        bundle = open_extracted(folder, archive, limits=limits)  # errors name the zip, not the staging folder
        m = bundle.manifest
        if expect is not None and (m.name, m.version) != (expect.name, expect.version):
            raise BundleError(
                f"{archive}: holds {m.reference} but the index lists it as {expect.name}@{expect.version}; "
                "fix the index"
            )
        return _place(models_dir, bundle, digest, source)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _place(models_dir: Path, bundle: Bundle, digest: str, source: str, copy_from: Path | None = None) -> InstalledModel:
    """Move a verified bundle folder to ``MODELS/NAME/VERSION`` with its ``installed.json``."""
    m = bundle.manifest
    target = models_dir / m.name / m.version
    have = _record(target) if target.is_dir() else None
    if have is not None and have.sha256 == digest:
        return have
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{m.version}.{os.getpid()}.", suffix=".part", dir=target.parent))
    try:
        folder = staging / "b"
        if copy_from is not None:
            shutil.copytree(copy_from, folder, symlinks=True)
            (folder / INSTALL_RECORD).unlink(missing_ok=True)
        else:
            shutil.move(str(bundle.root), folder)
        record = {
            "name": m.name,
            "version": m.version,
            "sha256": digest,
            "source": source,
            "installed": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        }
        write_json_atomic(folder / INSTALL_RECORD, record)
        if target.exists():
            log.warning("replacing %s@%s installed from another archive", m.name, m.version)
            os.replace(target, staging / "old")
        try:
            os.replace(folder, target)
        except OSError:
            other = _record(target)  # another process installed the same model meanwhile
            if other is None or other.sha256 != digest:
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("installed %s into %s", m.reference, target)
    done = _record(target)
    if done is None:  # unreachable unless the folder was removed under our feet
        raise BundleError(f"{target}: installation vanished; run the install again")
    return done


def fetch(
    entry: IndexEntry,
    cache: Path,
    *,
    progress: Progress | None = None,
    retries: int = 1,
    offline: bool = False,
) -> tuple[Path, str]:
    """The verified archive of ``entry`` and the URL it came from: a local file, the cached
    download, or a new download.

    Mirrors are tried in order; each remote one gets ``retries`` extra attempts after network
    errors. A download whose sha256 differs is deleted (pooch downloads to a temporary file and
    moves it into the cache only when the hash matches).
    """
    problems: list[str] = []
    for url in entry.urls:
        if not is_remote(url):
            path = local_path_of(url)
            problem = _check_local(path, entry.sha256)
            if problem is None:
                return path, url
            problems.append(problem)
            continue
        if offline:
            continue
        got = _download(url, entry, cache, progress, retries)
        if isinstance(got, Path):
            return got, url
        problems.append(got)
    raise BundleError(
        f"{entry.name}@{entry.version}: {'; '.join(problems) or 'no usable URL'} "
        f"(expected sha256 {entry.sha256}; nothing was installed)"
    )


def _check_local(path: Path | None, expected: str) -> str | None:
    if path is None or not path.is_file():
        return f"{path}: no such file"
    actual = sha256_file(path)
    if actual != expected:
        return f"{path} has sha256 {actual}, not the expected {expected}"
    return None


def _download(url: str, entry: IndexEntry, cache: Path, progress: Progress | None, retries: int) -> Path | str:
    import pooch
    import requests

    pooch.get_logger().setLevel(logging.WARNING)  # our progress callback reports downloads, not pooch's logger
    fname = f"{entry.name}-{entry.version}-{entry.sha256[:12]}.zip"
    part = cache / "downloads" / f"{fname}.part"
    downloader = ResumableDownloader(part, size=entry.size, progress=progress, timeout=60)
    problem = ""
    for attempt in range(1 + max(0, retries)):
        try:
            path = pooch.retrieve(
                url,
                known_hash=f"sha256:{entry.sha256}",
                fname=fname,
                path=cache / "downloads",
                downloader=downloader,
                progressbar=False,
            )
            return Path(path)
        except ValueError as exc:  # pooch: hash mismatch (the temporary download is already deleted)
            found = re.search(r"but got ([0-9a-f]{64})", str(exc))
            actual = found.group(1) if found else "something else"
            return f"download from {url} has sha256 {actual}, expected {entry.sha256}; the bad file was deleted"
        except (requests.exceptions.RequestException, OSError) as exc:
            kept = part.stat().st_size if part.is_file() else 0
            problem = f"download from {url} failed ({type(exc).__name__}: {_short(exc)})" + (
                f"; the {kept} bytes received are kept and the next install resumes from them" if kept else ""
            )
            log.info("%s (attempt %d of %d)", problem, attempt + 1, 1 + retries)
            if attempt < retries:
                time.sleep(min(attempt + 1, 5))
    return problem


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def resolve_bundle(
    bundle_or_name: str | Path,
    *,
    index: IndexArg = None,
    cache: str | Path | None = None,
    models: str | Path | None = None,
    offline: bool = False,
    progress: Progress | None = None,
) -> Bundle:
    """Open a bundle given as a folder, a ``.zip`` (extracted into the cache) or a ``NAME[@VERSION]``
    (installed on first use)."""
    ref = str(bundle_or_name)
    if isinstance(bundle_or_name, Path) or looks_like_path(ref):
        cache_dir = _dirs(cache, models)[0]
        return open_bundle(Path(ref), cache=cache_dir)
    return install(ref, index=index, cache=cache, models=models, offline=offline, progress=progress).open()
