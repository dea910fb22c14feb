"""Opening bundles: check the files, verify every sha256, then hand out manifest, card and weights.

:func:`open_bundle` accepts a bundle folder or ``.zip``. A zip is either extracted (safely, see
:mod:`voxseg.bundle.archive`) into a content-addressed cache folder ``CACHE/bundles/<sha256>/``
when ``cache`` is given, or read in place (members hashed by streaming, read when used). Every
file is hashed and compared with ``bundle.json`` before anything else happens; unlisted files,
missing files, pickles and weights that are not safetensors are refused. Loading weights uses
safetensors only: nothing is unpickled, and no training code is imported.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxseg.bundle._util import read_head, safetensors_problem, sha256_bytes, sha256_file
from voxseg.bundle.archive import ArchiveLimits, ZipMembers, check_folder, extract_zip, read_zip_members
from voxseg.bundle.manifest import MANIFEST_NAME, BundleManifest
from voxseg.bundle.safetensors_header import parse_safetensors_header
from voxseg.errors import BundleError
from voxseg.io.safe_json import MAX_JSON_BYTES
from voxseg.nets.bounds import network_spec_problem

if TYPE_CHECKING:
    import torch

__all__ = ["Bundle", "open_bundle", "INSTALL_RECORD", "CARD_NAME"]

log = logging.getLogger(__name__)

#: Written by ``install`` next to an installed bundle's files; not part of the bundle.
INSTALL_RECORD = "installed.json"
CARD_NAME = "README.md"
_HEAD_LIMIT = 16 << 20  # bytes of a weights file read to check its safetensors header


@dataclass(frozen=True)
class Bundle:
    """An opened, verified bundle.

    Attributes
    ----------
    manifest
        The validated ``bundle.json``.
    source
        What was opened (folder or zip).
    root
        The folder holding the files (the bundle folder, or the cache folder a zip was
        extracted to), or None when a zip is read in place.
    """

    manifest: BundleManifest
    source: Path
    root: Path | None
    _members: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    def read(self, name: str) -> bytes:
        """The bytes of one listed file (``README.md``, ``weights/fold_0.safetensors``)."""
        if name != MANIFEST_NAME and name not in self.manifest.files:
            raise BundleError(f"{self.source}: the bundle has no file {name!r}")
        if self.root is not None:
            return (self.root / name).read_bytes()
        return self._members[name]

    @property
    def sha256(self) -> str:
        """The model's identity: sha256 of its ``bundle.json`` (which lists every file's sha256)."""
        return sha256_bytes(self.read(MANIFEST_NAME))

    @property
    def card(self) -> str:
        """The model card (``README.md``), or an empty string when the bundle has none."""
        return self.read(CARD_NAME).decode("utf-8") if CARD_NAME in self.manifest.files else ""

    def weight_files(self) -> list[Path]:
        """Paths of ``weights/fold_K.safetensors`` (needs a folder: open zips with ``cache=``)."""
        if self.root is None:
            raise BundleError(f"{self.source}: opened in memory; open it with cache=FOLDER to get weight files")
        return [self.root / self.manifest.weights_file(f) for f in self.manifest.folds]

    def onnx_files(self) -> dict[int, Path]:
        """``{fold: path}`` of the ONNX models present (needs a folder)."""
        if self.root is None:
            raise BundleError(f"{self.source}: opened in memory; open it with cache=FOLDER to get ONNX files")
        names = {f: self.manifest.onnx_file(f) for f in self.manifest.folds}
        return {f: self.root / n for f, n in names.items() if n in self.manifest.files}

    def state_dict(self, fold: int) -> dict[str, torch.Tensor]:
        """The tensors of one fold's weights (safetensors; never a pickle)."""
        from safetensors.torch import load

        if fold not in self.manifest.folds:
            raise BundleError(f"{self.source}: no fold {fold} (the bundle has {list(self.manifest.folds)})")
        try:
            return load(self.read(self.manifest.weights_file(fold)))
        except Exception as exc:  # safetensors raises its own error types
            raise BundleError(f"{self.source}: fold {fold} weights are unreadable ({exc})") from None

    def network(self, fold: int) -> torch.nn.Module:
        """The network from the spec with fold ``fold``'s weights, strictly matched, in eval mode."""
        from voxseg.nets import build_network

        net = build_network(self.manifest.config.network)
        state = self.state_dict(fold)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = " ".join(str(exc).split())[:300]
            raise BundleError(f"{self.source}: fold {fold} weights do not match the network spec ({first})") from None
        return net.eval()


