"""The nnU-Net v2 raw dataset layout, read and written.

::

    DatasetXXX_Name/
      dataset.json          {"channel_names": {"0": "CT"}, "labels": {"background": 0, "tumor": 1},
                             "numTraining": 24, "file_ending": ".nii.gz", ...}
      imagesTr/CASE_0000.nii.gz   (one file per channel: _0000, _0001, ...)
      labelsTr/CASE.nii.gz
      imagesTs/CASE_0000.nii.gz   (optional)
      labelsTs/CASE.nii.gz        (optional)

An ``"ignore"`` entry in ``labels`` (the highest value, as in nnU-Net v2) marks voxels that
carry no annotation (sparse annotation): they count in no loss term.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxseg.dataset.instances import check_instance_labels, read_label, target_labels
from voxseg.dataset.problem import CHANNEL_RE
from voxseg.errors import DatasetFormatError, UnknownNameError
from voxseg.io import Volume, write_image, write_json_atomic
from voxseg.io.safe_json import read_json

__all__ = ["DatasetSpec", "Case", "Dataset", "DatasetWriter", "read_dataset", "case_files", "CHANNEL_RE"]

_KNOWN_KEYS = {"name", "description", "channel_names", "labels", "numTraining", "file_ending"}


@dataclass(frozen=True)
class DatasetSpec:
    """The contents of ``dataset.json``.

    Parameters
    ----------
    name
        Dataset name (``DatasetXXX_Name`` folder names are conventional, not required).
    channel_names
        Channel index -> modality name ("CT", "MRI", "PET", "SWI", "mask", ...). "CT" selects CT
        normalization at planning time; a channel named "mask" is a binary mask input.
    labels
        Label name -> integer value; must contain ``"background": 0``. An optional ``"ignore"``
        entry (the highest value) marks unannotated voxels.
    file_ending
        Suffix of every image and label file, e.g. ``".nii.gz"``.
    """

    name: str
    channel_names: dict[int, str]
    labels: dict[str, int]
    file_ending: str = ".nii.gz"
    num_training: int = 0
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def ignore_label(self) -> int | None:
        return self.labels.get("ignore")

    @property
    def label_values(self) -> set[int]:
        return set(self.labels.values())

    @property
    def instances(self) -> bool:
        """``"instances": true`` in dataset.json: label files hold one id per object (see
        :mod:`voxseg.dataset.instances`)."""
        return self.extra.get("instances") is True

    @property
    def target_labels(self) -> dict[str, int]:
        """The classes a network trains on: :attr:`labels`, or background/interior/boundary for instances."""
        if not self.instances:
            return dict(self.labels)
        return target_labels(self.labels)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "channel_names": {str(k): v for k, v in sorted(self.channel_names.items())},
            "labels": dict(sorted(self.labels.items(), key=lambda kv: kv[1])),
            "numTraining": self.num_training,
            "file_ending": self.file_ending,
        }
        data.update(self.extra)
        return data

    @classmethod
    def from_json(cls, data: Any, path: Path | str = "dataset.json") -> DatasetSpec:
        """Parse ``dataset.json`` contents; raise DatasetFormatError naming the bad key."""
        if not isinstance(data, dict):
            raise DatasetFormatError(f"{path}: expected a JSON object at the top level")
        missing = [k for k in ("channel_names", "labels", "file_ending") if k not in data]
        if missing:
            raise DatasetFormatError(
                f"{path}: missing key(s) {', '.join(missing)} (nnU-Net v2 dataset.json needs channel_names, "
                "labels, numTraining, file_ending; MSD tasks can be imported with 'voxseg dataset convert')"
            )
        try:
            channels = {int(k): str(v) for k, v in dict(data["channel_names"]).items()}
            labels = {str(k): _label_value(v) for k, v in dict(data["labels"]).items()}
            num_training = int(data.get("numTraining", 0))
        except (TypeError, ValueError) as exc:
            raise DatasetFormatError(f"{path}: invalid channel_names, labels or numTraining ({exc})") from None
        ending = str(data["file_ending"])
        if not ending.startswith("."):
            raise DatasetFormatError(f"{path}: file_ending {ending!r} must start with a dot, e.g. '.nii.gz'")
        extra = {k: v for k, v in data.items() if k not in _KNOWN_KEYS}
        if "instances" in extra:
            if not isinstance(extra["instances"], bool):
                raise DatasetFormatError(f'{path}: "instances" must be true or false, got {extra["instances"]!r}')
            if extra["instances"]:
                check_instance_labels(labels, path)
        return cls(
            str(data.get("name", Path(path).parent.name)),
            channels,
            labels,
            ending,
            num_training,
            str(data.get("description", "")),
            extra,
        )


def _label_value(v: Any) -> int:
    if isinstance(v, (list, tuple)):  # nnU-Net region-based labels: not supported yet
        raise ValueError(f"region label {v!r} (region-based training is not supported)")
    if isinstance(v, bool) or int(v) != v:
        raise ValueError(f"label value {v!r} is not an integer")
    return int(v)


@dataclass(frozen=True)
class Case:
    """One case: its channel files (in channel order) and its label file (or None)."""

    case_id: str
    images: tuple[Path, ...]
    label: Path | None = None


def case_files(images_dir: Path, file_ending: str) -> dict[str, dict[int, Path]]:
    """Group ``CASE_XXXX<ending>`` files in ``images_dir`` by case: {case: {channel: path}}."""
    out: dict[str, dict[int, Path]] = {}
    if not images_dir.is_dir():
        return out
    for f in sorted(images_dir.iterdir()):
        if f.name.startswith(".") or not f.name.endswith(file_ending):
            continue
        m = CHANNEL_RE.match(f.name[: -len(file_ending)])
        if m:
            out.setdefault(m["case"], {})[int(m["channel"])] = f
    return out


@dataclass
class Dataset:
    """A dataset folder in nnU-Net v2 layout (see module docstring)."""

    root: Path
    spec: DatasetSpec
    training: list[Case]
    test: list[Case]

    @property
    def case_ids(self) -> list[str]:
        return [c.case_id for c in self.training]

    def read_label(self, case: Case) -> Volume | None:
        """``case``'s label as training sees it: as stored, or the border target of instance ids."""
        return None if case.label is None else read_label(case.label, instances=self.spec.instances)

    def case(self, case_id: str) -> Case:
        for c in (*self.training, *self.test):
            if c.case_id == case_id:
                return c
        close = difflib.get_close_matches(case_id, [c.case_id for c in (*self.training, *self.test)], n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UnknownNameError(f"{self.root}: no case {case_id!r}{hint}")


def _collect(root: Path, spec: DatasetSpec, images: str, labels: str) -> list[Case]:
    groups = case_files(root / images, spec.file_ending)
    out = []
    for case_id, channels in sorted(groups.items()):
        files = tuple(channels[k] for k in sorted(channels))
        label = root / labels / f"{case_id}{spec.file_ending}"
        out.append(Case(case_id, files, label if label.is_file() else None))
    return out


def read_dataset(path: str | Path) -> Dataset:
    """Open a dataset folder. Layout problems inside cases are left to :func:`verify_dataset`.

    Raises
    ------
    DatasetFormatError
        If the folder, ``dataset.json`` or ``imagesTr/`` is missing or ``dataset.json`` is invalid.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: dataset folder not found")
    dj = root / "dataset.json"
    if not dj.is_file():
        hint = (
            " (looks like an MSD task: import it with 'voxseg dataset convert')" if (root / "imagesTr").is_dir() else ""
        )
        if not hint:
            from voxseg.dataset.pairing import import_hint  # imports this module

            command = import_hint(root)
            hint = f" (it looks like images and masks: make a dataset with '{command}')" if command else ""
        raise DatasetFormatError(f"{dj}: missing; a dataset folder needs dataset.json and imagesTr/{hint}")
    try:
        data = read_json(dj, error=DatasetFormatError, fix="see docs/dataset.md for its format")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"{dj}: not valid JSON ({exc})") from None
    spec = DatasetSpec.from_json(data, dj)
    if not (root / "imagesTr").is_dir():
        raise DatasetFormatError(
            f"{root / 'imagesTr'}: missing; training images go in imagesTr/CASE_0000{spec.file_ending}"
        )
    return Dataset(
        root, spec, _collect(root, spec, "imagesTr", "labelsTr"), _collect(root, spec, "imagesTs", "labelsTs")
    )


class DatasetWriter:
    """Write a dataset in nnU-Net v2 layout, case by case; ``dataset.json`` is written on close.

    >>> with DatasetWriter(out, spec) as w:            # doctest: +SKIP
    ...     w.add_case("lung_000", [ct], label)
    """

    def __init__(self, root: str | Path, spec: DatasetSpec):
        self.root = Path(root)
        self.spec = spec
        self.num_training = 0
        self.root.mkdir(parents=True, exist_ok=True)

    def image_path(self, case_id: str, channel: int, *, test: bool = False) -> Path:
        return self.root / ("imagesTs" if test else "imagesTr") / f"{case_id}_{channel:04d}{self.spec.file_ending}"

    def label_path(self, case_id: str, *, test: bool = False) -> Path:
        return self.root / ("labelsTs" if test else "labelsTr") / f"{case_id}{self.spec.file_ending}"

    def add_case(self, case_id: str, images: Sequence[Volume], label: Volume | None, *, test: bool = False) -> None:
        """Write one case's channel images and label (each atomically)."""
        if len(images) != self.spec.num_channels:
            raise ValueError(f"case {case_id}: {len(images)} images for {self.spec.num_channels} channels")
        for k, img in enumerate(images):
            write_image(img, self.image_path(case_id, k, test=test))
        if label is not None:
            write_image(label, self.label_path(case_id, test=test))
        if not test:
            self.num_training += 1

    def close(self) -> Path:
        """Write ``dataset.json`` (numTraining counted from the cases added) and return its path."""
        counted = len(case_files(self.root / "imagesTr", self.spec.file_ending))
        spec = DatasetSpec(
            self.spec.name,
            self.spec.channel_names,
            self.spec.labels,
            self.spec.file_ending,
            max(counted, self.num_training),
            self.spec.description,
            self.spec.extra,
        )
        return write_json_atomic(self.root / "dataset.json", spec.to_json())

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
