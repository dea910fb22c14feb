"""Networks by name: ``build_network({"name": ..., "kwargs": {...}})`` over MONAI's networks.

| name             | MONAI class      | notes                                                          |
|------------------|------------------|----------------------------------------------------------------|
| ``dynunet``      | ``DynUNet``      | nnU-Net-style U-Net: per-level kernel sizes and strides         |
|                  |                  | (``kernel_size``, ``strides``, ``filters``); the planner's default |
| ``unet``         | ``UNet``         | MONAI's residual U-Net (``channels``, ``strides``)              |
| ``attention_unet`` | ``AttentionUnet`` | attention-gated U-Net (the MIP-PET seed's network)          |

Every spec's ``kwargs`` hold ``spatial_dims``, ``in_channels`` and ``out_channels`` plus the
network's own keyword arguments; a spec is plain JSON (saved in ``plan.json`` and ``bundle.json``).
No losses, loops or paths here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from voxseg.errors import ConfigError
from voxseg.nets.bounds import network_spec_problem
from voxseg.planning.network import NetworkSpec
from voxseg.registry import Registry

if TYPE_CHECKING:  # importing this module (and NetworkSpec) must not import torch
    import torch

__all__ = ["NETWORKS", "NetworkSpec", "build_network", "count_parameters", "encoder_parameters", "ENCODER_PREFIXES"]

NETWORKS: Registry[Callable[..., Any]] = Registry("network", plugins="voxseg.networks")

_REQUIRED = ("spatial_dims", "in_channels", "out_channels")


def _tuples(value: Any) -> Any:
    """JSON lists back to tuples (MONAI checks ``isinstance(x, Sequence)`` either way; tuples are hashable)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


@NETWORKS.register("dynunet")
def _dynunet(**kw: Any) -> torch.nn.Module:
    from monai.networks.nets import DynUNet

    kw.setdefault("upsample_kernel_size", kw["strides"][1:])
    kw.setdefault("norm_name", ("INSTANCE", {"affine": True}))
    kw.setdefault("act_name", ("leakyrelu", {"inplace": True, "negative_slope": 0.01}))
    net = DynUNet(**kw)
    # DynUNet registers its blocks twice (as input_block/downsamples/... and inside skip_layers), so every
    # tensor would appear under two names in state_dict and safetensors refuses to save shared tensors.
    # Keep skip_layers as a plain attribute: forward still uses it, each block stays registered once.
    net.__dict__["skip_layers"] = net._modules.pop("skip_layers")
    return net


@NETWORKS.register("unet")
def _unet(**kw: Any) -> torch.nn.Module:
    from monai.networks.nets import UNet

    return UNet(**kw)


@NETWORKS.register("attention_unet")
def _attention_unet(**kw: Any) -> torch.nn.Module:
    from monai.networks.nets import AttentionUnet

    return AttentionUnet(**kw)


def build_network(spec: NetworkSpec | Mapping[str, Any]) -> torch.nn.Module:
    """Instantiate the network described by ``spec`` (weights freshly initialised).

    Raises
    ------
    UnknownNameError
        The name is not registered (the message lists the known ones).
    ConfigError
        A required keyword (``spatial_dims``, ``in_channels``, ``out_channels``) is missing, or
        the network refuses its arguments.
    """
    spec = NetworkSpec.from_json(spec)
    factory = NETWORKS.get(spec.name)
    missing = [k for k in _REQUIRED if k not in spec.kwargs]
    if missing:
        raise ConfigError(f"network {spec.name!r} needs {', '.join(missing)} in its kwargs")
    problem = network_spec_problem(spec.kwargs)
    if problem:
        raise ConfigError(f"network {spec.name!r} is refused: {problem}")
    kwargs = {k: _tuples(v) for k, v in spec.kwargs.items()}
    try:
        return factory(**kwargs)
    except (TypeError, ValueError, AssertionError, KeyError, IndexError, RuntimeError, MemoryError) as exc:
        sig = _signature(spec.name)
        raise ConfigError(f"network {spec.name!r} refused its arguments ({exc}); it takes {sig}") from None


def _signature(name: str) -> str:
    cls = {"dynunet": "DynUNet", "unet": "UNet", "attention_unet": "AttentionUnet"}.get(name)
    if cls is None:
        return "(see its documentation)"
    import monai.networks.nets as nets

    return str(inspect.signature(getattr(nets, cls).__init__)).replace("self, ", "")


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


#: Parameter-name prefixes of each network's encoder (the contracting path and the bottleneck);
#: plug-ins add their networks' (voxseg.nnunet.plugin).
ENCODER_PREFIXES: dict[str, tuple[str, ...]] = {
    "dynunet": ("input_block.", "downsamples.", "bottleneck."),
}


def encoder_parameters(model: torch.nn.Module, name: str) -> list[torch.nn.Parameter]:
    """The encoder's parameters of a network built from a spec named ``name`` (for a frozen-encoder
    fine-tuning).

    Raises
    ------
    ConfigError
        The network has no known encoder (the message names those that have one).
    """
    if name not in ENCODER_PREFIXES:
        NETWORKS._load_plugins()  # a plug-in's network registers its encoder with it
    prefixes = ENCODER_PREFIXES.get(name)
    if prefixes is None:
        raise ConfigError(
            f"freeze_encoder: network {name!r} has no known encoder (supported: {', '.join(ENCODER_PREFIXES)}); "
            "fine-tune without --freeze-encoder"
        )
    found = [p for n, p in model.named_parameters() if n.startswith(prefixes)]
    if not found:
        raise ConfigError(f"freeze_encoder: network {name!r} has no parameter named {' / '.join(prefixes)}")
    return found
