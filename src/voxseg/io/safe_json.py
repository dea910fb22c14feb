"""One loader for JSON files voxseg did not write itself (or that a user may have edited).

``json.loads`` on a crafted file ends in a ``RecursionError`` (1,000 nested lists), reads a
50 MB file into memory, accepts ``NaN`` / ``Infinity`` (not JSON) and raises ``UnicodeDecodeError``
on bytes that are not UTF-8. :func:`read_json` and :func:`loads_json` check the size first, then
the nesting depth (without recursion), then parse, and turn every failure into one
:class:`~voxseg.errors.VoxsegError` line naming the file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from voxseg.errors import InputImageError, JSONFileError, VoxsegError

__all__ = ["read_json", "loads_json", "MAX_JSON_BYTES", "MAX_JSON_DEPTH"]

#: Largest JSON file read (bytes); a dataset.json of 10,000 cases is about 1 MB.
MAX_JSON_BYTES = int(os.environ.get("VOXSEG_MAX_JSON_BYTES", 32 << 20))
#: Deepest nesting of lists and objects; voxseg's own files nest less than 10 levels.
MAX_JSON_DEPTH = 64

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def _error(error: type[VoxsegError], source: str | Path, problem: str, fix: str) -> VoxsegError:
    if issubclass(error, InputImageError):
        return error(source, problem, fix)
    return error(f"{source}: {problem} ({fix})")


def _depth(data: bytes) -> int:
    """Deepest bracket nesting of ``data``, strings left out; no recursion."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRING.sub(b'""', data)):
        if match.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (use null or a number)")


def loads_json(
    data: bytes | str,
    *,
    source: str | Path,
    error: type[VoxsegError] = JSONFileError,
    fix: str = "fix or replace the file",
    max_bytes: int | None = None,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """Parse ``data`` (the content of ``source``) after checking its size and depth.

    Raises
    ------
    VoxsegError
        ``error(...)`` naming ``source``: too large, nested too deep, not UTF-8, not JSON, or
        holding ``NaN`` / ``Infinity``.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    cap = MAX_JSON_BYTES if max_bytes is None else max_bytes
    if len(raw) > cap:
        raise _error(error, source, f"JSON of {len(raw)} bytes is larger than the {cap}-byte cap", fix)
    depth = _depth(raw)
    if depth > max_depth:
        raise _error(error, source, f"JSON nested {depth} levels deep (more than {max_depth})", fix)
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError as exc:
        raise _error(error, source, f"not UTF-8 text (byte {exc.start})", fix) from None
    except json.JSONDecodeError as exc:
        raise _error(error, source, f"not valid JSON ({exc.msg}, line {exc.lineno})", fix) from None
    except (ValueError, RecursionError) as exc:
        raise _error(error, source, f"not valid JSON ({exc})", fix) from None


def read_json(
    path: str | Path,
    *,
    error: type[VoxsegError] = JSONFileError,
    fix: str = "fix or replace the file",
    max_bytes: int | None = None,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """Read and parse the JSON file ``path`` safely (see :func:`loads_json`).

    ``OSError`` (``FileNotFoundError`` included) passes through for the caller to word; a file
    over the size cap is refused before it is read.
    """
    path = Path(path)
    cap = MAX_JSON_BYTES if max_bytes is None else max_bytes
    if path.is_dir():
        raise _error(error, path, "is a folder, not a JSON file", "give the path of the file")
    size = path.stat().st_size
    if size > cap:
        raise _error(error, path, f"JSON of {size} bytes is larger than the {cap}-byte cap", fix)
    with open(path, "rb") as fh:
        data = fh.read(cap + 1)
    return loads_json(data, source=path, error=error, fix=fix, max_bytes=cap, max_depth=max_depth)
