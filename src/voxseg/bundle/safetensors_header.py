"""Validating a safetensors header ourselves, before the safetensors library sees the file.

A safetensors file is an 8-byte little-endian header length ``n``, ``n`` bytes of JSON
(``{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}``)
and the tensor bytes. A crafted header (offsets that are strings, floats, reversed, overlapping or
past the end of the file, shapes with negative or huge dimensions, unknown dtypes) made the
library raise ``ValueError`` / ``TypeError`` / ``OverflowError``; here every field is checked first,
with :func:`voxseg.io.safe_json.loads_json` for the JSON. No torch here.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from voxseg.errors import JSONFileError
from voxseg.io.safe_json import loads_json

__all__ = ["TensorInfo", "HeaderProblem", "parse_safetensors_header", "DTYPE_SIZES", "MAX_HEADER_BYTES"]

#: Bytes per element of the dtypes safetensors defines.
DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
#: The safetensors library refuses headers over 100 MB; so does voxseg.
MAX_HEADER_BYTES = 100_000_000
_MAX_NDIM = 8


class HeaderProblem(ValueError):
    """Why a header is not a valid safetensors header (a short phrase)."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a safetensors file: dtype name, shape and byte range in the data section."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tensor(name: str, info: object) -> TensorInfo:
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise HeaderProblem(f"tensor {name!r} is not an object with dtype, shape and data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise HeaderProblem(f"tensor {name!r} has an unknown dtype {dtype!r}")
    if not isinstance(shape, list) or len(shape) > _MAX_NDIM or not all(_is_int(d) and d >= 0 for d in shape):
        raise HeaderProblem(f"tensor {name!r} has an invalid shape (a list of at most 8 non-negative integers)")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
        raise HeaderProblem(f"tensor {name!r} has no valid data_offsets (two integers)")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise HeaderProblem(f"tensor {name!r} has data_offsets {offsets} out of order")
    expected = math.prod(shape) * DTYPE_SIZES[dtype]
    if end - begin != expected:
        raise HeaderProblem(
            f"tensor {name!r} spans {end - begin} bytes but its shape {shape} of {dtype} needs {expected}"
        )
    return TensorInfo(dtype, tuple(shape), begin, end)


def parse_safetensors_header(head: bytes, size: int) -> dict[str, TensorInfo]:
    """The tensors described by a safetensors header, after checking every field.

    ``head`` holds the first bytes of the file (at least ``8 + n``); ``size`` is the file size.
    The tensors must tile the data section exactly: in order, without gaps or overlaps, ending at
    the end of the file.

    Raises
    ------
    HeaderProblem
        With a short phrase saying what is wrong.
    """
    if len(head) < 8:
        raise HeaderProblem("it is too short to be a safetensors file")
    (n,) = struct.unpack("<Q", head[:8])
    if n < 2 or n > MAX_HEADER_BYTES or 8 + n > size or 8 + n > len(head) or head[8:9] != b"{":
        raise HeaderProblem("its header length is invalid (not a safetensors file, or truncated)")
    try:
        header = loads_json(head[8 : 8 + n], source="header", max_bytes=MAX_HEADER_BYTES, max_depth=4)
    except JSONFileError as exc:
        raise HeaderProblem(f"its header is not valid JSON ({str(exc).removeprefix('header: ')})") from None
    if not isinstance(header, dict):
        raise HeaderProblem("its header is not a JSON object (not a safetensors file)")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise HeaderProblem("its __metadata__ is not an object of strings")
    tensors = {name: _tensor(name, info) for name, info in header.items()}
    position = 0
    for name, info in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if info.begin != position:
            what = "overlaps another tensor" if info.begin < position else "leaves a gap before it"
            raise HeaderProblem(f"tensor {name!r} {what} (data_offsets {[info.begin, info.end]})")
        position = info.end
    if 8 + n + position != size:
        promised = 8 + n + position
        raise HeaderProblem(f"its size {size} does not match its header ({promised} bytes): truncated or padded")
    return tensors
