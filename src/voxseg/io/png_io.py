"""2D PNG and JPEG through Pillow. Geometry lives in a sidecar (``x.png.json``)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from voxseg.errors import InputImageError
from voxseg.io.sidecar import read_sidecar
from voxseg.io.volume import Geometry, Volume

__all__ = ["read_pil", "write_pil"]


def _channels(img: Image.Image, path: Path) -> list[np.ndarray]:
    mode = img.mode
    if mode in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(img)
        if mode == "1":
            arr = arr.astype(np.uint8)
        elif mode.startswith("I;16"):
            arr = arr.astype(np.uint16)
        return [arr]
    if mode in ("LA", "RGBA"):
        arr = np.asarray(img)
        alpha = arr[..., -1]
        if not np.all(alpha == alpha.flat[0]):
            logging.getLogger(__name__).warning("%s: the alpha channel varies and is ignored", path)
        img = img.convert("L" if mode == "LA" else "RGB")
        mode = img.mode
        if mode == "L":
            return [np.asarray(img)]
    if mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img)
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    if np.array_equal(r, g) and np.array_equal(r, b):
        return [np.ascontiguousarray(r)]  # grey stored as RGB
    return [np.ascontiguousarray(arr[..., c]) for c in range(3)]


def read_pil(path: Path) -> list[Volume]:
    try:
        with Image.open(path) as img:
            img.load()
            channels = _channels(img, path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputImageError(path, f"cannot read image ({exc})", "the file may be truncated or not an image") from None
    geometry = read_sidecar(path, 2) or Geometry.identity(2)
    return [Volume.like(c, geometry) for c in channels]


def _to_pil_array(volume: Volume, path: Path, jpeg: bool) -> np.ndarray:
    arr = volume.array
    if arr.ndim != 2:
        raise InputImageError(
            path, f"PNG/JPEG hold 2D images, got shape {arr.shape}", "write 3D images as .nii.gz, .nrrd, .mha or .tif"
        )
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if arr.dtype == np.uint8 or (arr.dtype == np.uint16 and not jpeg):
        return arr
    if np.issubdtype(arr.dtype, np.integer) and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        limit = 255 if jpeg else 65535
        if lo >= 0 and hi <= limit:
            return arr.astype(np.uint8 if hi <= 255 else np.uint16)
    what = "8-bit" if jpeg else "8/16-bit unsigned"
    raise InputImageError(
        path,
        f"{path.suffix} stores only {what} integers, got {arr.dtype}",
        "write .tif, .nii.gz or .mha for other data, or rescale to 0-255 yourself",
    )


def write_pil(volume: Volume, path: Path, *, compress: bool = True) -> None:
    jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    arr = _to_pil_array(volume, path, jpeg)
    img = Image.fromarray(arr)
    if jpeg:
        img.save(path, format="JPEG", quality=95)
    else:
        img.save(path, format="PNG", compress_level=6 if compress else 0)
