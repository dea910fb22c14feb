"""The time budget is kept per step: a run stops mid-epoch on time (checkpoint saved), keeps the
reserve for validation, and re-fits its epoch count from the recent pace, not the first epoch's."""

from __future__ import annotations

import json
import logging
import time

import pytest
import torch
from monai.networks.nets import UNet

from tests.training.test_loop import cases  # noqa: F401  (the module's preprocessed cases fixture)
from voxseg.training.budget import Budget, format_seconds
from voxseg.training.checkpoint import load_checkpoint
from voxseg.training.config import TrainConfig
from voxseg.training.loop import train


def _net():
    torch.manual_seed(0)
    return UNet(3, 1, 2, channels=(4, 8), strides=(2,), num_res_units=0)


def _steps(budget: Budget, gaps: list[float]) -> None:
    """Record steps that took ``gaps`` seconds (the clock's readings moved back by each gap)."""
    for gap in gaps:
        budget._last = time.monotonic() - gap
        budget.step_done()


def test_the_pace_follows_the_recent_steps_not_the_slow_first_ones():
    budget = Budget(1.0, steps_per_epoch=10)
    _steps(budget, [50.0])  # the first step carries the start-up: not a pace
    assert budget.step_pace is None and not budget.stop_now()
    _steps(budget, [8.0] * 3 + [1.0] * 30)  # slowed by another process, then 8x faster
    assert budget.step_pace == pytest.approx(1.0, abs=0.05)
    _steps(budget, [4.0] * 30)  # and slower again
    assert budget.step_pace == pytest.approx(4.0, abs=0.05)


def test_stop_now_keeps_a_step_the_epoch_end_and_the_reserve():
    budget = Budget(1.0, trained=40.0, reserve=lambda: 10.0)  # 60 s - 40 s spent - 10 s reserve = 10 s left
    budget.step_pace, budget.tail = 4.0, 3.0
    assert budget.left() == pytest.approx(10.0, abs=0.1) and not budget.stop_now()
    budget.tail = 7.0  # a step and the epoch's end would pass the budget
    assert budget.stop_now()
    assert Budget(None).left() == float("inf") and not Budget(None).stop_now()
    assert budget.epochs_that_fit(5, steps_per_epoch=2) == 6  # 10 s / (2 x 4 s + 7 s): one partial epoch
    assert format_seconds(75.3) == "1m15s" and format_seconds(42) == "42s"


def _warm_up(folder, cases) -> None:  # noqa: F811
    """One step first: the first optimizer and loss of a process import seconds of modules."""
    cfg = TrainConfig(epochs=1, iterations_per_epoch=1, batch_size=2, augmentation="light")
    train(folder, _net(), cases, patch_size=(16, 16, 16), config=cfg)


def test_a_run_out_of_time_stops_mid_epoch_with_a_checkpoint(tmp_path, cases, caplog):  # noqa: F811
    _warm_up(tmp_path / "warm", cases)
    cfg = TrainConfig(epochs=3, iterations_per_epoch=10_000, batch_size=2, augmentation="light", minutes=0.06)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="voxseg.training.progress"):
        state = train(tmp_path / "run", _net(), cases, patch_size=(16, 16, 16), config=cfg, meta={"fold": 2})
    wall = time.monotonic() - started
    assert wall <= 0.06 * 60 * 1.15 + 0.5  # 3.6 s budget, its clock started when train() was called
    assert state.epoch == 1 and 1 <= state.history[0]["iterations"] < 10_000  # stopped inside epoch 1
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "stopped" and run["history"][0]["iterations"] == state.step
    assert 0.06 * 60 * 0.8 <= run["seconds_trained"] <= 0.06 * 60 * 1.15  # within budget, not far under it
    saved = load_checkpoint(tmp_path / "run" / "checkpoint", _net())
    assert saved.step == state.step and saved.epoch == 1
    line = [r.getMessage() for r in caplog.records if r.name == "voxseg.training.progress"][-1]
    assert line.startswith("fold 2 epoch 1/3 loss ") and f"(stopped after {state.step} steps)" in line
    assert "elapsed" in line and "left" in line


def test_the_reserve_is_kept_for_after_training(tmp_path, cases):  # noqa: F811
    _warm_up(tmp_path / "warm", cases)
    cfg = TrainConfig(epochs=1, iterations_per_epoch=10_000, batch_size=2, augmentation="light", minutes=0.08)
    state = train(tmp_path / "run", _net(), cases, patch_size=(16, 16, 16), config=cfg, reserve=lambda: 3.0)
    spent = state.extra["seconds_trained"]
    assert 0.08 * 60 - 3.0 - 1.0 <= spent <= 0.08 * 60 - 3.0 + 0.5  # 4.8 s budget less a 3 s reserve


def test_fill_minutes_fills_the_budget_both_ways(tmp_path, cases):  # noqa: F811
    _warm_up(tmp_path / "warm", cases)
    # planned for 1 epoch, far too few: the run re-fits from its pace and trains to its budget
    cfg = TrainConfig(epochs=1, iterations_per_epoch=1, batch_size=2, augmentation="light", minutes=0.08)
    state = train(tmp_path / "run", _net(), cases, patch_size=(16, 16, 16), config=cfg.with_overrides(epochs=2),
                  fill_minutes=True)  # fmt: skip
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert state.epoch > 2 and run["config"]["epochs"] >= state.epoch
    # it stops when one more step and epoch end (here ~0.5 s of the 4.8 s) would not fit
    assert 0.08 * 60 * 0.75 <= state.extra["seconds_trained"] <= 0.08 * 60 * 1.15
    assert state.extra["budget_spent"] == 0.08  # resumed with the same budget: nothing to do
    again = train(tmp_path / "run", _net(), cases, patch_size=(16, 16, 16), config=cfg.with_overrides(epochs=1000),
                  resume=True, fill_minutes=True)  # fmt: skip
    assert again.step == state.step
