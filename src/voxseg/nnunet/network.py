"""nnU-Net's own U-Nets (``dynamic-network-architectures``, the ``[nnunet]`` extra) as voxseg networks.

Registered (lazily, from :mod:`voxseg.nets`) as ``nnunet_plain_unet`` (``PlainConvUNet``) and
``nnunet_resenc_unet`` (``ResidualEncoderUNet``). Only the two U-Net modules of the package are
imported: its other architectures pull ``timm`` (and with it torchvision), which voxseg never needs.
Layer types are chosen from names (``norm="instance"``, ``nonlin="leakyrelu"``), never imported
from dotted paths found in a file. Deep supervision is off: inference uses the full-resolution head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from voxseg.errors import ConfigError

__all__ = ["build_nnunet_network", "build_raw", "dedupe", "Transposed", "NETWORK_NAMES"]

NETWORK_NAMES = ("nnunet_plain_unet", "nnunet_resenc_unet")


def _dna():
    try:
        from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
    except ImportError:
        raise ConfigError(
            "nnU-Net networks need dynamic-network-architectures: pip install -c constraints.txt --no-deps "
            "dynamic-network-architectures (or the voxseg[nnunet] extra)"
        ) from None
    return PlainConvUNet, ResidualEncoderUNet


class Transposed(nn.Module):
    """Run ``net`` on inputs whose spatial axes are permuted by ``perm`` (nnU-Net's transpose_forward).

    The output is permuted back, so callers see the image's own axis order.
    """

    def __init__(self, net: nn.Module, perm: Sequence[int]):
        super().__init__()
        self.net = net
        self.perm = tuple(int(p) for p in perm)
        self._forward = (0, 1, *(2 + p for p in self.perm))
        self._backward = (0, 1, *(2 + self.perm.index(k) for k in range(len(self.perm))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(self._forward).contiguous()).permute(self._backward)


def _layers(nd: int, norm: str, nonlin: str) -> tuple[type, type, type]:
    conv = {2: nn.Conv2d, 3: nn.Conv3d}[nd]
    norms = {
        "instance": {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d},
        "batch": {2: nn.BatchNorm2d, 3: nn.BatchNorm3d},
    }
    nonlins = {"leakyrelu": nn.LeakyReLU, "relu": nn.ReLU}
    if norm not in norms or nonlin not in nonlins:
        raise ConfigError(f"nnU-Net network: unknown norm {norm!r} or nonlin {nonlin!r}")
    return conv, norms[norm][nd], nonlins[nonlin]


def dedupe(net: nn.Module) -> nn.Module:
    """Register every submodule once (in place), so each tensor has one name in ``state_dict``.

    dynamic-network-architectures registers modules twice (``conv`` and ``all_modules.0``; the
    decoder's ``encoder``), so nnU-Net's state dicts hold aliases and safetensors refuses shared
    tensors. The copy kept is the one inside a container (``Sequential``/``ModuleList``, which
    ``forward`` iterates), else the first; the other names stay plain attributes, so ``forward``
    is unchanged.
    """
    places: dict[int, list[tuple[nn.Module, str]]] = {}
    for parent in list(net.modules()):
        for attr, child in list(parent._modules.items()):
            if child is not None:
                places.setdefault(id(child), []).append((parent, attr))
    for found in places.values():
        if len(found) < 2:
            continue
        keep = next((k for k, p in enumerate(found) if isinstance(p[0], (nn.Sequential, nn.ModuleList))), 0)
        for k, (parent, attr) in enumerate(found):
            if k != keep and not isinstance(parent, (nn.Sequential, nn.ModuleList)):
                parent.__dict__[attr] = parent._modules.pop(attr)
    return net


def build_nnunet_network(name: str, **kw: Any) -> nn.Module:
    """Build ``nnunet_plain_unet`` or ``nnunet_resenc_unet`` from a voxseg network spec's kwargs.

    ``kwargs`` are the plans' ``arch_kwargs`` with ``conv_op``/``norm_op``/``nonlin`` replaced by
    ``spatial_dims``, ``norm`` and ``nonlin`` names, plus ``in_channels``, ``out_channels`` and an
    optional ``transpose`` (axis permutation applied before the network). Submodules are
    registered once (see :func:`dedupe`); :func:`build_raw` gives nnU-Net's own module layout.
    """
    perm = kw.get("transpose")
    net = dedupe(build_raw(name, **kw))
    return Transposed(net, perm) if perm is not None and list(perm) != sorted(perm) else net


def build_raw(name: str, **kw: Any) -> nn.Module:
    """The network exactly as nnU-Net builds it (its state dict keys, aliases included)."""
    plain, resenc = _dna()
    kw = dict(kw)
    nd = int(kw.pop("spatial_dims"))
    conv, norm, nonlin = _layers(nd, kw.pop("norm", "instance"), kw.pop("nonlin", "leakyrelu"))
    kw.pop("transpose", None)
    cls = {"nnunet_plain_unet": plain, "nnunet_resenc_unet": resenc}[name]
    args = {
        "input_channels": int(kw.pop("in_channels")),
        "num_classes": int(kw.pop("out_channels")),
        "conv_op": conv,
        "norm_op": norm,
        "nonlin": nonlin,
        "dropout_op": None,
        "deep_supervision": False,
        **kw,
    }
    for key in ("norm_op_kwargs", "nonlin_kwargs"):
        args[key] = dict(args.get(key) or {})
    return cls(**args)
