"""Small helpers shared by the bundle modules: hashing, names, versions, safetensors sniffing.

No torch here.
"""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path

from voxseg.bundle.safetensors_header import HeaderProblem, parse_safetensors_header
from voxseg.errors import BundleError

__all__ = [
    "sha256_file",
    "sha256_bytes",
    "check_name",
    "check_version",
    "parse_reference",
    "version_key",
    "safetensors_problem",
    "PICKLE_SUFFIXES",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,31}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

#: File suffixes of pickle-based formats; a bundle holding one is refused.
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".bin")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_sha256(text: object) -> bool:
    return isinstance(text, str) and bool(_SHA256.match(text))


def check_name(name: object, what: str = "name") -> str:
    """A model name: lower-case letters, digits, ``.``, ``_``, ``-`` (``mouse-lung-nodules``)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise BundleError(
            f"{what} {name!r} is not a valid model name (use lower-case letters, digits, '.', '_', '-'; "
            "at most 64 characters, e.g. 'mouse-lung-nodules')"
        )
    return name


def check_version(version: object, what: str = "version") -> str:
    """A version: letters, digits, ``.``, ``_``, ``+``, ``-`` (``v2``, ``1.0.3``)."""
    if not isinstance(version, str) or not _VERSION.match(version):
        raise BundleError(
            f"{what} {version!r} is not a valid version (use letters, digits, '.', '_', '+', '-', e.g. 'v2' or '1.0.0')"
        )
    return version


def parse_reference(ref: str) -> tuple[str, str | None]:
    """``"NAME@VERSION"`` -> ``("NAME", "VERSION")``; ``"NAME"`` -> ``("NAME", None)``."""
    name, sep, version = ref.partition("@")
    check_name(name, "model name")
    if sep:
        check_version(version)
        return name, version
    return name, None


def version_key(version: str) -> tuple:
    """Sort key that orders ``v2 < v10`` and ``1.0 < 1.0.1``; a leading ``v`` is ignored.

    Numeric parts compare as numbers and before text parts, so ``1.0rc1 < 1.0.1``.
    """
    text = version[1:] if version[:1] in "vV" and version[1:2].isdigit() else version
    parts = re.findall(r"\d+|[A-Za-z]+", text)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts)


def safetensors_problem(head: bytes, size: int) -> str | None:
    """Why the bytes starting a file are not a safetensors file (None when they are).

    ``head`` must hold the first bytes of the file (at least the header); ``size`` is the file size.
    A safetensors file starts with an 8-byte little-endian header length and a JSON object.
    """
    if head[:2] == b"PK":
        return "it is a zip archive (a torch.save pickle?), not safetensors"
    if len(head) < 8:
        return "it is too short to be a safetensors file"
    (n,) = struct.unpack("<Q", head[:8])
    # A pickle starts with 0x80 (PROTO), but so does a safetensors file whose header length ends in
    # 0x80: only call it a pickle when the bytes do not parse as a safetensors header.
    if (n < 2 or 8 + n > size or 8 + n > len(head) or head[8:9] != b"{") and head[:1] == b"\x80":
        return "it is a Python pickle, not safetensors"
    try:
        parse_safetensors_header(head, size)
    except HeaderProblem as exc:
        return str(exc)
    return None


def read_head(path: Path, limit: int = 16 << 20) -> bytes:
    """The first bytes of ``path``: enough for a safetensors header (capped at ``limit``)."""
    with open(path, "rb") as fh:
        first = fh.read(8)
        if len(first) == 8:
            (n,) = struct.unpack("<Q", first)
            return first + fh.read(min(n, limit))
        return first
