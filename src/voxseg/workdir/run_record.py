"""``run.json``: a fold's training run as a typed, versioned record with one writer.

The training loop writes its progress (status, epoch, step, history, config); the experiment adds
what happened around it (validation, the time budget's end, plan changes made with ``train --set``).
Every write goes through :func:`write_run_record`: the old record is read, the new fields are
checked against their types, and the file is replaced atomically, so a reader never sees a half
record and no writer drops another's fields by accident.

Fields every record has are attributes of :class:`RunRecord`; the rest (``plan_sha256``, ``fold``,
``dataset``, ``versions``, ``ended``, ``epochs_planned``, ``plan_changes``, ...) are kept in
``extra`` and read with :meth:`RunRecord.get`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxseg.errors import ConfigError
from voxseg.io import write_json_atomic
from voxseg.io.safe_json import read_json

__all__ = ["RunRecord", "RUN_RECORD_NAME", "RUN_RECORD_SCHEMA_VERSION", "RUN_STATUSES", "write_run_record"]

RUN_RECORD_NAME = "run.json"
RUN_RECORD_SCHEMA_VERSION = 1
#: ``running`` (or killed while running), ``stopped`` (an epoch or time budget ended it early),
#: ``finished``.
RUN_STATUSES = ("running", "stopped", "finished")


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class RunRecord:
    """One fold's ``run.json`` (see the module docstring)."""

    status: str = "running"
    epoch: int = 0
    step: int = 0
    seconds_trained: float = 0.0
    config: Mapping[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    val_dice: float | None = None
    val_dice_per_class: Mapping[str, Any] = field(default_factory=dict)
    validation: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = RUN_RECORD_SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in RUN_STATUSES:
            raise ConfigError(f"{RUN_RECORD_NAME}: status {self.status!r} is not one of {', '.join(RUN_STATUSES)}")
        for name in ("epoch", "step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{RUN_RECORD_NAME}: {name} must be an integer >= 0, got {value!r}")
        for name in ("config", "val_dice_per_class", "validation", "extra"):
            if not isinstance(getattr(self, name), Mapping):
                raise ConfigError(f"{RUN_RECORD_NAME}: {name} must be a JSON object")
        if not isinstance(self.history, list):
            raise ConfigError(f"{RUN_RECORD_NAME}: history must be a list of epochs")
        object.__setattr__(self, "seconds_trained", float(_number(self.seconds_trained) or 0.0))
        object.__setattr__(self, "val_dice", _number(self.val_dice))

    # ---- reading -----------------------------------------------------------------------------
    @classmethod
    def from_json(cls, data: Any) -> RunRecord:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{RUN_RECORD_NAME} must hold a JSON object, got {type(data).__name__}")
        version = data.get("schema_version", RUN_RECORD_SCHEMA_VERSION)
        if version != RUN_RECORD_SCHEMA_VERSION:
            raise ConfigError(
                f"{RUN_RECORD_NAME}: schema_version {version!r}; this voxseg reads {RUN_RECORD_SCHEMA_VERSION} "
                "(upgrade voxseg, or retrain the fold)"
            )
        return cls(**_split(data))

    @classmethod
    def read(cls, run_dir: str | Path) -> RunRecord:
        """The record of ``run_dir`` (``FileNotFoundError`` when the run has not started)."""
        return cls.from_json(read_json(Path(run_dir) / RUN_RECORD_NAME))

    def get(self, key: str, default: Any = None) -> Any:
        """A field by its ``run.json`` name, typed or extra."""
        if key in _TYPED:
            return getattr(self, key)
        return self.extra.get(key, default)

    def to_json(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in _TYPED}
        out = {"schema_version": self.schema_version, **out, **dict(self.extra)}
        return _json_safe(out)


_TYPED = tuple(f.name for f in dataclasses.fields(RunRecord) if f.name not in ("extra", "schema_version"))


def _split(data: Mapping[str, Any]) -> dict[str, Any]:
    """Typed fields as keyword arguments, the rest under ``extra``."""
    typed = {k: data[k] for k in _TYPED if k in data}
    extra = {k: v for k, v in data.items() if k not in _TYPED and k != "schema_version"}
    return {**typed, "extra": extra}


def _json_safe(value: Any) -> Any:
    """NaN/inf become None (JSON has no such numbers); tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_run_record(run_dir: str | Path, *, replace: bool = False, **fields: Any) -> RunRecord:
    """The one writer of ``run.json``: the current record (none when ``replace``) with ``fields``
    (``run.json`` names) put in, checked, and written atomically. Returns the new record."""
    path = Path(run_dir) / RUN_RECORD_NAME
    old: dict[str, Any] = {}
    if not replace and path.is_file():
        old = RunRecord.read(run_dir).to_json()
    record = RunRecord.from_json({**old, **_json_safe(fields)})
    write_json_atomic(path, record.to_json())
    return record
