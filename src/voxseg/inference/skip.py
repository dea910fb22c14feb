"""Tiles of pure background are not run (``skip_background``, opt-in).

:func:`background_tile_test` is a cheap test on a preprocessed tile: every CT channel at or below
air (-500 HU, or the plan's lower clip when higher) and every other channel constant (the zero
background outside the body after normalization). A skipped tile contributes the outputs of a
confident background prediction. Agreement with running every tile is measured in
``benchmarks/cpu_less_arithmetic.py`` (``benchmarks/README.md``); it is off by default because a
model may call something in air foreground (a nodule at a lung's edge is not air, but a model
trained without air around it may behave otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from voxseg.planning.plan import Normalization

__all__ = ["AIR_HU", "background_tile_test", "skip_options"]

#: CT voxels below this (HU) are air: a tile of air only is background.
AIR_HU = -500.0


def background_tile_test(normalization: Sequence[Normalization]) -> Callable[[np.ndarray], bool]:
    """Whether a preprocessed tile ``(C, *part)`` holds only background (see the module docstring)."""
    limits = []
    for norm in normalization:
        if norm.scheme == "ct":
            limits.append((max(AIR_HU, float(norm.clip_low)) - float(norm.mean)) / float(norm.std) + 1e-4)
        else:
            limits.append(None)

    def test(tile: np.ndarray) -> bool:
        for channel, limit in zip(tile, limits, strict=True):
            low, high = float(channel.min()), float(channel.max())
            if (high > limit) if limit is not None else (high - low > 1e-6):
                return False
        return True

    return test


def skip_options(normalization: Sequence[Normalization], num_classes: int) -> dict[str, Any]:
    """The sliding window's ``skip`` test and a skipped tile's outputs (sigmoid or softmax probabilities)."""
    background = [0.0] if num_classes == 1 else [1.0] + [0.0] * (num_classes - 1)
    return {"skip": background_tile_test(normalization), "background": background}
