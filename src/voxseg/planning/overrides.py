"""``apply_overrides``: change any field of a plan with ``KEY=VALUE`` strings (``voxseg plan --set``).

Keys are dotted paths into ``plan.json``:

* ``3d.patch_size=64,64,64`` or ``configurations.3d.batch_size=4``: one configuration;
* ``patch_size=...``, ``batch_size=4``, ``network.name=attention_unet``, ``network.filters=8,16,32``:
  every configuration (a value with one number per axis only where the dimensions match);
  ``network.X`` other than ``name``/``kwargs`` means ``network.kwargs.X``;
* ``normalization.0.scheme=percentile_minmax`` (channel 0) or ``normalization.scheme=zscore`` (all);
* ``loss=dice_focal``, ``loss.lambda_other=10``, ``epochs=100``, ``lr=0.001``, ...: training options
  (:class:`voxseg.training.TrainConfig` fields), stored in ``plan.training``; ``training.X`` too;
* ``seed``, ``default_configuration``, ``anisotropy_threshold``, ``budget``, ``interactive.X``.

Values are parsed as JSON when possible (``4``, ``0.5``, ``true``, ``null``, ``[1,2]``), else
comma lists become lists and anything else a string. Changing ``network.name`` translates the
network's arguments (``filters`` <-> ``channels``, DynUNet's per-level ``strides``/``kernel_size``
<-> U-Net strides); changing ``patch_size`` recomputes a DynUNet's pooling for the new patch.
No torch here: :func:`voxseg.nets.build_network` checks that the result builds.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from voxseg.errors import ConfigError
from voxseg.io.safe_json import loads_json
from voxseg.planning.plan import ConfigurationPlan, Plan
from voxseg.planning.topology import pool_topology

__all__ = ["apply_overrides", "parse_value", "TRAIN_KEYS", "LOSS_KEYS", "translate_network"]

log = logging.getLogger(__name__)

TRAIN_KEYS = (
    "epochs",
    "minutes",
    "iterations_per_epoch",
    "batch_size",
    "optimizer",
    "lr",
    "weight_decay",
    "momentum",
    "lr_schedule",
    "loss",
    "augmentation",
    "oversample_foreground",
    "seed",
    "num_workers",
    "precision",
    "device",
    "init_weights",
    "warmup_steps",
    "freeze_encoder",
)
""":class:`voxseg.training.TrainConfig` fields (kept equal to it by a test; planning imports no torch)."""

LOSS_KEYS = ("name", "lambda_dice", "lambda_other", "focal_gamma", "include_background")
""":class:`voxseg.training.losses.LossSpec` fields."""

_CONFIG_KEYS = tuple(f for f in ConfigurationPlan.__dataclass_fields__ if f != "name")
_PER_AXIS = ("target_spacing", "patch_size", "mirror_axes", "median_shape", "fixed_shape")
_PLAN_KEYS = ("normalization", "default_configuration", "anisotropy_threshold", "seed", "budget")
_OPEN_KEYS = ("training", "interactive")
_FACTS = ("dataset_name", "channel_names", "labels", "ignore_label", "data_ndim", "schema_version")
_NETWORKS = ("dynunet", "unet", "attention_unet")
_UNETS = ("unet", "attention_unet")


def parse_value(text: Any) -> Any:
    """``"4"`` -> 4, ``"true"`` -> True, ``"64,64,64"`` -> [64, 64, 64], ``"unet"`` -> ``"unet"``."""
    if not isinstance(text, str):
        return text
    text = text.strip()
    try:
        return loads_json(text, source="override")
    except ValueError:
        pass
    if "," in text:
        return [parse_value(part) for part in text.split(",") if part.strip()]
    return text


def _valid_keys(plan: Plan) -> str:
    confs = ", ".join(f"{c}.<field>" for c in plan.configurations)
    return (
        f"{confs}, configurations.<name>.<field>, <field> for every configuration ({', '.join(_CONFIG_KEYS)}), "
        f"network.name, network.<argument>, normalization.<channel>.<field>, "
        f"{', '.join(_PLAN_KEYS[1:])}, training.<option>, interactive.<key>, loss, loss.<field>, "
        f"training options ({', '.join(TRAIN_KEYS)})"
    )


def _set_path(target: Any, path: list[str], value: Any, key: str) -> None:
    """``target[path[0]]...[path[-1]] = value`` through dicts and lists; missing dicts are created."""
    for k, part in enumerate(path):
        last = k == len(path) - 1
        if isinstance(target, list):
            try:
                index = int(part)
                target[index]  # range check
            except (ValueError, IndexError):
                raise ConfigError(f"--set {key}: {part!r} is not an index of a list of {len(target)}") from None
            if last:
                target[index] = value
            else:
                target = target[index]
        elif isinstance(target, dict):
            if last:
                target[part] = value
            else:
                if not isinstance(target.get(part), (dict, list)):
                    target[part] = {}
                target = target[part]
        else:
            raise ConfigError(f"--set {key}: cannot go into {'.'.join(path[:k])}, it is not an object")


def translate_network(network: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The network spec ``network`` rewritten for network ``name``, keeping its size and pooling."""
    if name not in _NETWORKS:
        raise ConfigError(f"unknown network {name!r} (choose from {', '.join(_NETWORKS)})")
    old, kw = str(network.get("name")), dict(network.get("kwargs") or {})
    if old == name or old not in _NETWORKS:
        return {"name": name, "kwargs": kw}
    nd = int(kw.get("spatial_dims", 3))
    common = {k: kw[k] for k in ("spatial_dims", "in_channels", "out_channels") if k in kw}
    if old == "dynunet":
        filters = list(kw.get("filters") or [])
        down = [list(s) if isinstance(s, (list, tuple)) else [int(s)] * nd for s in kw.get("strides", [])][1:]
    else:
        filters = list(kw.get("channels") or [])
        down = [list(s) if isinstance(s, (list, tuple)) else [int(s)] * nd for s in kw.get("strides", [])]
    if not filters or len(down) != len(filters) - 1:
        raise ConfigError(f"network {old!r}: cannot translate kwargs {kw} into {name!r} (filters/strides mismatch)")
    if name == "dynunet":
        kernels = [[3] * nd for _ in filters]
        new = {**common, "kernel_size": kernels, "strides": [[1] * nd, *down], "filters": filters}
        new.update({"deep_supervision": False, "deep_supr_num": 1})
    else:
        strides = [s[0] if len(set(s)) == 1 else s for s in down]
        new = {**common, "channels": filters, "strides": strides}
        for extra in ("dropout",):
            if extra in kw and isinstance(kw[extra], (int, float)):
                new[extra] = kw[extra]
    return {"name": name, "kwargs": new}


