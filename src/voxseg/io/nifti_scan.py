"""Checks on NIfTI files that ITK's reader (niftilib) does not make, done by streaming the file once.

niftilib silently **zero-fills truncated files** and **replaces NaN/Inf voxels by 0**. voxseg wants
a clear error for the first and its own NaN policy (warn / error / allow) for the second, so
:func:`scan_nifti` reads the header and the voxel data itself: it raises on truncated or corrupt
files and returns where the non-finite voxels are, so the reader can put them back.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from voxseg.errors import InputImageError
from voxseg.io.volume import check_spacing

__all__ = ["NiftiScan", "scan_nifti", "restore_nonfinite"]

_CHUNK_VOXELS = 1 << 21
MAX_IMAGE_ENV = "VOXSEG_MAX_IMAGE_GB"


def max_image_bytes() -> int:
    """The largest voxel data voxseg reads: ``$VOXSEG_MAX_IMAGE_GB`` GiB, else half the machine's memory."""
    text = os.environ.get(MAX_IMAGE_ENV, "").strip()
    if text:
        try:
            return int(float(text) * (1 << 30))
        except ValueError:
            pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 2
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows)
        return 16 << 30


def _refuse_too_large(path: Path, nbytes: int) -> None:
    limit = max_image_bytes()
    if nbytes > limit:
        raise InputImageError(
            path,
            f"image too large: its header promises {nbytes / (1 << 30):.2f} GiB of voxel data, "
            f"over the limit of {limit / (1 << 30):.2f} GiB",
            f"crop or downsample it, or raise the limit with {MAX_IMAGE_ENV}=N (GiB) given that much memory",
        )


_FLOAT_CODES = {16: "f4", 64: "f8"}  # NIfTI datatype codes of real floats


@dataclass(frozen=True)
class _Header:
    offset: int  # first data byte
    nbytes: int  # data bytes promised by dim and bitpix
    dtype: np.dtype | None  # voxel dtype when it is a real float (the only kind that holds NaN)
    slope: float
    inter: float
    spacing: tuple[float, ...]  # pixdim of the spatial axes (x, y, z order), sign dropped


@dataclass(frozen=True)
class NiftiScan:
    """Flat indices (file order: x fastest, then y, z, t, ...) and raw values of NaN/Inf voxels."""

    index: np.ndarray
    value: np.ndarray
    slope: float
    inter: float


