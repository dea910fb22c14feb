"""crossval on real trained folds: coverage of every case, summaries, postprocessing choice."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from tests.experiment.work_helpers import FAST, make_work
from voxseg.dataset import read_dataset
from voxseg.errors import VoxsegError
from voxseg.experiment import WorkDir
from voxseg.experiment.crossval import crossval
from voxseg.experiment.train import train_fold, train_folds
from voxseg.io import Volume, read_image, write_image
from voxseg.postprocessing import PostprocessingSpec


@pytest.fixture(scope="module")
def trained_work(tmp_path_factory):
    """Both folds of a 4-case work folder trained briefly and validated."""
    work = make_work(tmp_path_factory.mktemp("cv"))
    train_folds(work, "all", config_overrides=FAST)
    return work


def test_missing_folds_are_reported(tmp_path):
    work = make_work(tmp_path)
    with pytest.raises(VoxsegError, match="fold 0 is not trained; fold 1 is not trained"):
        crossval(work)
    train_fold(work, 0, config_overrides={**FAST, "epochs": 1}, validate=False, patch_validation=0)
    with pytest.raises(VoxsegError) as err:
        crossval(work)
    msg = str(err.value)
    assert "fold 0 lacks validation predictions" in msg and "fold 1 is not trained" in msg
    assert "--fold 0,1" in msg and "\n" not in msg


@pytest.mark.slow
def test_crossval_summarizes_every_case(trained_work, tmp_path):
    work = shutil.copytree(trained_work, tmp_path / "work")
    summary = crossval(work)
    wd = WorkDir(work)
    out = wd.crossval_dir("3d")
    assert summary["cases"] == 4 and summary["folds"] == 2 and summary["labels"] == [1]
    assert set(summary["per_fold"]) == {"0", "1"}
    assert 0 <= summary["mean_dice"] <= 1 and summary["per_class"]["1"]["name"] == "tumor"
    assert json.loads((out / "summary.json").read_text())["mean_dice"] == pytest.approx(summary["mean_dice"])
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert sorted(r["case"] for r in rows) == [f"case_{i:03d}" for i in range(4)]
    assert {"dice", "hd95", "dice_postprocessed", "fold"} <= set(rows[0])
    spec = PostprocessingSpec.load(wd.postprocessing_path("3d"))
    assert spec.to_json() == summary["postprocessing"]
    report = json.loads((out / "postprocessing_report.json").read_text())
    assert report["candidates"][0]["steps"] == []  # the score without postprocessing comes first


@pytest.mark.slow
def test_postprocessing_is_chosen_from_cv_predictions(trained_work, tmp_path):
    """Replace the CV predictions by the references plus a stray blob: removing it must be chosen."""
    work = shutil.copytree(trained_work, tmp_path / "work")
    wd = WorkDir(work)
    ds = read_dataset(wd.source_dataset())
    folds = json.loads(wd.splits_path.read_text())["folds"]
    for k, fold in enumerate(folds):
        for case_id in fold["val"]:
            ref = read_image(ds.case(case_id).label)
            arr = np.asarray(ref.array).copy()
            arr[0:2, 0:2, 0:2] = 1  # an 8-voxel false positive far from the sphere
            write_image(
                Volume(arr, ref.spacing, ref.origin, ref.direction), wd.validation_dir("3d", k) / f"{case_id}.nii.gz"
            )
    summary = crossval(work)
    steps = summary["postprocessing"]["classes"]["1"]
    assert steps and steps[0]["op"] in ("keep_largest", "remove_small")
    assert summary["mean_dice_postprocessed"] == pytest.approx(1.0)
    assert summary["mean_dice"] < 1.0
    from voxseg.inference.predictor import Predictor

    predictor = Predictor.from_work(work, tta=False)  # picks the chosen postprocessing up
    assert not predictor.postprocessing.is_identity and predictor.folds == (0, 1)


def test_one_trained_fold_is_scored_alone_when_asked(tmp_path):
    """A user who trained fold 0 only gets its validation scored and postprocessing chosen from it,
    labelled an estimate everywhere; without --folds the refusal names that way out."""
    from typer.testing import CliRunner

    from voxseg.cli.main import app
    from voxseg.errors import ConfigError
    from voxseg.workdir.quality import crossval_warnings

    work = make_work(tmp_path)
    train_fold(work, 0, config_overrides={**FAST, "epochs": 1}, patch_validation=0)
    with pytest.raises(VoxsegError, match=r"fold 1 is not trained.*score the trained fold\(s\) alone with --folds 0"):
        crossval(work)
    with pytest.raises(ConfigError, match="--folds 7 not in the splits"):
        crossval(work, folds=[7])
    summary = crossval(work, folds=[0])
    wd = WorkDir(work)
    val = json.loads(wd.splits_path.read_text())["folds"][0]["val"]
    assert summary["partial"] is True and summary["folds_scored"] == [0] and summary["folds"] == 2
    assert summary["cases"] == len(val) and set(summary["per_fold"]) == {"0"}
    assert wd.postprocessing_path("3d").is_file()
    saved = json.loads((wd.crossval_dir("3d") / "summary.json").read_text())
    assert saved["partial"] is True and saved["folds_scored"] == [0]
    warnings = crossval_warnings(summary, {})
    assert any("scored on fold(s) 0 of 2 only" in w for w in warnings)
    result = CliRunner().invoke(app, ["crossval", str(work), "--folds", "0"])
    assert result.exit_code == 0, result.output
    assert "fold(s) 0 of 2" in result.output and "scored on fold(s) 0 of 2 only" in result.output