def _repool(conf: dict[str, Any], budget: str) -> None:
    """After a patch size change: the network's pooling for the new patch (the patch padded to fit).

    Filters keep the network's first-level width and double per level up to the budget's cap.
    """
    from voxseg.planning.planner import PlannerDefaults  # planner imports this module's neighbours

    defaults = PlannerDefaults()
    patch = [int(v) for v in conf["patch_size"]]
    topo = pool_topology(
        conf["target_spacing"], patch, min_feature_map=defaults.min_feature_map, max_pools=defaults.max_pools
    )
    if list(topo.patch_size) != patch:
        log.warning("patch_size %s padded to %s (a multiple of the pooling %s)", patch, topo.patch_size, topo.divisor)
    conf["patch_size"] = list(topo.patch_size)
    net = conf["network"]
    kw = net.setdefault("kwargs", {})
    old_filters = kw.get("filters") or kw.get("channels") or [16]
    costs = defaults.budget(budget if budget in ("cpu", "gpu") else "cpu")
    base = int(old_filters[0])
    capped = len(old_filters) > 1 and old_filters[-1] == old_filters[-2]  # keep a cap the filters show
    cap = int(old_filters[-1]) if capped else (costs.max_filters_2d if len(patch) == 2 else costs.max_filters_3d)
    filters = [min(base * 2**k, cap) for k in range(topo.levels)]
    if net.get("name") == "dynunet":
        kw["strides"] = [list(s) for s in topo.strides]
        kw["kernel_size"] = [list(k) for k in topo.kernel_sizes]
        kw["filters"] = filters
        if "deep_supr_num" in kw:
            kw["deep_supr_num"] = max(1, min(int(kw["deep_supr_num"]), topo.levels - 2))
    elif net.get("name") in ("unet", "attention_unet"):
        kw["channels"] = filters
        kw["strides"] = [s[0] if len(set(s)) == 1 else list(s) for s in topo.strides[1:]]


