"""A simulated user: extreme points, then corrective clicks, scoring Dice after every interaction.

The loop behind interactive evaluation (the Dice-after-k-interactions curve). The model is any
callable ``segment(points, clicks, previous) -> mask``: ``points`` the six extreme points (voxel
indices), ``clicks`` the corrective clicks so far, ``previous`` the mask it returned last time
(``None`` on the first call). The user is :func:`~voxseg.interactive.extreme_points` and
:func:`~voxseg.interactive.corrective_click` on the reference mask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxseg.errors import ConfigError
from voxseg.evaluation import dice
from voxseg.interactive.points import Click, as_rng, corrective_click, extreme_points

__all__ = ["Segmenter", "InteractionCurve", "simulate_user", "mean_curve"]

Segmenter = Callable[[np.ndarray, list[Click], "np.ndarray | None"], np.ndarray]


@dataclass(frozen=True, eq=False)
class InteractionCurve:
    """Dice after each interaction of one simulated session.

    ``dice[0]`` is the score after the extreme points, ``dice[k]`` after ``k`` clicks. A user
    stops clicking once the mask is perfect: the curve then repeats its last value up to
    ``max_clicks`` so that curves of different cases line up.
    """

    dice: tuple[float, ...]
    clicks: tuple[Click, ...]
    points: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {
            "dice": list(self.dice),
            "clicks": [c.to_json() for c in self.clicks],
            "points": np.asarray(self.points).tolist(),
        }


def _dice(mask: np.ndarray, reference: np.ndarray) -> float:
    return float(dice(np.asarray(mask) != 0, reference, labels=[1])[1])


def simulate_user(
    segment: Segmenter,
    reference: np.ndarray,
    *,
    max_clicks: int = 5,
    rng: np.random.Generator | int | None = None,
    inward: float | Sequence[float] = 2,
    jitter: float | Sequence[float] = 0.0,
    spacing: Sequence[float] | None = None,
) -> InteractionCurve:
    """Run one simulated session on ``reference`` and return its Dice curve.

    Parameters
    ----------
    segment
        The model: ``segment(points, clicks, previous) -> mask`` of ``reference``'s shape.
    reference
        The ground-truth mask of the one object (nonzero is the object).
    max_clicks
        Corrective clicks after the points (0: points only).
    rng, inward, jitter, spacing
        Passed to :func:`extreme_points` (and ``rng``/``spacing`` to :func:`corrective_click`);
        one generator drives the whole session, so a seed reproduces it.
    """
    if int(max_clicks) < 0:
        raise ConfigError(f"max_clicks must be 0 or more, got {max_clicks}")
    ref = np.asarray(reference) != 0
    generator = as_rng(rng)
    points = extreme_points(ref, rng=generator, inward=inward, jitter=jitter, spacing=spacing)
    clicks: list[Click] = []
    mask = _checked(segment(points, [], None), ref.shape)
    scores = [_dice(mask, ref)]
    for _ in range(int(max_clicks)):
        click = corrective_click(mask, ref, rng=generator, spacing=spacing)
        if click is None:
            break
        clicks.append(click)
        mask = _checked(segment(points, list(clicks), mask), ref.shape)
        scores.append(_dice(mask, ref))
    scores += [scores[-1]] * (int(max_clicks) + 1 - len(scores))
    return InteractionCurve(tuple(scores), tuple(clicks), points)


def _checked(mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ConfigError(f"the segmenter returned a mask of shape {mask.shape} for an image of shape {shape}")
    return mask


def mean_curve(curves: Sequence[InteractionCurve]) -> np.ndarray:
    """Mean Dice after 0, 1, ... clicks over sessions of equal ``max_clicks``."""
    if not curves:
        raise ConfigError("no sessions to average")
    lengths = {len(c.dice) for c in curves}
    if len(lengths) != 1:
        raise ConfigError(f"sessions have different numbers of clicks: {sorted(lengths)}")
    return np.mean([c.dice for c in curves], axis=0)
