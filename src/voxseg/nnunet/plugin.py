"""nnU-Net support plugs into voxseg's registries (entry points in pyproject.toml; see :mod:`voxseg.registry`).

- ``voxseg.networks``: nnU-Net's U-Nets (``nnunet_plain_unet``, ``nnunet_resenc_unet``), built by
  :mod:`voxseg.nnunet.network` when a plan names them (imported nnU-Net models);
- ``voxseg.arithmetic``: ``nnunet-exact``, :class:`voxseg.nnunet.exact.NnunetExactPredictor`, which a
  bundle made by ``voxseg import-nnunet`` asks for in ``bundle.json`` (``"arithmetic"``).

Registering imports nothing heavy: the network code and torch load when a network is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["NNUNET_NETWORKS", "NNUNET_EXACT", "register_networks", "register_arithmetic"]

NNUNET_NETWORKS = ("nnunet_plain_unet", "nnunet_resenc_unet")
NNUNET_EXACT = "nnunet-exact"


def _factory(name: str) -> Callable[..., Any]:
    def factory(**kw: Any) -> Any:
        from voxseg.nnunet.network import build_nnunet_network

        return build_nnunet_network(name, **kw)

    return factory


def register_networks() -> None:
    from voxseg.nets.build import ENCODER_PREFIXES, NETWORKS

    for name in NNUNET_NETWORKS:
        if name not in NETWORKS:
            NETWORKS.register(name, _factory(name))
        ENCODER_PREFIXES.setdefault(name, ("encoder.",))


def _exact() -> type:
    from voxseg.nnunet.exact import NnunetExactPredictor

    return NnunetExactPredictor


def register_arithmetic() -> None:
    from voxseg.inference.arithmetic import ARITHMETIC

    if NNUNET_EXACT not in ARITHMETIC:
        ARITHMETIC.register(NNUNET_EXACT, _exact)
