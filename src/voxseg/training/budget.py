"""A training run's time budget, kept per step: the pace of a step (an exponential moving average
over about the last epoch), the time after an epoch's last step (checkpoint, patch validation) and
the time reserved for what follows training (full-volume validation).

The loop asks :meth:`Budget.stop_now` after every step: a run stops, mid-epoch if need be, when one
more step, the epoch's end and the reserve would pass the budget. :meth:`Budget.epochs_that_fit`
re-fits the epoch count at every epoch end from the recent pace (not the first epoch's).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["Budget", "format_seconds"]


def format_seconds(seconds: float) -> str:
    """``75.3`` -> ``"1m15s"``; under a minute ``"42s"``."""
    seconds = max(0, round(seconds))
    minutes, rest = divmod(seconds, 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


class Budget:
    """The clock of one :func:`~voxseg.training.loop.train` call against ``minutes``.

    Parameters
    ----------
    minutes
        The whole budget (None: no budget; every query then answers "go on").
    trained
        Seconds spent by the runs this one resumes (they count against the budget).
    steps_per_epoch
        Iterations in an epoch: the moving average spans about that many steps.
    reserve
        Seconds to keep for after training (asked anew at every check; it may be re-estimated).
    """

    def __init__(
        self,
        minutes: float | None,
        *,
        trained: float = 0.0,
        steps_per_epoch: int = 1,
        reserve: Callable[[], float] | None = None,
    ):
        self.seconds = None if minutes is None else float(minutes) * 60
        self.trained = float(trained)
        self.alpha = max(2.0 / (max(1, steps_per_epoch) + 1), 0.02)
        self.reserve = reserve or (lambda: 0.0)
        self.started = time.monotonic()
        self.step_pace: float | None = None  # seconds per step (moving average)
        self.tail: float = 0.0  # seconds after an epoch's last step (the largest seen lately)
        self._last = self.started
        self._steps = 0

    def elapsed(self) -> float:
        """Seconds trained, the resumed runs' included."""
        return self.trained + time.monotonic() - self.started

    def left(self) -> float:
        """Seconds left for training (the reserve kept aside); inf without a budget."""
        if self.seconds is None:
            return math.inf
        return self.seconds - self.elapsed() - max(0.0, float(self.reserve()))

    def step_done(self) -> None:
        """Record the end of a step (the first of a call carries the start-up: not a pace)."""
        now = time.monotonic()
        gap, self._last = now - self._last, now
        self._steps += 1
        if self._steps == 1:
            return
        self.step_pace = gap if self.step_pace is None else self.step_pace + self.alpha * (gap - self.step_pace)

    def epoch_done(self, tail: float) -> None:
        """Record the seconds an epoch's end took (after its last step); restarts the step gap."""
        self.tail = max(tail, 0.5 * self.tail)
        self._last = time.monotonic()

    def stop_now(self) -> bool:
        """Whether one more step and the epoch's end would pass the budget."""
        if self.seconds is None:
            return False
        pace = self.step_pace if self.step_pace is not None else 0.0
        return self.left() < pace + self.tail

    def epochs_that_fit(self, epoch: int, steps_per_epoch: int) -> int | None:
        """Epochs (``epoch`` done) that fill the time left at the recent pace, the last one possibly
        partial (the loop stops it on time); None before a pace is known or without a budget."""
        if self.seconds is None or self.step_pace is None:
            return None
        per_epoch = self.step_pace * steps_per_epoch + self.tail
        return min(max(epoch + 1, epoch + math.ceil(self.left() / max(per_epoch, 1e-3))), 10_000)
