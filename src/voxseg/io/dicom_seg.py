"""DICOM Segmentation objects (SEG) with highdicom: write a label map over its source series, read one back.

The SEG is BINARY, one segment per class value (segment number = class value, names from the
model's labels), every source slice kept as a frame (empty ones too), so reading it back gives
the label map on the source series' grid. Needs ``pip install 'voxseg[dicom]'`` (highdicom).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from voxseg.errors import InputImageError
from voxseg.io.atomic import atomic_path
from voxseg.io.sitk_io import volume_from_sitk
from voxseg.io.volume import Volume

__all__ = ["write_dicom_seg", "read_dicom_seg", "SegAlgorithm"]

log = logging.getLogger(__name__)

_INSTALL = "pip install 'voxseg[dicom]' (highdicom)"


def _highdicom(path: Path) -> Any:
    try:
        import highdicom
    except ImportError:
        raise InputImageError(path, "DICOM SEG needs highdicom, which is not installed", _INSTALL) from None
    return highdicom


class SegAlgorithm:
    """Who made a segmentation: model name and version, recorded in the SEG's algorithm identification."""

    def __init__(self, name: str, version: str, software: str) -> None:
        self.name, self.version, self.software = name, version, software


def _sources(files: Sequence[Path], labels: Volume, path: Path) -> tuple[list[Any], np.ndarray]:
    """The source datasets and, per dataset, the slice of ``labels`` it lies on."""
    import pydicom

    datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    if len(datasets) == 1 and int(datasets[0].get("NumberOfFrames", 1) or 1) > 1:
        return datasets, np.arange(labels.shape[0]) if labels.ndim == 3 else np.zeros(1, int)
    if labels.ndim == 2:
        return datasets, np.zeros(len(datasets), int)
    index = []
    for ds in datasets:
        world = np.array([float(v) for v in ds.ImagePositionPatient])[::-1]  # LPS -> array order
        index.append(labels.world_to_index(world))
    idx = np.array(index)
    k = np.rint(idx[:, 0]).astype(int)
    off_grid = np.abs(idx - np.rint(idx)).max(initial=0)
    if off_grid > 1e-2 or sorted(k.tolist()) != list(range(labels.shape[0])):
        raise InputImageError(
            path, "the label map is not on the source series' grid", "write the SEG from the series it was predicted on"
        )
    return datasets, k


def write_dicom_seg(
    labels: Volume,
    path: str | Path,
    *,
    source_files: Sequence[Path],
    label_names: Mapping[int, str],
    algorithm: SegAlgorithm,
) -> Path:
    """Write ``labels`` (on the grid of the series ``source_files``) as a BINARY DICOM SEG, atomically.

    Raises
    ------
    InputImageError
        highdicom missing, a label value without a name, or labels not on the source grid.
    """
    path = Path(path)
    hd = _highdicom(path)
    from pydicom.sr.codedict import codes

    values = [int(v) for v in np.unique(labels.array) if v != 0]
    unnamed = [v for v in values if v not in label_names]
    if unnamed:
        raise InputImageError(
            path, f"label value(s) {unnamed} have no name in the model", "DICOM SEG holds classes; drop --instances"
        )
    numbers = sorted(v for v in label_names if v != 0)
    if numbers != list(range(1, len(numbers) + 1)):
        raise InputImageError(path, f"class values {numbers} are not 1..N", "DICOM SEG numbers segments 1..N")
    datasets, slice_of = _sources(source_files, labels, path)
    _fix_slice_spacing(labels, datasets)
    array = labels.array if labels.ndim == 3 else labels.array[None]
    pixels = array[slice_of].astype(np.uint8) if len(datasets) > 1 else array.astype(np.uint8)
    ident = hd.AlgorithmIdentificationSequence(
        name=algorithm.name, version=algorithm.version, family=codes.cid7162.ArtificialIntelligence,
        source=algorithm.software,
    )  # fmt: skip
    segments = [
        hd.seg.SegmentDescription(
            segment_number=v,
            segment_label=label_names[v][:64],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=hd.sr.CodedConcept(
                value=_code_value(label_names[v]), scheme_designator="99VOXSEG", meaning=label_names[v][:64]
            ),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=ident,
        )
        for v in numbers
    ]
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        series_instance_uid=hd.UID(),
        series_number=int(datasets[0].get("SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="voxseg",
        manufacturer_model_name=algorithm.name[:64],
        software_versions=algorithm.software[:64],
        device_serial_number="0",
        series_description=f"voxseg {algorithm.name}"[:64],
        omit_empty_frames=False,
    )
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    log.info("wrote DICOM SEG %s (%d segments, %d frames)", path, len(segments), pixels.shape[0] * len(segments))
    return path


def _fix_slice_spacing(labels: Volume, datasets: list[Any]) -> None:
    """Set the in-memory copies' SpacingBetweenSlices to the grid's (highdicom copies it; a source
    tag may disagree with the slice positions, as in pydicom's CT_small.dcm)."""
    if labels.ndim == 3 and len(datasets) > 1:
        for ds in datasets:
            if "SpacingBetweenSlices" in ds:
                ds.SpacingBetweenSlices = f"{labels.spacing[0]:.6g}"


def _code_value(name: str) -> str:
    value = "".join(c if c.isalnum() else "_" for c in name.upper())
    return value[:16] or "LABEL"


def read_dicom_seg(path: str | Path) -> list[Volume]:
    """A DICOM SEG as one label map (segment numbers as values) on the grid its frames span."""
    path = Path(path)
    hd = _highdicom(path)
    try:
        seg = hd.seg.segread(path)
        vol = seg.get_volume(combine_segments=True, relabel=False, dtype=np.uint16)
    except (ValueError, RuntimeError, AttributeError, KeyError) as exc:
        raise InputImageError(path, f"cannot read DICOM SEG ({' '.join(str(exc).split())[:200]})") from None
    affine = np.asarray(vol.affine, dtype=np.float64)
    array = np.asarray(vol.array)
    columns = affine[:3, :3].copy()  # index (slice, row, column) -> LPS (x, y, z)
    if array.shape[0] > 1 and columns[:, 0] @ np.cross(columns[:, 2], columns[:, 1]) < 0:
        # slices ascending along the normal, as GDCM orders the source series: the same grid voxel for voxel
        affine[:3, 3] += columns[:, 0] * (array.shape[0] - 1)
        columns[:, 0] *= -1
        array = array[::-1]
    spacing = np.linalg.norm(columns, axis=0)
    image = sitk.GetImageFromArray(array.astype(np.uint16 if array.max(initial=0) > 255 else np.uint8))
    image.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    image.SetOrigin(tuple(float(v) for v in affine[:3, 3]))
    image.SetDirection(tuple((columns / spacing)[:, ::-1].ravel().tolist()))
    return [volume_from_sitk(image)]
