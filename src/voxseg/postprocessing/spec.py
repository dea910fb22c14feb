"""Postprocessing as data: a :class:`PostprocessingSpec` of per-class steps, saved as JSON.

.. code-block:: json

    {
      "schema_version": 1,
      "classes": {"1": [{"op": "keep_largest"}, {"op": "fill_holes"}],
                  "2": [{"op": "remove_small", "min_size": 20}]},
      "final": [{"op": "instances", "min_size": 150}]
    }

``classes`` maps a label value to steps that touch that class only; classes run in ascending
order, their steps in list order. ``final`` steps run afterwards on every foreground class; an
``instances`` step may only be the last of them (it turns the label map into instance ids).
Ops live in the registry :data:`OPS`; a new op is one ``OPS.register`` call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.errors import ConfigError
from voxseg.io.atomic import write_json_atomic
from voxseg.io.safe_json import read_json
from voxseg.io.volume import Volume
from voxseg.postprocessing._common import as_array, resolve_spacing, rewrap
from voxseg.postprocessing.components import fill_holes, keep_largest, remove_small_objects
from voxseg.postprocessing.instances import instances
from voxseg.postprocessing.touching import BOUNDARY, INTERIOR, split_instances
from voxseg.registry import Registry

__all__ = ["Op", "OPS", "Step", "PostprocessingSpec", "apply_postprocessing", "for_plan", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Op:
    """A postprocessing operation: ``fn(labels, classes=..., spacing=..., **params) -> labels``.

    ``params`` maps each allowed parameter to its default; ``check`` validates a parameter dict
    (raise ConfigError); ``final_only`` ops may only appear in a spec's ``final`` list, last.
    """

    name: str
    fn: Callable[..., np.ndarray]
    params: Mapping[str, Any] = field(default_factory=dict)
    check: Callable[[Mapping[str, Any]], None] | None = None
    final_only: bool = False
    description: str = ""


OPS: Registry[Op] = Registry("postprocessing op")


def _check_connectivity(params: Mapping[str, Any]) -> None:
    if params.get("connectivity", 26) not in (4, 6, 8, 18, 26):
        raise ConfigError(f"connectivity must be one of 4, 6, 8, 18, 26, got {params['connectivity']!r}")


def _check_size(params: Mapping[str, Any], *, exactly_one: bool) -> None:
    _check_connectivity(params)
    size, vol = params.get("min_size"), params.get("min_volume")
    if exactly_one and (size is None) == (vol is None):
        raise ConfigError("remove_small needs exactly one of min_size (voxels) or min_volume (mm³)")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ConfigError(f"min_size must be an integer >= 0, got {size!r}")
    if vol is not None and (isinstance(vol, bool) or not isinstance(vol, (int, float)) or not vol >= 0):
        raise ConfigError(f"min_volume must be a number >= 0 (mm³), got {vol!r}")


def _keep_largest(arr, *, classes, spacing, connectivity=26):
    return keep_largest(arr, classes=classes, connectivity=connectivity)


def _remove_small(arr, *, classes, spacing, min_size=None, min_volume=None, connectivity=26):
    return remove_small_objects(
        arr, min_size=min_size, min_volume=min_volume, spacing=spacing, connectivity=connectivity, classes=classes
    )


def _fill_holes(arr, *, classes, spacing):
    return fill_holes(arr, classes=classes)


def _split_instances(arr, *, classes, spacing, interior=INTERIOR, boundary=BOUNDARY, min_size=0, connectivity=26):
    return split_instances(arr, interior=interior, boundary=boundary, min_size=min_size, connectivity=connectivity)


def _instances(arr, *, classes, spacing, min_size=0, min_volume=None, connectivity=26):
    return instances(arr, min_size=min_size, min_volume=min_volume, spacing=spacing, connectivity=connectivity)


OPS.register(
    "keep_largest",
    Op(
        "keep_largest",
        _keep_largest,
        {"connectivity": 26},
        _check_connectivity,
        description="keep the largest connected component",
    ),
)
OPS.register(
    "remove_small",
    Op(
        "remove_small",
        _remove_small,
        {"min_size": None, "min_volume": None, "connectivity": 26},
        lambda p: _check_size(p, exactly_one=True),
        description="remove components under min_size voxels or min_volume mm³",
    ),
)
OPS.register("fill_holes", Op("fill_holes", _fill_holes, {}, description="fill enclosed background"))
OPS.register(
    "split_instances",
    Op(
        "split_instances",
        _split_instances,
        {"interior": INTERIOR, "boundary": BOUNDARY, "min_size": 0, "connectivity": 26},
        lambda p: _check_size(p, exactly_one=False),
        final_only=True,
        description="instances from interior/boundary classes: each interior a seed, boundaries to the nearest",
    ),
)
OPS.register(
    "instances",
    Op(
        "instances",
        _instances,
        {"min_size": 0, "min_volume": None, "connectivity": 26},
        lambda p: _check_size(p, exactly_one=False),
        final_only=True,
        description="label connected foreground objects 1..N by size",
    ),
)


@dataclass(frozen=True)
class Step:
    """One op with its parameters; JSON form ``{"op": name, **params}``."""

    op: str
    params: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        params = {k: v.item() if isinstance(v, np.generic) else v for k, v in dict(self.params).items()}
        op = OPS.get(self.op)  # unknown names raise with "did you mean"
        unknown = sorted(set(params) - set(op.params))
        if unknown:
            allowed = ", ".join(op.params) or "no parameters"
            raise ConfigError(f"postprocessing op {self.op!r} takes {allowed}; got {', '.join(unknown)}")
        if op.check is not None:
            op.check(params)
        object.__setattr__(self, "params", tuple(sorted(params.items())))

    @classmethod
    def of(cls, op: str, **params: Any) -> Step:
        """``Step.of("remove_small", min_size=20)``."""
        return cls(op, tuple(params.items()))

    @classmethod
    def from_json(cls, data: Any) -> Step:
        if isinstance(data, Step):
            return data
        if isinstance(data, str):
            return cls(data)
        if not isinstance(data, Mapping) or "op" not in data:
            raise ConfigError(f"a postprocessing step is an object with an 'op' key, got {data!r}")
        return cls(str(data["op"]), tuple((k, v) for k, v in data.items() if k != "op"))

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, **dict(self.params)}

    def apply(self, labels: np.ndarray, *, classes: Sequence[int] | None, spacing) -> np.ndarray:
        return OPS.get(self.op).fn(labels, classes=classes, spacing=spacing, **dict(self.params))


def _steps(value: Any, where: str) -> tuple[Step, ...]:
    if isinstance(value, (str, Mapping, Step)) or not isinstance(value, Sequence):
        raise ConfigError(f"{where} must be a list of steps, got {value!r}")
    return tuple(Step.from_json(s) for s in value)


def _label_key(key: Any) -> int:
    try:
        value = int(key)
    except (TypeError, ValueError):
        raise ConfigError(f"postprocessing classes are keyed by label value, got {key!r}") from None
    if value <= 0 or str(value) != str(key).strip():
        raise ConfigError(f"postprocessing class keys must be foreground label values (> 0), got {key!r}")
    return value


@dataclass(frozen=True)
class PostprocessingSpec:
    """Per-class postprocessing steps plus final steps (see the module docstring).

    ``PostprocessingSpec()`` is the identity. Build one from Python with
    ``PostprocessingSpec(classes={1: [Step.of("keep_largest")]}, final=[Step.of("instances", min_size=150)])``
    or from JSON with :meth:`from_json` / :meth:`load`.
    """

    classes: tuple[tuple[int, tuple[Step, ...]], ...] = ()
    final: tuple[Step, ...] = ()
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        items = self.classes.items() if isinstance(self.classes, Mapping) else self.classes
        classes = {}
        for key, steps in items:
            label = _label_key(key)
            if label in classes:
                raise ConfigError(f"class {label} is listed twice in the postprocessing spec")
            classes[label] = _steps(steps, f"steps of class {label}")
        final = _steps(self.final, "final")
        for label, steps in classes.items():
            for step in steps:
                if OPS.get(step.op).final_only:
                    raise ConfigError(f"op {step.op!r} acts on all classes: put it in 'final', not class {label}")
        for step in final[:-1]:
            if OPS.get(step.op).final_only:
                raise ConfigError(f"op {step.op!r} must be the last final step")
        if not isinstance(self.schema_version, int) or self.schema_version > SCHEMA_VERSION:
            raise ConfigError(
                f"postprocessing spec schema_version {self.schema_version!r} is newer than this voxseg "
                f"understands ({SCHEMA_VERSION}); upgrade voxseg"
            )
        object.__setattr__(self, "classes", tuple((k, v) for k, v in sorted(classes.items()) if v))
        object.__setattr__(self, "final", final)

    @property
    def is_identity(self) -> bool:
        return not self.classes and not self.final

    @property
    def makes_instances(self) -> bool:
        """Whether the output is an instance image (the last final step is ``instances``)."""
        return bool(self.final) and OPS.get(self.final[-1].op).final_only

    def steps_for(self, label: int) -> tuple[Step, ...]:
        return dict(self.classes).get(int(label), ())

    def with_class_steps(self, label: int, steps: Sequence[Step]) -> PostprocessingSpec:
        """A copy with the steps of ``label`` replaced."""
        classes = dict(self.classes)
        classes[int(label)] = tuple(steps)
        return PostprocessingSpec(tuple(classes.items()), self.final, self.schema_version)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "classes": {str(k): [s.to_json() for s in v] for k, v in self.classes},
            "final": [s.to_json() for s in self.final],
        }

    @classmethod
    def from_json(cls, data: Any) -> PostprocessingSpec:
        if not isinstance(data, Mapping):
            raise ConfigError(f"a postprocessing spec is a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"schema_version", "classes", "final"})
        if unknown:
            raise ConfigError(f"unknown key(s) in postprocessing spec: {', '.join(unknown)} (known: classes, final)")
        classes = data.get("classes", {})
        if not isinstance(classes, Mapping):
            raise ConfigError("'classes' must map label values to lists of steps")
        return cls(tuple(classes.items()), tuple(data.get("final", ())), data.get("schema_version", SCHEMA_VERSION))

    def save(self, path: str | Path) -> Path:
        """Write the spec as JSON, atomically."""
        return write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> PostprocessingSpec:
        try:
            data = read_json(Path(path))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read the postprocessing spec ({exc})") from None
        return cls.from_json(data)


def apply_postprocessing(
    labels: np.ndarray | Volume, spec: PostprocessingSpec, *, spacing: Sequence[float] | None = None
) -> np.ndarray | Volume:
    """Apply ``spec`` to a label map (ndarray or Volume; the input is not modified).

    Returns the same type; an identity spec returns a copy. With a final ``instances`` step the
    result holds instance ids (uint16/uint32) instead of class labels. ``spacing`` (or the
    Volume's) is needed only by steps with ``min_volume``.
    """
    arr, volume = as_array(labels, "labels")
    sp = resolve_spacing(spacing, volume, arr.ndim)
    if any(dict(step.params).get("min_volume") is not None for step in _all_steps(spec)) and sp is None:
        raise ConfigError("this postprocessing spec uses min_volume (mm³): pass spacing= or a Volume")
    out = arr.copy()
    for label, steps in spec.classes:
        for step in steps:
            out = step.apply(out, classes=(label,), spacing=sp)
    for step in spec.final:
        out = step.apply(out, classes=None, spacing=sp)
    return rewrap(out, volume)


def _all_steps(spec: PostprocessingSpec):
    for _, steps in spec.classes:
        yield from steps
    yield from spec.final


def for_plan(spec: PostprocessingSpec, plan: Any) -> PostprocessingSpec:
    """``spec`` ending with the steps ``plan`` requires: ``split_instances`` for an instance plan.

    An instance plan's network predicts background/interior/boundary; its output is one id per
    object only after ``split_instances``. A final ``instances`` step (connected components, which
    would merge touching objects) is replaced by it, keeping its ``min_size``; other specs are returned as is.
    """
    if not getattr(plan, "instances", False) or (spec.final and spec.final[-1].op == "split_instances"):
        return spec
    final, min_size = list(spec.final), 0
    if final and final[-1].op == "instances":
        min_size = int(dict(final.pop().params).get("min_size") or 0)
    final.append(Step.of("split_instances", min_size=min_size) if min_size else Step.of("split_instances"))
    return PostprocessingSpec(spec.classes, tuple(final), spec.schema_version)
