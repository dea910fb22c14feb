"""NIfTI, NRRD and MetaImage through SimpleITK, and the SimpleITK <-> Volume conversion.

SimpleITK stores geometry in ITK ``(x, y, z)`` order while its arrays are ``(z, y, x)``; this
module is the one place that reverses the geometry to voxseg's array order.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from voxseg.errors import InputImageError
from voxseg.io.volume import Volume

__all__ = ["volume_from_sitk", "volume_to_sitk", "read_sitk", "write_sitk", "split_sitk_channels"]



def volume_to_sitk(volume: Volume) -> sitk.Image:
    """A SimpleITK image with the Volume's array and geometry (axis order reversed)."""
    image = sitk.GetImageFromArray(volume.array, isVector=False)
    image.SetSpacing(volume.spacing[::-1])
    image.SetOrigin(volume.origin[::-1])
    image.SetDirection(tuple(volume.direction_matrix()[::-1, ::-1].ravel()))
    return image


def volume_from_sitk(image: sitk.Image) -> Volume:
    """A Volume from a scalar 2D/3D SimpleITK image."""
    ndim = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(ndim, ndim)
    return Volume(
        sitk.GetArrayFromImage(image),
        spacing=image.GetSpacing()[::-1],
        origin=image.GetOrigin()[::-1],
        direction=direction[::-1, ::-1],
    )


def split_sitk_channels(image: sitk.Image, path: Path) -> list[Volume]:
    """Split a vector-pixel or 4D (channel-last in ITK) image into per-channel Volumes."""
    ndim = image.GetDimension()
    if image.GetNumberOfComponentsPerPixel() > 1:
        comps = [sitk.VectorIndexSelectionCast(image, c) for c in range(image.GetNumberOfComponentsPerPixel())]
        return [volume_from_sitk(c) for c in comps]
    if ndim == 4:
        size = list(image.GetSize())
        n = size[3]
        out = []
        for c in range(n):
            extract = sitk.Extract(image, size[:3] + [0], [0, 0, 0, c])
            out.append(volume_from_sitk(extract))
        return out
    if ndim in (2, 3):
        return [volume_from_sitk(image)]
    raise InputImageError(path, f"{ndim}D images are not supported", "voxseg reads 2D and 3D images (and 4D as channels)")


def _nifti_data_extent(header: bytes) -> tuple[int, int] | None:
    """``(data offset, data bytes)`` promised by a NIfTI-1/2 header, or None if it is not NIfTI.

    Read from the header itself (dim, bitpix, vox_offset), not from ITK: ITK reports a float
    pixel type for integer files with ``scl_slope``/``scl_inter``, which would overstate the size.
    """
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            offset = max(int(struct.unpack(endian + "f", header[108:112])[0]), 352)
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            dims = struct.unpack(endian + "8q", header[16:80])
            offset = max(int(struct.unpack(endian + "q", header[168:176])[0]), 544)
            break
    else:
        return None
    ndim = dims[0]
    if not 1 <= ndim <= 7 or bitpix <= 0:
        return None
    voxels = int(np.prod([max(int(d), 1) for d in dims[1 : ndim + 1]], dtype=np.int64))
    return offset, voxels * bitpix // 8


def _check_nifti_complete(path: Path) -> None:
    """ITK's NIfTI reader silently zero-fills truncated files; detect truncation ourselves."""
    if path.name.lower().endswith(".gz"):
        total, head = 0, b""
        try:
            with gzip.open(path, "rb") as fh:
                while chunk := fh.read(1 << 24):
                    if len(head) < 548:
                        head += chunk[: 548 - len(head)]
                    total += len(chunk)
        except (EOFError, OSError, zlib.error) as exc:
            raise InputImageError(
                path, f"truncated or corrupt gzip stream ({exc})",
                "the file is incomplete: copy or download it again",
            ) from None
    else:
        with open(path, "rb") as fh:
            head = fh.read(548)
        total = path.stat().st_size
    extent = _nifti_data_extent(head)
    if extent is not None and total < sum(extent):
        raise InputImageError(
            path, f"truncated NIfTI: {total} bytes where the header promises {sum(extent)}",
            "the file is incomplete: copy or download it again",
        )


def _itk_message(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "ERROR" in ln or "trouble" in ln or "Unable" in ln or "does not exist" in ln:
            return ln.split("ERROR:")[-1].strip()
    return lines[-1] if lines else type(exc).__name__


def read_sitk(path: Path) -> list[Volume]:
    """Read a NIfTI / NRRD / MHA / MHD file into per-channel Volumes (one for scalar images)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        if path.name.lower().endswith((".nii", ".nii.gz")):
            _check_nifti_complete(path)
        image = reader.Execute()
    except RuntimeError as exc:
        msg = _itk_message(exc)
        if "Unable to determine ImageIO" in msg:
            raise InputImageError(path, "not a readable image (unknown or corrupt format)",
                                  "check that the file is a complete image of the type its suffix says") from None
        raise InputImageError(path, f"cannot read image: {msg}", "the file may be truncated or corrupt") from None
    _refuse_complex(image, path)
    return split_sitk_channels(image, path)


def _refuse_complex(image: sitk.Image, path: Path) -> None:
    name = image.GetPixelIDTypeAsString()
    if "complex" in name.lower():
        raise InputImageError(path, f"unsupported pixel type {name}", "convert to a real-valued image (magnitude)")


def write_sitk(volume: Volume, path: Path, *, compress: bool = True) -> None:
    """Write ``volume`` with SimpleITK (format from the suffix of ``path``)."""
    sitk.WriteImage(volume_to_sitk(volume), str(path), useCompression=compress)
