"""``fingerprint.json`` as typed data: what was measured on a dataset (no decisions here)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from voxseg.errors import ConfigError
from voxseg.io.safe_json import read_json

__all__ = ["ChannelStats", "CaseFingerprint", "Fingerprint", "FINGERPRINT_SCHEMA_VERSION", "modality_of"]

FINGERPRINT_SCHEMA_VERSION = 1

Modality = Literal["ct", "mask", "other"]


def modality_of(channel_name: str) -> Modality:
    """``"ct"`` for a channel named CT (any case), ``"mask"`` for one named mask, else ``"other"``."""
    name = str(channel_name).strip().lower()
    if name == "ct":
        return "ct"
    if name == "mask":
        return "mask"
    return "other"


@dataclass(frozen=True)
class ChannelStats:
    """Intensity statistics of one channel over sampled voxels (foreground of the label).

    ``count`` is the number of sampled voxels the statistics come from (0: nothing sampled, the
    other fields are then 0).
    """

    mean: float = 0.0
    std: float = 0.0
    min: float = 0.0
    max: float = 0.0
    median: float = 0.0
    percentile_00_5: float = 0.0
    percentile_99_5: float = 0.0
    count: int = 0

    @classmethod
    def of(cls, values: np.ndarray) -> ChannelStats:
        """Statistics of a 1D array of finite values (float64 accumulators)."""
        values = np.asarray(values).ravel()
        if values.size == 0:
            return cls()
        lo, med, hi = np.percentile(values, [0.5, 50.0, 99.5])
        return cls(
            mean=float(np.mean(values, dtype=np.float64)),
            std=float(np.std(values, dtype=np.float64)),
            min=float(values.min()),
            max=float(values.max()),
            median=float(med),
            percentile_00_5=float(lo),
            percentile_99_5=float(hi),
            count=int(values.size),
        )

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChannelStats:
        return cls(**{k: (int(v) if k == "count" else float(v)) for k, v in dict(data).items()})


@dataclass(frozen=True)
class CaseFingerprint:
    """What was measured on one case (spatial tuples in array order).

    Attributes
    ----------
    case_id
        The case's id in the dataset.
    spacing, shape
        The image's spacing (mm) and shape.
    shape_after_crop
        Shape of the crop-to-nonzero box (as :func:`voxseg.preprocessing.crop_to_nonzero` does it).
    class_voxels
        Label value -> voxel count (label values present only; the ignore label included).
    intensity
        Per channel: statistics of the sampled foreground voxels of this case.
    """

    case_id: str
    spacing: tuple[float, ...]
    shape: tuple[int, ...]
    shape_after_crop: tuple[int, ...]
    class_voxels: Mapping[int, int] = field(default_factory=dict)
    intensity: tuple[ChannelStats, ...] = ()

    @property
    def crop_fraction(self) -> float:
        """Voxels kept by crop-to-nonzero, as a fraction of the image (1: nothing cropped)."""
        return float(np.prod(self.shape_after_crop, dtype=np.float64) / np.prod(self.shape, dtype=np.float64))

    def to_json(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "spacing": list(self.spacing),
            "shape": list(self.shape),
            "shape_after_crop": list(self.shape_after_crop),
            "class_voxels": {str(k): int(v) for k, v in sorted(self.class_voxels.items())},
            "intensity": [s.to_json() for s in self.intensity],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CaseFingerprint:
        return cls(
            case_id=str(data["case_id"]),
            spacing=tuple(float(v) for v in data["spacing"]),
            shape=tuple(int(v) for v in data["shape"]),
            shape_after_crop=tuple(int(v) for v in data["shape_after_crop"]),
            class_voxels={int(k): int(v) for k, v in dict(data.get("class_voxels", {})).items()},
            intensity=tuple(ChannelStats.from_json(s) for s in data.get("intensity", [])),
        )


@dataclass(frozen=True)
class Fingerprint:
    """The whole ``fingerprint.json``.

    Attributes
    ----------
    dataset_name, channel_names, labels
        From ``dataset.json`` (channel index -> name, label name -> value).
    modalities
        Per channel: ``"ct"``, ``"mask"`` or ``"other"`` (from the channel names, see :func:`modality_of`).
    cases
        One :class:`CaseFingerprint` per training case, sorted by case id.
    intensity
        Per channel: statistics over the foreground voxels sampled from all cases together
        (CT normalization uses them). When no case has foreground, the nonzero region is sampled.
    intensity_source
        ``"foreground"`` or ``"nonzero"`` (the fallback above).
    instances
        The dataset's labels are instance ids, measured (and trained) as background/interior/
        boundary classes (:mod:`voxseg.dataset.instances`); ``labels`` are those classes.
    mirror_swap
        Axes whose flip turns one class into another (mirror pairs such as left/right), with the
        median fraction of foreground voxels it changes (:mod:`voxseg.fingerprint.symmetry`); only
        axes over the limit. The planner does not mirror them. Written only when not empty.
    """

    dataset_name: str
    channel_names: Mapping[int, str]
    labels: Mapping[str, int]
    modalities: tuple[Modality, ...]
    cases: tuple[CaseFingerprint, ...]
    intensity: tuple[ChannelStats, ...]
    intensity_source: str = "foreground"
    instances: bool = False
    mirror_swap: Mapping[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_names", {int(k): str(v) for k, v in dict(self.channel_names).items()})
        object.__setattr__(self, "labels", {str(k): int(v) for k, v in dict(self.labels).items()})
        object.__setattr__(self, "mirror_swap", {int(a): float(v) for a, v in dict(self.mirror_swap).items()})
        object.__setattr__(self, "modalities", tuple(self.modalities))
        object.__setattr__(self, "cases", tuple(self.cases))
        object.__setattr__(self, "intensity", tuple(self.intensity))
        if not self.cases:
            raise ConfigError(f"fingerprint of {self.dataset_name!r} has no cases")
        if len({len(c.shape) for c in self.cases}) != 1:
            raise ConfigError(f"fingerprint of {self.dataset_name!r} mixes 2D and 3D cases")

    # ---- derived facts -------------------------------------------------------------------
    @property
    def data_ndim(self) -> int:
        """Spatial dimensions of the images (2 or 3)."""
        return len(self.cases[0].shape)

    @property
    def ignore_label(self) -> int | None:
        return self.labels.get("ignore")

    @property
    def spacings(self) -> np.ndarray:
        """``(cases, ndim)`` float64 array of the case spacings."""
        return np.array([c.spacing for c in self.cases], dtype=np.float64)

    @property
    def shapes_after_crop(self) -> np.ndarray:
        """``(cases, ndim)`` float64 array of the shapes after crop-to-nonzero."""
        return np.array([c.shape_after_crop for c in self.cases], dtype=np.float64)

    @property
    def median_crop_fraction(self) -> float:
        """Median over cases of :attr:`CaseFingerprint.crop_fraction`."""
        return float(np.median([c.crop_fraction for c in self.cases]))

    @property
    def total_voxels_after_crop(self) -> float:
        return float(np.prod(self.shapes_after_crop, axis=1).sum())

    def class_voxels(self) -> dict[int, int]:
        """Voxels per label value over the whole dataset."""
        out: dict[int, int] = {}
        for c in self.cases:
            for k, v in c.class_voxels.items():
                out[k] = out.get(k, 0) + v
        return dict(sorted(out.items()))

    # ---- JSON ----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": FINGERPRINT_SCHEMA_VERSION,
            "dataset_name": self.dataset_name,
            "channel_names": {str(k): v for k, v in sorted(self.channel_names.items())},
            "labels": dict(self.labels),
            "modalities": list(self.modalities),
            "intensity": [s.to_json() for s in self.intensity],
            "intensity_source": self.intensity_source,
            "cases": [c.to_json() for c in self.cases],
            **({"instances": True} if self.instances else {}),
            **({"mirror_swap": {str(a): v for a, v in sorted(self.mirror_swap.items())}} if self.mirror_swap else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fingerprint:
        if not isinstance(data, Mapping):
            raise ConfigError(f"a fingerprint is a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version != FINGERPRINT_SCHEMA_VERSION:
            raise ConfigError(
                f"fingerprint schema_version {version!r} is not supported (this voxseg reads "
                f"{FINGERPRINT_SCHEMA_VERSION}); re-run `voxseg plan`"
            )
        try:
            return cls(
                dataset_name=str(data["dataset_name"]),
                channel_names=data["channel_names"],
                labels=data["labels"],
                modalities=tuple(data["modalities"]),
                cases=tuple(CaseFingerprint.from_json(c) for c in data["cases"]),
                intensity=tuple(ChannelStats.from_json(s) for s in data["intensity"]),
                intensity_source=str(data.get("intensity_source", "foreground")),
                instances=data.get("instances") is True,
                mirror_swap={int(a): float(v) for a, v in dict(data.get("mirror_swap") or {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid fingerprint ({type(exc).__name__}: {exc})") from None

    def save(self, path: str | Path) -> Path:
        from voxseg.io import write_json_atomic

        return write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Fingerprint:
        path = Path(path)
        try:
            data = read_json(path)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no fingerprint here (run `voxseg plan DATA -o WORK`)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: unreadable fingerprint ({exc}); re-run `voxseg plan`") from None
        try:
            return cls.from_json(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