def _apply_to_configuration(conf: dict[str, Any], path: list[str], value: Any, key: str, plan: Plan) -> bool:
    """Set ``path`` inside one configuration's JSON; returns False when the value does not fit its dims."""
    field_name = path[0]
    if field_name not in _CONFIG_KEYS:
        raise ConfigError(f"--set {key}: unknown configuration field {field_name!r}; valid keys: {_valid_keys(plan)}")
    if field_name in _PER_AXIS and len(path) == 1 and isinstance(value, list) and len(value) != len(conf["patch_size"]):
        return False
    if field_name == "network":
        if len(path) == 1:
            if not isinstance(value, Mapping):
                raise ConfigError(f"--set {key}: a network is {{'name': ..., 'kwargs': {{...}}}}")
            conf["network"] = dict(value)
            return True
        if path[1:] == ["name"]:
            conf["network"] = translate_network(conf["network"], str(value))
            return True
        sub = path[1:] if path[1] == "kwargs" else ["kwargs", *path[1:]]
        if len(sub) > 1:  # filters (DynUNet) and channels (U-Nets) name the same thing
            alias = {"filters": "channels"} if conf["network"].get("name") in _UNETS else {"channels": "filters"}
            sub[1] = alias.get(sub[1], sub[1])
        _set_path(conf["network"], sub, value, key)
        return True
    _set_path(conf, path, value, key)
    if field_name == "patch_size":
        _repool(conf, plan.budget)
    return True


def _apply_training(data: dict[str, Any], path: list[str], value: Any, key: str, plan: Plan) -> None:
    training = data.setdefault("training", {})
    if path[0] not in TRAIN_KEYS:
        raise ConfigError(f"--set {key}: unknown training option {path[0]!r} (options: {', '.join(TRAIN_KEYS)})")
    if path[0] == "loss":
        loss = training.get("loss")
        loss = dict(loss) if isinstance(loss, Mapping) else {}
        if len(path) == 1 and isinstance(value, str):
            loss["name"] = value
        elif len(path) == 1 and isinstance(value, Mapping):
            loss = dict(value)
        elif len(path) == 2 and path[1] in LOSS_KEYS:
            loss[path[1]] = value
        else:
            raise ConfigError(f"--set {key}: loss fields are {', '.join(LOSS_KEYS)} (e.g. loss.lambda_other=10)")
        training["loss"] = loss
        return
    if len(path) != 1:
        raise ConfigError(f"--set {key}: training option {path[0]!r} takes a single value")
    training[path[0]] = value


def _apply_one(data: dict[str, Any], key: str, value: Any, plan: Plan) -> None:
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError("--set: empty key (expected KEY=VALUE)")
    head, rest = path[0], path[1:]
    confs = data["configurations"]
    if head == "configurations" and rest and rest[0] in confs and len(rest) > 1:
        _apply_to_configuration(confs[rest[0]], rest[1:], value, key, plan)
    elif head in confs and rest:
        _apply_to_configuration(confs[head], rest, value, key, plan)
    elif head in _FACTS:
        raise ConfigError(f"--set {key}: {head} is a fact of the dataset (change dataset.json and re-plan)")
    elif head in _PLAN_KEYS:
        if head == "normalization" and rest and not rest[0].isdigit():
            for channel in data["normalization"]:
                _set_path(channel, rest, value, key)
        else:
            _set_path(data, path, value, key)
    elif head in _OPEN_KEYS:
        if head == "training" and rest:
            _apply_training(data, rest, value, key, plan)
        else:
            _set_path(data, path, value, key)
    elif head in _CONFIG_KEYS:
        applied = [_apply_to_configuration(conf, path, value, key, plan) for conf in confs.values()]
        if not any(applied):
            raise ConfigError(f"--set {key}: {value} fits no configuration (they have {len(value)} axes?)")
    elif head in TRAIN_KEYS:
        _apply_training(data, path, value, key, plan)
    else:
        raise ConfigError(f"--set {key}: unknown key {head!r}; valid keys: {_valid_keys(plan)}")


def apply_overrides(plan: Plan, overrides: Iterable[str] | Mapping[str, Any]) -> Plan:
    """A new plan with ``overrides`` applied (see the module docstring for the key syntax).

    Parameters
    ----------
    plan
        The plan to change (unchanged itself).
    overrides
        ``["KEY=VALUE", ...]`` (values parsed with :func:`parse_value`) or ``{KEY: value}``.

    Raises
    ------
    ConfigError
        A malformed item, an unknown key (the message lists the valid ones) or an invalid result.
    """
    items: list[tuple[str, Any]] = []
    if isinstance(overrides, Mapping):
        items = [(str(k), parse_value(v)) for k, v in overrides.items()]
    else:
        for item in overrides:
            key, sep, value = str(item).partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. network.name=attention_unet")
            items.append((key.strip(), parse_value(value)))
    if not items:
        return plan
    data = copy.deepcopy(plan.to_json())
    for key, value in items:
        _apply_one(data, key, value, plan)
    try:
        return Plan.from_json(data)
    except ConfigError as exc:
        raise ConfigError(f"--set {', '.join(k for k, _ in items)}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--set {', '.join(k for k, _ in items)}: invalid value ({exc})") from None
