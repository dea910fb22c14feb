"""``plan.json``: what training and inference need to know about a dataset, as typed data.

A :class:`Plan` holds dataset-level facts (channels, labels, ignore label, normalization per
channel) and one :class:`ConfigurationPlan` per configuration (``"3d"``, ``"3d_lowres"``, ``"2d"``): target spacing,
patch size, batch size, network spec, mirror axes. It is written by ``voxseg plan`` and read by
training, inference and bundle export; a run is reproducible from it. No torch here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from voxseg.errors import ConfigError
from voxseg.io.safe_json import read_json
from voxseg.planning.network import NetworkSpec
from voxseg.planning.normalization import Normalization

__all__ = ["ConfigurationPlan", "Plan", "PLAN_SCHEMA_VERSION", "refuse_interactive"]

PLAN_SCHEMA_VERSION = 1


def _floats(values: Sequence[Any], what: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a list of numbers, got {values!r}") from None
    if not out or any(not v > 0 for v in out):
        raise ConfigError(f"{what} must be positive numbers, got {list(values)}")
    return out


def _ints(values: Sequence[Any], what: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a list of integers, got {values!r}") from None
    if not out or any(v < 1 for v in out):
        raise ConfigError(f"{what} must be positive integers, got {list(values)}")
    return out


@dataclass(frozen=True)
class ConfigurationPlan:
    """One configuration of a plan (``"3d"`` or ``"2d"``).

    Parameters
    ----------
    name
        ``"3d"``, ``"3d_lowres"`` or ``"2d"`` (other names allowed for user-made configurations).
    target_spacing
        Spacing to resample to, array order, one value per *network* axis: a ``2d``
        configuration of 3D data has 2 values and keeps each case's own spacing along axis 0.
    patch_size
        Training patch and sliding-window tile, one value per network axis.
    batch_size
        Patches per training step.
    network
        The network spec (``kwargs`` include ``spatial_dims``, ``in_channels``, ``out_channels``).
    mirror_axes
        Network axes used for mirror augmentation and mirror test-time augmentation.
    median_shape
        Median case shape after cropping and resampling (informative).
    fixed_shape
        For fixed-input models: the exact input shape; inference crops/pads to it and back.
    notes
        Why the planner chose what it chose (one sentence each: a low-resolution spacing, a
        network narrowed to the step budget, a batch cut for memory...), for people reading the plan.
    """

    name: str
    target_spacing: tuple[float, ...]
    patch_size: tuple[int, ...]
    batch_size: int
    network: NetworkSpec
    mirror_axes: tuple[int, ...] = ()
    median_shape: tuple[int, ...] = ()
    fixed_shape: tuple[int, ...] | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.notes, str) or not all(isinstance(n, str) for n in self.notes):
            raise ConfigError(f"configuration {self.name!r}: notes must be a list of strings, got {self.notes!r}")
        object.__setattr__(self, "notes", tuple(self.notes))
        object.__setattr__(self, "target_spacing", _floats(self.target_spacing, f"{self.name}.target_spacing"))
        object.__setattr__(self, "patch_size", _ints(self.patch_size, f"{self.name}.patch_size"))
        object.__setattr__(self, "network", NetworkSpec.from_json(self.network))
        object.__setattr__(self, "mirror_axes", tuple(int(a) for a in self.mirror_axes))
        object.__setattr__(self, "median_shape", tuple(int(v) for v in self.median_shape))
        if self.fixed_shape is not None:
            object.__setattr__(self, "fixed_shape", _ints(self.fixed_shape, f"{self.name}.fixed_shape"))
        nd = len(self.patch_size)
        if nd not in (2, 3):
            raise ConfigError(f"configuration {self.name!r}: patch_size must have 2 or 3 values, got {self.patch_size}")
        if len(self.target_spacing) != nd:
            raise ConfigError(
                f"configuration {self.name!r}: target_spacing {self.target_spacing} and patch_size "
                f"{self.patch_size} have different lengths"
            )
        if self.batch_size < 1:
            raise ConfigError(f"configuration {self.name!r}: batch_size must be >= 1")
        if any(not 0 <= a < nd for a in self.mirror_axes):
            raise ConfigError(f"configuration {self.name!r}: mirror_axes {self.mirror_axes} out of range for {nd}D")
        if "spatial_dims" in self.network.kwargs and self.network.spatial_dims != nd:
            raise ConfigError(
                f"configuration {self.name!r}: the network is {self.network.spatial_dims}D but the patch is {nd}D"
            )

    @property
    def spatial_dims(self) -> int:
        return len(self.patch_size)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target_spacing": list(self.target_spacing),
            "patch_size": list(self.patch_size),
            "batch_size": self.batch_size,
            "network": self.network.to_json(),
            "mirror_axes": list(self.mirror_axes),
            "median_shape": list(self.median_shape),
            "fixed_shape": None if self.fixed_shape is None else list(self.fixed_shape),
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConfigurationPlan:
        if not isinstance(data, Mapping):
            raise ConfigError(f"a configuration plan is a JSON object, got {type(data).__name__}")
        known = {"name", "target_spacing", "patch_size", "batch_size", "network", "mirror_axes", "median_shape"}
        known.update(("fixed_shape", "notes"))
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"configuration plan has unknown key(s) {', '.join(unknown)}")
        missing = sorted({"name", "target_spacing", "patch_size", "batch_size", "network"} - set(data))
        if missing:
            raise ConfigError(f"configuration plan lacks {', '.join(missing)}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> ConfigurationPlan:
        return replace(self, **changes)


@dataclass(frozen=True)
class Plan:
    """The whole ``plan.json``.

    Parameters
    ----------
    dataset_name
        From ``dataset.json``.
    channel_names
        Input channel index -> name (``"CT"``, ``"T2"``, ``"mask"``...), as in ``dataset.json``.
    labels
        Label name -> value, background (0) included, ignore label included when declared.
    normalization
        One :class:`Normalization` per input channel.
    configurations
        Configuration name -> :class:`ConfigurationPlan`.
    default_configuration
        The configuration ``train`` and ``predict`` use when none is named.
    data_ndim
        Spatial dimensions of the dataset's images (2 or 3).
    ignore_label
        Value of unannotated voxels (``labels["ignore"]``), or None.
    anisotropy_threshold
        Spacing ratio above which the low-resolution axis is resampled separately.
    training
        Overrides of :class:`voxseg.training.config.TrainConfig` fields chosen at plan time
        (``{"loss": {"name": "dice_focal", "lambda_other": 10}}``), applied by ``voxseg train``.
    interactive
        Prompt settings for interactive models (``{"prompt": "extreme_points", "encoding":
        "geodesic", ...}``), or None for automatic models.
    seed
        The seed used for planning, splits and (by default) training.
    budget
        The compute budget the plan was sized for (``"cpu"`` or ``"gpu"``, see
        :class:`voxseg.planning.PlannerDefaults`); training a ``"gpu"`` plan on a CPU should warn.
    instances
        The dataset's labels are instance ids (nuclei, cells): the network predicts background/
        interior/boundary (``labels``) and prediction ends with ``split_instances`` (one id per object).
    """

    dataset_name: str
    channel_names: Mapping[int, str]
    labels: Mapping[str, int]
    normalization: tuple[Normalization, ...]
    configurations: Mapping[str, ConfigurationPlan]
    default_configuration: str
    data_ndim: int = 3
    ignore_label: int | None = None
    anisotropy_threshold: float = 3.0
    training: Mapping[str, Any] = field(default_factory=dict)
    interactive: Mapping[str, Any] | None = None
    seed: int = 0
    budget: str = "cpu"
    instances: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_names", {int(k): str(v) for k, v in dict(self.channel_names).items()})
        object.__setattr__(self, "labels", {str(k): int(v) for k, v in dict(self.labels).items()})
        norms = tuple(n if isinstance(n, Normalization) else Normalization.from_json(n) for n in self.normalization)
        object.__setattr__(self, "normalization", norms)
        confs = {
            str(k): v if isinstance(v, ConfigurationPlan) else ConfigurationPlan.from_json(v)
            for k, v in dict(self.configurations).items()
        }
        object.__setattr__(self, "configurations", confs)
        if len(norms) != len(self.channel_names):
            raise ConfigError(f"{len(norms)} normalization schemes for {len(self.channel_names)} channels")
        if not confs:
            raise ConfigError("a plan needs at least one configuration")
        if self.default_configuration not in confs:
            raise ConfigError(
                f"default configuration {self.default_configuration!r} is not one of {', '.join(sorted(confs))}"
            )
        if self.data_ndim not in (2, 3):
            raise ConfigError(f"data_ndim must be 2 or 3, got {self.data_ndim}")

    # ---- derived facts -------------------------------------------------------------------
    @property
    def num_channels(self) -> int:
        """Image channels read from disk (prompt channels of interactive models excluded)."""
        return len(self.channel_names)

    @property
    def class_values(self) -> tuple[int, ...]:
        """Label values the network predicts, background first (the ignore label excluded)."""
        return tuple(sorted(v for v in set(self.labels.values()) if v != self.ignore_label))

    @property
    def num_classes(self) -> int:
        """Output channels of the network (background included)."""
        return len(self.class_values)

    @property
    def label_names(self) -> dict[int, str]:
        return {v: k for k, v in self.labels.items() if v != self.ignore_label}

    def configuration(self, name: str | None = None) -> ConfigurationPlan:
        """The named configuration (default: :attr:`default_configuration`), with a helpful error."""
        name = name or self.default_configuration
        try:
            return self.configurations[name]
        except KeyError:
            raise ConfigError(
                f"the plan has no configuration {name!r} (it has {', '.join(sorted(self.configurations))})"
            ) from None

    # ---- JSON ----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": PLAN_SCHEMA_VERSION,
            "dataset_name": self.dataset_name,
            "channel_names": {str(k): v for k, v in self.channel_names.items()},
            "labels": dict(self.labels),
            "ignore_label": self.ignore_label,
            "data_ndim": self.data_ndim,
            "normalization": [n.to_json() for n in self.normalization],
            "anisotropy_threshold": self.anisotropy_threshold,
            "default_configuration": self.default_configuration,
            "configurations": {k: c.to_json() for k, c in self.configurations.items()},
            "training": json.loads(json.dumps(dict(self.training))),
            "interactive": None if self.interactive is None else json.loads(json.dumps(dict(self.interactive))),
            "seed": self.seed,
            "budget": self.budget,
            **({"instances": True} if self.instances else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        if not isinstance(data, Mapping):
            raise ConfigError(f"a plan is a JSON object, got {type(data).__name__}")
        data = dict(data)
        version = data.pop("schema_version", None)
        if version != PLAN_SCHEMA_VERSION:
            raise ConfigError(
                f"plan schema_version {version!r} is not supported (this voxseg reads {PLAN_SCHEMA_VERSION}); "
                "re-run `voxseg plan`"
            )
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"invalid plan ({exc})") from None

    def save(self, path: str | Path) -> Path:
        from voxseg.io import write_json_atomic

        return write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        path = Path(path)
        try:
            data = read_json(path)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no plan here (run `voxseg plan DATA -o WORK` first)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: unreadable plan ({exc}); re-run `voxseg plan`") from None
        try:
            return cls.from_json(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def replace(self, **changes: Any) -> Plan:
        return replace(self, **changes)


def refuse_interactive(plan: Plan, model: str) -> None:
    """Raise ConfigError for an interactive plan asked for an automatic prediction (no points)."""
    if plan.interactive:
        raise ConfigError(
            f"model {model} is interactive: it segments one object from six extreme points; give them with "
            "`voxseg predict --points points.json` (one image as -i) or use segment_from_points"
        )
