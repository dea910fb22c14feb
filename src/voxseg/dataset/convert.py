"""Import other dataset layouts into nnU-Net v2 layout.

- Medical Segmentation Decathlon ``TaskXX_Name`` (also nnU-Net v1 tasks): ``dataset.json`` with
  ``modality``, ``labels`` (value -> name) and ``training`` pairs; 4D multi-channel NIfTI images
  are split into ``_0000``, ``_0001``, ... channel files.
- An nnU-Net v2 dataset, rewritten with another ``file_ending`` (e.g. TIFF to NIfTI).

The source is only read; the output folder is written case by case (each file atomically) and
``dataset.json`` last, so an interrupted conversion is visible as such and can be rerun.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voxseg.dataset.layout import DatasetSpec, DatasetWriter, read_dataset
from voxseg.errors import DatasetFormatError
from voxseg.io import read_channels, read_image
from voxseg.io.safe_json import read_json

__all__ = ["convert_dataset", "import_msd", "detect_layout"]

Progress = Callable[[int, int], None]


def detect_layout(path: Path) -> str:
    """``"msd"`` or ``"nnunetv2"`` from the source's dataset.json."""
    dj = path / "dataset.json"
    if not dj.is_file():
        raise DatasetFormatError(f"{dj}: missing; cannot tell the dataset layout")
    try:
        data = read_json(dj, error=DatasetFormatError, fix="see docs/dataset.md for its format")
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{dj}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and "modality" in data and "training" in data:
        return "msd"
    if isinstance(data, dict) and "channel_names" in data:
        return "nnunetv2"
    raise DatasetFormatError(
        f"{dj}: neither an MSD/nnU-Net v1 task (modality, training) nor nnU-Net v2 (channel_names)"
    )


def _msd_path(root: Path, entry: str) -> Path:
    return (root / entry).resolve() if not Path(entry).is_absolute() else Path(entry)


def _case_id(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def import_msd(
    src: str | Path, out: str | Path, *, file_ending: str = ".nii.gz", progress: Progress | None = None
) -> Path:
    """Convert an MSD task folder to an nnU-Net v2 dataset in ``out``."""
    src, out = Path(src), Path(out)
    data: dict[str, Any] = read_json(src / "dataset.json", error=DatasetFormatError, fix="see docs/dataset.md")
    try:
        channels = {int(k): str(v) for k, v in data["modality"].items()}
        labels = {str(name): int(value) for value, name in data["labels"].items()}
        training = [(e["image"], e.get("label")) for e in data["training"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DatasetFormatError(f"{src / 'dataset.json'}: invalid MSD task description ({exc})") from None
    if labels.get("background", 0) == 0 and 0 in labels.values():
        labels = {("background" if v == 0 else k): v for k, v in labels.items()}
    test = [e if isinstance(e, str) else e.get("image") for e in data.get("test", [])]
    spec = DatasetSpec(
        str(data.get("name", src.name)),
        channels,
        labels,
        file_ending,
        description=str(data.get("description", "")),
        extra={"imported_from": {"layout": "msd", "source": str(src)}},
    )
    total = len(training) + len(test)
    with DatasetWriter(out, spec) as writer:
        for i, (image, label) in enumerate(training):
            img_path = _msd_path(src, image)
            vols = read_channels(img_path)
            if len(vols) != len(channels):
                raise DatasetFormatError(f"{img_path}: {len(vols)} channels but modality declares {len(channels)}")
            lab = read_image(_msd_path(src, label)) if label else None
            writer.add_case(_case_id(img_path), vols, lab)
            if progress:
                progress(i + 1, total)
        for j, image in enumerate(test):
            img_path = _msd_path(src, image)
            writer.add_case(_case_id(img_path), read_channels(img_path), None, test=True)
            if progress:
                progress(len(training) + j + 1, total)
    return out


def _copy_nnunet(src: Path, out: Path, file_ending: str, progress: Progress | None) -> Path:
    ds = read_dataset(src)
    s = ds.spec
    spec = DatasetSpec(s.name, s.channel_names, s.labels, file_ending, s.num_training, s.description, s.extra)
    total = len(ds.training) + len(ds.test)
    with DatasetWriter(out, spec) as writer:
        for i, case in enumerate([*ds.training, *ds.test]):
            test = i >= len(ds.training)
            label = read_image(case.label) if case.label is not None else None
            writer.add_case(case.case_id, [read_image(p) for p in case.images], label, test=test)
            if progress:
                progress(i + 1, total)
    return out


def convert_dataset(
    src: str | Path, out: str | Path, *, file_ending: str = ".nii.gz", progress: Progress | None = None
) -> Path:
    """Convert an MSD task or an nnU-Net v2 dataset into an nnU-Net v2 dataset in ``out``.

    Raises
    ------
    DatasetFormatError
        Unknown layout, or ``out`` is ``src`` or already holds a dataset.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise DatasetFormatError(f"{src}: source dataset folder not found")
    from voxseg.io.guard import same_file

    if same_file(out, src):
        raise DatasetFormatError(f"{out}: output must differ from the source (inputs are never modified)")
    if (out / "dataset.json").exists():
        raise DatasetFormatError(f"{out}: already holds a dataset (choose another output folder or delete it)")
    if not file_ending.startswith("."):
        file_ending = "." + file_ending
    if detect_layout(src) == "msd":
        return import_msd(src, out, file_ending=file_ending, progress=progress)
    return _copy_nnunet(src, out, file_ending, progress)
