"""NIfTI, NRRD and MetaImage through SimpleITK, and the SimpleITK <-> Volume conversion.

SimpleITK stores geometry in ITK ``(x, y, z)`` order while its arrays are ``(z, y, x)``; this
module is the one place that reverses the geometry to voxseg's array order.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from voxseg.errors import GeometryError, InputImageError
from voxseg.io.nifti_scan import restore_nonfinite, scan_nifti
from voxseg.io.volume import Volume

__all__ = ["volume_from_sitk", "volume_to_sitk", "read_sitk", "write_sitk", "split_sitk_channels"]

log = logging.getLogger(__name__)
_ITK_OBJECT = re.compile(r"^\w+\(0x[0-9a-f]+\): ")


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
            extract = sitk.Extract(image, [*size[:3], 0], [0, 0, 0, c])
            out.append(volume_from_sitk(extract))
        return out
    if ndim in (2, 3):
        return [volume_from_sitk(image)]
    raise InputImageError(
        path, f"{ndim}D images are not supported", "voxseg reads 2D and 3D images (and 4D as channels)"
    )


def _itk_message(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "ERROR" in ln or "trouble" in ln or "Unable" in ln or "does not exist" in ln:
            return ln.split("ERROR:")[-1].strip()
    return lines[-1] if lines else type(exc).__name__


@contextlib.contextmanager
def _itk_readable(path: Path) -> Iterator[Path]:
    """A name under which ITK reads ``path`` itself.

    niftilib looks for the voxel data of ``x.nii.gz`` in ``x.nii`` first: when both exist it
    combines the header of one with the data of the other, silently. Such a file is read through
    an alias in a private folder.
    """
    sibling = path.with_name(path.name[:-3]) if path.name.lower().endswith(".nii.gz") else None
    if sibling is None or not sibling.exists():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="voxseg-") as tmp:
        alias = Path(tmp) / path.name
        try:
            alias.symlink_to(path.resolve())
        except OSError:  # no symlinks (Windows without privilege): copy
            shutil.copyfile(path, alias)
        yield alias


def read_sitk(path: Path) -> list[Volume]:
    """Read a NIfTI / NRRD / MHA / MHD file into per-channel Volumes (one for scalar images)."""
    scan = scan_nifti(path) if path.name.lower().endswith((".nii", ".nii.gz")) else None
    reader = sitk.ImageFileReader()
    try:
        with _itk_readable(path) as readable:
            reader.SetFileName(str(readable))
            image = reader.Execute()
    except RuntimeError as exc:
        msg = _itk_message(exc)
        if "Unable to determine ImageIO" in msg:
            raise InputImageError(
                path,
                "not a readable image (unknown or corrupt format)",
                "check that the file is a complete image of the type its suffix says",
            ) from None
        if "allocate" in msg.lower():
            raise InputImageError(
                path, f"image too large for the memory available ({msg})", "crop or downsample it, or add memory"
            ) from None
        if "spacing" in msg.lower():
            raise GeometryError(
                path,
                f"invalid voxel spacing in the header ({_ITK_OBJECT.sub('', msg)})",
                "fix the header's spacing (must be positive)",
            ) from None
        raise InputImageError(path, f"cannot read image: {msg}", "the file may be truncated or corrupt") from None
    _refuse_complex(image, path)
    volumes = split_sitk_channels(image, path)
    if scan is not None and not restore_nonfinite([v.array for v in volumes], scan):
        log.warning("%s: %d NaN/Inf voxels were read as 0", path, scan.index.size)
    return volumes


def _refuse_complex(image: sitk.Image, path: Path) -> None:
    name = image.GetPixelIDTypeAsString()
    if "complex" in name.lower():
        raise InputImageError(path, f"unsupported pixel type {name}", "convert to a real-valued image (magnitude)")


def write_sitk(volume: Volume, path: Path, *, compress: bool = True) -> None:
    """Write ``volume`` with SimpleITK (format from the suffix of ``path``)."""
    sitk.WriteImage(volume_to_sitk(volume), str(path), useCompression=compress)
