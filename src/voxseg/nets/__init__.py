"""Networks by name: ``build_network({"name": ..., "kwargs": {...}})`` over MONAI's networks
(:mod:`voxseg.nets.build`; plug-ins such as nnU-Net support add theirs to :data:`NETWORKS`).
Importing this package does not import torch."""

from voxseg.nets.build import ENCODER_PREFIXES, NETWORKS, build_network, count_parameters, encoder_parameters
from voxseg.planning.network import NetworkSpec

__all__ = [
    "ENCODER_PREFIXES",
    "NETWORKS",
    "NetworkSpec",
    "build_network",
    "count_parameters",
    "encoder_parameters",
]