def open_bundle(
    path: str | Path, *, cache: str | Path | None = None, limits: ArchiveLimits = ArchiveLimits()
) -> Bundle:
    """Open a bundle folder or ``.zip`` and verify every file's sha256.

    Parameters
    ----------
    path
        A bundle folder (holding ``bundle.json``) or a ``.zip``.
    cache
        For zips: extract into ``CACHE/bundles/<sha256 of the zip>/`` (reused by later opens)
        instead of reading the members from the zip when used.
    limits
        Caps on member sizes (see :class:`~voxseg.bundle.archive.ArchiveLimits`).

    Raises
    ------
    BundleError
        Missing, unsafe or corrupt bundle, with the file at fault and what to do.
    """
    path = Path(path)
    if path.is_dir():
        return _open_folder(path, path, limits)
    if not path.exists():
        raise BundleError(f"{path}: no such bundle (give a bundle folder or .zip, or an installed NAME)")
    if cache is None:
        members = read_zip_members(path, limits=limits)
        manifest = _verify_members(path, members)
        return Bundle(manifest, path, None, members)
    digest = sha256_file(path)
    target = Path(cache) / "bundles" / digest
    if not target.is_dir():
        try:
            extract_zip(path, target, limits=limits)
        except OSError:
            if not target.is_dir():  # else another process extracted it meanwhile
                raise
        log.debug("extracted %s to %s", path, target)
    return _open_folder(target, path, limits)


def open_extracted(folder: str | Path, archive: str | Path, *, limits: ArchiveLimits = ArchiveLimits()) -> Bundle:
    """Open the bundle extracted from ``archive`` into ``folder``; errors name ``archive``."""
    return _open_folder(Path(folder), Path(archive), limits)


def _manifest_from(source: Path, data: bytes | None) -> BundleManifest:
    if data is None:
        raise BundleError(f"{source}: not a bundle (no {MANIFEST_NAME}); export one with `voxseg export`")
    try:
        return BundleManifest.loads(data)
    except BundleError as exc:
        raise BundleError(f"{source}: {exc}") from None


def _check_listing(source: Path, manifest: BundleManifest, present: set[str]) -> None:
    present = present - {MANIFEST_NAME}
    missing = sorted(set(manifest.files) - present)
    if missing:
        raise BundleError(f"{source}: {missing[0]!r} is listed in {MANIFEST_NAME} but missing (incomplete bundle)")
    extra = sorted(present - set(manifest.files))
    if extra:
        raise BundleError(f"{source}: {extra[0]!r} is not listed in {MANIFEST_NAME}; refused (tampered bundle?)")


def _mismatch(source: Path, name: str, expected: str, actual: str) -> BundleError:
    return BundleError(
        f"{source}: {name} fails its checksum (expected sha256 {expected}, got {actual}); "
        "the bundle is corrupt or was modified: download or export it again"
    )


def _verify_members(source: Path, members: ZipMembers) -> BundleManifest:
    manifest = _manifest_from(source, members.get(MANIFEST_NAME))
    _check_listing(source, manifest, set(members))
    for name, expected in manifest.files.items():
        actual = members.sha256(name)  # streamed: a bundle is never held in memory whole
        if actual != expected:
            raise _mismatch(source, name, expected, actual)
    for fold in manifest.folds:
        name = manifest.weights_file(fold)
        numel = _check_weights(source, name, members.head(name, 8 + _HEAD_LIMIT), members.sizes[name])
        _check_network(source, manifest, numel)
    return manifest


def _open_folder(root: Path, source: Path, limits: ArchiveLimits) -> Bundle:
    names = set(check_folder(root, limits=limits)) - {INSTALL_RECORD}
    manifest_path = root / MANIFEST_NAME
    data = None
    if manifest_path.is_file():
        with open(manifest_path, "rb") as fh:
            data = fh.read(MAX_JSON_BYTES + 1)  # more is refused by the JSON loader's size cap
    manifest = _manifest_from(source, data)
    _check_listing(source, manifest, names)
    for name, expected in manifest.files.items():
        actual = sha256_file(root / name)
        if actual != expected:
            raise _mismatch(source, name, expected, actual)
    for fold in manifest.folds:
        name = manifest.weights_file(fold)
        numel = _check_weights(source, name, read_head(root / name), (root / name).stat().st_size)
        _check_network(source, manifest, numel)
    return Bundle(manifest, source, root)


def _check_weights(source: Path, name: str, head: bytes, size: int) -> int:
    """Refuse weights that are not a valid safetensors file; return how many values they hold."""
    problem = safetensors_problem(head, size)
    if problem:
        raise BundleError(f"{source}: {name} is refused: {problem} (bundles hold safetensors weights only)")
    return sum(t.numel for t in parse_safetensors_header(head, size).values())


def _check_network(source: Path, manifest: BundleManifest, weights_numel: int) -> None:
    """Refuse an implausible network spec before anything builds it (a 2^20-filter network)."""
    problem = network_spec_problem(manifest.config.network.kwargs, weights_numel=weights_numel)
    if problem:
        raise BundleError(f"{source}: the network in {MANIFEST_NAME} is refused: {problem}; export the bundle again")


def describe(bundle: Bundle) -> dict[str, Any]:
    """A short JSON-able summary of a bundle (for ``voxseg bundle show --json``)."""
    m = bundle.manifest
    return {
        "name": m.name,
        "version": m.version,
        "task": m.task,
        "configuration": m.configuration,
        "folds": list(m.folds),
        "labels": dict(m.plan.labels),
        "source": str(bundle.source),
    }
