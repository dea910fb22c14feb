"""Sanity bounds on a network spec, checked before a network is built (no torch here).

A ``bundle.json`` asking for 2^20 filters made torch try to allocate terabytes (a ``RuntimeError``
after a long wait, or the machine swapping). :func:`network_spec_problem` refuses such a spec from
its numbers alone: every integer in the kwargs bounded, channel lists short and narrow, kernels
and strides small, and a lower bound on the parameter count that must not exceed what the
weights actually hold (nor :data:`MAX_PARAMETERS`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["network_spec_problem", "parameter_lower_bound", "MAX_CHANNELS", "MAX_LEVELS", "MAX_PARAMETERS"]

MAX_CHANNELS = 8192  # widest layer (nnU-Net's widest is 320-512)
MAX_LEVELS = 16  # entries of a channel / stride / kernel list (resolution levels)
MAX_KERNEL = 32  # kernel sizes and strides
MAX_PARAMETERS = 2_000_000_000  # 8 GB of float32 weights
_MAX_INT = 1 << 16  # any other integer in the kwargs
_CHANNEL_KEYS = ("channels", "filters", "features_per_stage")
_KERNEL_KEYS = ("kernel_size", "kernel_sizes", "strides", "upsample_kernel_size")


def _ints(value: Any, key: str) -> Iterator[tuple[str, int]]:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield key, value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _ints(v, key)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _ints(v, str(k))


def _channel_list(kwargs: Mapping[str, Any]) -> list[int] | None:
    for key in _CHANNEL_KEYS:
        value = kwargs.get(key)
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [int(v) for v in value]
    return None


def parameter_lower_bound(kwargs: Mapping[str, Any]) -> int:
    """Fewest weights a U-Net with these channels can have: one 1-voxel convolution from each
    level's channels to the next's, plus the input and output convolutions (biases left out)."""
    chans = _channel_list(kwargs)
    if not chans:
        return 0
    inc, outc = int(kwargs.get("in_channels", 1)), int(kwargs.get("out_channels", 1))
    return inc * chans[0] + sum(a * b for a, b in itertools.pairwise(chans)) + chans[0] * outc


def network_spec_problem(kwargs: Mapping[str, Any], *, weights_numel: int | None = None) -> str | None:
    """Why the network kwargs are not plausible (None when they are).

    ``weights_numel``: the number of values in the weights meant for this network; a spec whose
    parameter lower bound exceeds it cannot match them.
    """
    for key in ("spatial_dims", "in_channels", "out_channels"):
        value = kwargs.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_CHANNELS:
            return f"{key} {value!r} is not an integer in 1..{MAX_CHANNELS}"
    if kwargs["spatial_dims"] not in (2, 3):
        return f"spatial_dims {kwargs['spatial_dims']} is not 2 or 3"
    for key, value in kwargs.items():
        if isinstance(value, (list, tuple)) and len(value) > MAX_LEVELS:
            return f"{key} has {len(value)} entries (more than {MAX_LEVELS} levels)"
    for key, value in _ints(dict(kwargs), ""):
        if key in _CHANNEL_KEYS and not 1 <= value <= MAX_CHANNELS:
            return f"{key} holds {value} (channels must be in 1..{MAX_CHANNELS})"
        if key in _KERNEL_KEYS and not 1 <= value <= MAX_KERNEL:
            return f"{key} holds {value} (kernel sizes and strides must be in 1..{MAX_KERNEL})"
        if abs(value) > _MAX_INT:
            return f"{key or 'a value'} holds {value} (larger than {_MAX_INT})"
    bound = parameter_lower_bound(kwargs)
    if bound > MAX_PARAMETERS:
        return f"its channels need at least {bound:,} parameters (more than {MAX_PARAMETERS:,})"
    if weights_numel is not None and bound > weights_numel:
        return f"its channels need at least {bound:,} parameters but the weights hold {weights_numel:,} values"
    return None
