"""Raw dataset -> plan -> train 2 folds (a few iterations) -> crossval, with the default CPU plan."""

from __future__ import annotations

import pytest

from tests.conftest import write_tiny_dataset
from voxseg.experiment import WorkDir
from voxseg.experiment.crossval import crossval
from voxseg.experiment.train import train_folds


@pytest.mark.slow
def test_raw_to_crossval(tmp_path):
    plan_experiment = pytest.importorskip("voxseg.experiment.plan").plan_experiment
    data = write_tiny_dataset(tmp_path / "Dataset001_Tiny", cases=4)
    work = tmp_path / "work"
    plan = plan_experiment(data, work, configurations=["3d"], folds=2, num_workers=1)
    summaries = train_folds(work, "all", config_overrides={"epochs": 1, "iterations_per_epoch": 2})
    assert [s["status"] for s in summaries] == ["finished", "finished"]
    assert all(s["val_dice"] is not None for s in summaries)
    summary = crossval(work)
    assert summary["cases"] == 4 and 0 <= summary["mean_dice"] <= 1
    assert WorkDir(work).trained_folds("3d") == [0, 1]
    from voxseg.inference.predictor import Predictor

    predictor = Predictor.from_work(work, tta=False)  # what `voxseg predict` loads: the planned network
    assert predictor.config.network.name == plan.configuration("3d").network.name
