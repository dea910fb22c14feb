"""The simulated user loop with real segmenter functions."""

from __future__ import annotations

import numpy as np
import pytest

from voxseg.errors import ConfigError
from voxseg.interactive.session import mean_curve, simulate_user


def sphere(shape=(24, 24, 24), centre=(12, 12, 12), radius=8.0):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def box_then_balls(points, clicks, previous):
    """The points' bounding box, then balls of radius 3 added/removed at the clicks."""
    mask = np.zeros((24, 24, 24), bool) if previous is None else previous.copy()
    if previous is None:
        lo, hi = points.min(axis=0), points.max(axis=0) + 1
        mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    if clicks:
        grid = np.indices(mask.shape)
        last = clicks[-1]
        ball = sum((g - c) ** 2 for g, c in zip(grid, last.position, strict=True)) <= 9
        mask[ball] = last.positive
    return mask


def test_curve_starts_with_the_points_and_improves_with_clicks():
    ref = sphere()
    curve = simulate_user(box_then_balls, ref, max_clicks=4, inward=0)
    box = box_then_balls(curve.points, [], None)
    expected0 = 2 * (box & ref).sum() / (box.sum() + ref.sum())
    assert len(curve.dice) == 5 and curve.dice[0] == pytest.approx(expected0)
    assert all(not c.positive for c in curve.clicks)  # the box's corners are false positives
    assert all(b >= a for a, b in zip(curve.dice, curve.dice[1:], strict=False))
    assert curve.dice[-1] > curve.dice[0]
    data = curve.to_json()
    assert len(data["clicks"]) == 4 and len(data["points"]) == 6


def test_perfect_model_stops_clicking():
    ref = sphere()
    curve = simulate_user(lambda p, c, prev: ref, ref, max_clicks=3)
    assert curve.dice == (1.0, 1.0, 1.0, 1.0) and curve.clicks == ()


def test_sessions_are_seeded_and_average():
    ref = sphere()
    a = simulate_user(box_then_balls, ref, max_clicks=2, rng=5, jitter=1.0)
    b = simulate_user(box_then_balls, ref, max_clicks=2, rng=5, jitter=1.0)
    assert a.dice == b.dice and np.array_equal(a.points, b.points)
    mean = mean_curve([a, simulate_user(box_then_balls, ref, max_clicks=2)])
    assert mean.shape == (3,)
    with pytest.raises(ConfigError, match="different numbers"):
        mean_curve([a, simulate_user(box_then_balls, ref, max_clicks=1)])


def test_wrong_mask_shape_is_reported():
    with pytest.raises(ConfigError, match="shape"):
        simulate_user(lambda p, c, prev: np.zeros((2, 2)), sphere(), max_clicks=1)
