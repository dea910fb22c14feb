"""Resolve a run's settings: ``TrainConfig`` defaults <- plan <- user overrides (``--set KEY=VALUE``).

The key syntax is the plan's (:func:`voxseg.planning.apply_overrides`): training options
(``lr=0.003``, ``loss=dice_focal``, ``loss.lambda_other=10``, ``epochs=5``...) apply to this run
only and are recorded in its ``run.json``; every other key (``network.name=attention_unet``,
``3d.batch_size=4``...) changes the plan itself, which inference reads back from ``plan.json``, so
the caller saves it (:func:`split_overrides` tells the two apart). No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from voxseg.errors import ConfigError
from voxseg.planning import Plan, apply_overrides
from voxseg.planning.overrides import TRAIN_KEYS
from voxseg.training.config import TrainConfig

__all__ = ["split_overrides", "resolve_train_config", "flatten", "as_mapping", "PREPROCESSING_FIELDS"]

PREPROCESSING_FIELDS = ("target_spacing", "normalization", "anisotropy_threshold")
"""Plan fields the preprocessed data depend on: changing them needs ``voxseg plan`` again."""


def as_mapping(overrides: Mapping[str, Any] | list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return {str(k).strip(): v for k, v in overrides.items()}
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. lr=0.001")
        out[key.strip()] = value
    return out


def split_overrides(overrides: Mapping[str, Any] | list[str] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(training options, plan changes) of ``{KEY: value}`` or ``["KEY=VALUE", ...]``."""
    training, plan = {}, {}
    for key, value in as_mapping(overrides).items():
        head = key.split(".", 1)[0]
        (training if head in TRAIN_KEYS or head == "training" else plan)[key] = value
    return training, plan


def _merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def resolve_train_config(
    plan: Plan, configuration: str | None = None, overrides: Mapping[str, Any] | list[str] | None = None
) -> TrainConfig:
    """``TrainConfig`` defaults <- the configuration's ``batch_size`` and ``plan.seed`` <- ``plan.training``
    <- training ``overrides`` (plan keys in ``overrides`` are ignored here: see :func:`split_overrides`).

    Raises
    ------
    ConfigError
        An unknown option or an invalid value (the message names the key).
    """
    training, _ = split_overrides(overrides)
    base = plan.replace(training={})
    changed = apply_overrides(base, training) if training else base
    conf = changed.configuration(configuration)  # ``batch_size=N`` is a configuration field too
    data = _merge(TrainConfig().to_json(), {"batch_size": conf.batch_size, "seed": plan.seed})
    data = _merge(data, dict(plan.training))
    data = _merge(data, dict(changed.training))
    try:
        return TrainConfig.from_json(data)
    except TypeError as exc:
        raise ConfigError(f"invalid training option ({exc})") from None


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> ``{"a.b": value}`` (for MLflow params)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