def _parse_header(head: bytes) -> _Header | None:
    """The data extent and float type of a NIfTI-1/2 header, or None if ``head`` is not NIfTI."""
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348:
            code, bitpix = struct.unpack(endian + "2h", head[70:74])
            dims = struct.unpack(endian + "8h", head[40:56])
            pixdim = struct.unpack(endian + "8f", head[76:108])
            offset = max(int(struct.unpack(endian + "f", head[108:112])[0]), 352)
            slope, inter = struct.unpack(endian + "2f", head[112:120])
            break
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540:
            code, bitpix = struct.unpack(endian + "2h", head[12:16])
            dims = struct.unpack(endian + "8q", head[16:80])
            pixdim = struct.unpack(endian + "8d", head[104:168])
            offset = max(int(struct.unpack(endian + "q", head[168:176])[0]), 544)
            slope, inter = struct.unpack(endian + "2d", head[176:192])
            break
    else:
        return None
    ndim = dims[0]
    if not 1 <= ndim <= 7 or bitpix <= 0:
        return None
    if any(d < 1 for d in dims[1 : ndim + 1]):  # niftilib would print to stderr, then ITK fail
        raise _BadDims(f"NIfTI header has dimension sizes {list(dims[1 : ndim + 1])} (each must be at least 1)")
    voxels = int(np.prod([max(int(d), 1) for d in dims[1 : ndim + 1]], dtype=np.int64))
    dtype = np.dtype(endian + _FLOAT_CODES[code]) if code in _FLOAT_CODES else None
    # a negative pixdim is read as its magnitude, as niftilib (and so ITK) does: orientation comes
    # from the qform/sform, not from the sign of the voxel size
    spacing = tuple(abs(float(p)) for p in pixdim[1 : min(ndim, 3) + 1])
    return _Header(offset, voxels * bitpix // 8, dtype, float(slope), float(inter), spacing)


class _BadDims(ValueError):
    pass


def _read_data(fh: IO[bytes], header: _Header) -> tuple[int, list[np.ndarray], list[np.ndarray]]:
    """Stream to the end; return the data bytes seen and the NaN/Inf voxels (index, raw value)."""
    fh.seek(header.offset)
    seen, found_index, found_value = 0, [], []
    itemsize = header.dtype.itemsize if header.dtype is not None else 1
    while chunk := fh.read(itemsize * _CHUNK_VOXELS):
        if header.dtype is not None and seen < header.nbytes:
            usable = min(len(chunk), header.nbytes - seen)
            values = np.frombuffer(chunk, header.dtype, count=usable // itemsize)
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                found_index.append(bad + seen // itemsize)
                found_value.append(values[bad].astype(header.dtype.newbyteorder("=")))
        seen += len(chunk)
    return seen, found_index, found_value


def scan_nifti(path: Path) -> NiftiScan | None:
    """Raise if the NIfTI file ``path`` is truncated or corrupt; return its NaN/Inf voxels.

    Returns None when the file does not start with a NIfTI header (ITK then reports the error).
    """
    gz = path.name.lower().endswith(".gz")
    try:
        with gzip.open(path, "rb") if gz else open(path, "rb") as fh:
            try:
                header = _parse_header(fh.read(548))
            except _BadDims as exc:
                raise InputImageError(path, str(exc), "the header is corrupt: export the image again") from None
            if header is None:
                return None
            check_spacing(header.spacing[::-1], path)  # before ITK silently reads 0 or NaN as 1 mm
            _refuse_too_large(path, header.nbytes)
            if header.dtype is None and not gz:  # nothing to look for in the data: the size will do
                seen = path.stat().st_size - header.offset
                found_index, found_value = [], []
            else:
                seen, found_index, found_value = _read_data(fh, header)
    except gzip.BadGzipFile as exc:
        if str(exc).startswith("Not a gzipped file"):
            raise InputImageError(
                path, "not a gzip file", "a .nii.gz must be gzip-compressed NIfTI; rename an uncompressed one to .nii"
            ) from None
        raise InputImageError(
            path, f"corrupt gzip stream ({exc})", "the file is damaged: copy or download it again"
        ) from None
    except (EOFError, OSError, zlib.error) as exc:
        raise InputImageError(
            path, f"truncated or corrupt gzip stream ({exc})", "the file is incomplete: copy or download it again"
        ) from None
    if seen < header.nbytes:
        raise InputImageError(
            path,
            f"truncated NIfTI: {header.offset + seen} bytes where the header promises {header.offset + header.nbytes}",
            "the file is incomplete: copy or download it again",
        )
    index = np.concatenate(found_index) if found_index else np.zeros(0, np.int64)
    value = np.concatenate(found_value) if found_value else np.zeros(0)
    return NiftiScan(index, value, header.slope, header.inter)


def restore_nonfinite(arrays: list[np.ndarray], scan: NiftiScan) -> bool:
    """Put the NaN/Inf voxels niftilib replaced by 0 back into the per-channel ``arrays``.

    Channel ``c`` holds file voxels ``[c * n, (c + 1) * n)`` with ``n`` voxels per channel
    (4D time series and vector images alike). Returns False (and changes nothing) when the
    arrays do not match the file layout or are not float.
    """
    if scan.index.size == 0:
        return True
    n = arrays[0].size
    if any(a.size != n or a.dtype.kind != "f" for a in arrays) or int(scan.index.max()) >= n * len(arrays):
        return False
    value = scan.value.astype(np.float64)
    if scan.slope != 0 and np.isfinite(scan.slope) and (scan.slope, scan.inter) != (1.0, 0.0):
        value = value * scan.slope + scan.inter  # as ITK scales (a slope of 0 means none)
    for c, array in enumerate(arrays):
        mine = (scan.index >= c * n) & (scan.index < (c + 1) * n)
        array.flat[scan.index[mine] - c * n] = value[mine]
    return True
