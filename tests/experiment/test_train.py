"""train_fold / train_folds on real work folders: run.json, validation, resume, overrides, refusals.

The ignore label (voxels marked ignore change neither loss nor gradients) is proven at the loss
level in tests/training/test_losses.py::test_ignored_voxels_change_nothing; training here uses that loss.
"""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from tests.experiment.work_helpers import FAST, make_work, weights
from voxseg.dataset import read_dataset
from voxseg.errors import ConfigError, DatasetFormatError
from voxseg.experiment import WorkDir
from voxseg.experiment.overrides import resolve_train_config, split_overrides
from voxseg.experiment.train import train_fold, train_folds
from voxseg.io import Volume, read_image, write_image
from voxseg.planning import Plan


@pytest.mark.slow
def test_train_fold_writes_run_validation_and_metrics(tmp_path):
    work = make_work(tmp_path)
    summary = train_fold(work, 0, config_overrides=FAST)
    wd = WorkDir(work)
    assert summary["status"] == "finished" and summary["epochs"] == 2 and summary["steps"] == 6
    assert 0.0 <= summary["val_dice"] <= 1.0 and set(summary["per_class"]) == {"1"}
    run = json.loads((wd.run_dir("3d", 0) / "run.json").read_text())
    assert run["fold"] == 0 and run["configuration"] == "3d" and run["dataset"] == "tiny"
    assert run["plan_sha256"] and run["versions"]["torch"] and run["seed"] == 0
    assert run["val_dice"] == pytest.approx(summary["val_dice"])
    assert all("val_dice" in e for e in run["history"])  # patch Dice every epoch
    assert (wd.run_dir("3d", 0) / "progress.png").is_file()
    assert wd.trained_folds("3d") == [0]
    # validation predictions: the fold's validation cases, on the raw files' exact geometry
    ds = read_dataset(wd.source_dataset())
    val = run["val_cases"]
    assert val and set(val).isdisjoint(run["train_cases"])
    for case_id in val:
        pred = read_image(wd.validation_dir("3d", 0) / f"{case_id}.nii.gz")
        ref = read_image(ds.case(case_id).label)
        assert pred.shape == ref.shape
        np.testing.assert_allclose(pred.spacing, ref.spacing)
        np.testing.assert_allclose(pred.origin, ref.origin)
    metrics = json.loads((wd.validation_dir("3d", 0) / "metrics.json").read_text())
    assert set(metrics["cases"]) == set(val)
    assert metrics["mean_dice"] == pytest.approx(summary["val_dice"])
    assert {"dice", "hd95"} <= set(metrics["cases"][val[0]]["1"])
    with pytest.raises(ConfigError, match="--resume"):  # a second run never overwrites the first
        train_fold(work, 0, config_overrides=FAST)
    stamp = (wd.validation_dir("3d", 0) / "metrics.json").stat().st_mtime_ns
    again = train_fold(work, 0, config_overrides=FAST, resume=True)  # finished and validated: nothing to do
    assert again["val_dice"] == summary["val_dice"] and again["epochs"] == 2
    assert (wd.validation_dir("3d", 0) / "metrics.json").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_resume_after_interrupt_gives_the_same_weights(tmp_path):
    full = make_work(tmp_path / "a")
    cut = make_work(tmp_path / "b")
    train_fold(full, 0, config_overrides=FAST, validate=False)

    def interrupt(info):
        if info.epoch == 1 and info.iteration == 2:
            raise KeyboardInterrupt  # killed in the middle of the second epoch

    with pytest.raises(KeyboardInterrupt):
        train_fold(cut, 0, config_overrides=FAST, progress=interrupt, validate=False)
    run = json.loads((WorkDir(cut).run_dir("3d", 0) / "run.json").read_text())
    assert run["status"] == "running" and run["epoch"] == 1  # the finished epoch is kept
    summary = train_fold(cut, 0, config_overrides=FAST, resume=True, validate=False)
    assert summary["status"] == "finished" and summary["epochs"] == 2
    a = weights(WorkDir(full).checkpoint_dir("3d", 0) / "model.safetensors")
    b = weights(WorkDir(cut).checkpoint_dir("3d", 0) / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_settings_resolution_order():
    from tests.experiment.work_helpers import tiny_plan

    plan = tiny_plan(training={"lr": 0.002, "loss": {"name": "dice_focal", "lambda_other": 10}})
    cfg = resolve_train_config(plan, "3d", {"lr": "0.005", "loss.lambda_dice": "2", "epochs": 3})
    assert cfg.batch_size == 2  # from the plan's configuration
    assert cfg.lr == 0.005 and cfg.epochs == 3  # the user's overrides win
    assert cfg.loss.name == "dice_focal" and cfg.loss.lambda_other == 10 and cfg.loss.lambda_dice == 2
    assert resolve_train_config(plan, "3d", ["batch_size=4"]).batch_size == 4  # a run's batch, not ignored
    training, changes = split_overrides(["lr=0.1", "network.name=attention_unet", "loss=dice"])
    assert set(training) == {"lr", "loss"} and set(changes) == {"network.name"}
    with pytest.raises(ConfigError, match="loss"):
        resolve_train_config(plan, "3d", {"loss.bogus": 1})


def test_network_override_is_recorded_in_the_run_not_in_plan_json(tmp_path):
    from voxseg.inference.predictor import Predictor
    from voxseg.planning.work import work_plan

    work = make_work(tmp_path)
    before = WorkDir(work).plan_path.read_bytes()
    s = train_fold(work, 1, config_overrides={**FAST, "epochs": 1, "network.name": "attention_unet"}, validate=False)
    assert WorkDir(work).plan_path.read_bytes() == before  # plan.json has one writer: voxseg plan
    run = json.loads((WorkDir(work).run_dir("3d", 1) / "run.json").read_text())
    assert run["network"]["name"] == "attention_unet" and run["seed"] == 1  # seed + fold
    assert run["plan_changes"] == {"network.name": "attention_unet"} and run["schema_version"] == 1
    assert s["status"] == "finished"
    # every reader of the trained folder sees the network the fold was trained with
    assert work_plan(work).configuration("3d").network.name == "attention_unet"
    predictor = Predictor.from_work(work, folds=[1])
    assert predictor.config.network.name == "attention_unet"
    # another fold may not switch the network back: every fold of a configuration has one network
    with pytest.raises(ConfigError, match="fold"):
        train_fold(work, 0, config_overrides={**FAST, "network.name": "unet"})
    with pytest.raises(ConfigError, match="unknown key"):
        train_fold(work, 0, config_overrides={"learning_rate": 1})
    with pytest.raises(ConfigError, match="re-plan"):
        train_fold(work, 0, config_overrides={**FAST, "3d.target_spacing": "1,1,1"})


def test_dataset_failing_verify_is_refused_before_any_work(tmp_path):
    work = make_work(tmp_path)
    source = WorkDir(work).source_dataset()
    bad = read_image(source / "labelsTr" / "case_002.nii.gz")
    write_image(
        Volume(np.full(bad.shape, 7, np.uint8), bad.spacing, bad.origin), source / "labelsTr" / "case_002.nii.gz"
    )
    with pytest.raises(DatasetFormatError, match="case_002") as err:
        train_folds(work, "all", config_overrides=FAST)
    assert "\n" not in str(err.value)
    assert not (WorkDir(work).root / "runs").exists()


def test_changed_raw_files_are_refused(tmp_path):
    work = make_work(tmp_path)
    source = WorkDir(work).source_dataset()
    img = read_image(source / "imagesTr" / "case_001_0000.nii.gz")
    write_image(Volume(img.array[:, :-2], img.spacing, img.origin), source / "imagesTr" / "case_001_0000.nii.gz")
    write_image(
        Volume(np.zeros(img.array[:, :-2].shape, np.uint8), img.spacing, img.origin),
        source / "labelsTr" / "case_001.nii.gz",
    )
    with pytest.raises(ConfigError, match="out of date"):
        train_fold(work, 0, config_overrides=FAST)


def test_gpu_plan_on_cpu_warns_and_bad_fold_is_refused(tmp_path, caplog):
    work = make_work(tmp_path)
    wd = WorkDir(work)
    plan = Plan.load(wd.plan_path)
    plan.replace(budget="gpu").save(wd.plan_path)
    with pytest.raises(ConfigError, match="fold 5"):
        train_fold(work, 5)
    with caplog.at_level(logging.WARNING, logger="voxseg"):
        train_fold(work, 0, config_overrides={**FAST, "epochs": 1}, validate=False, patch_validation=0)
    assert any("gpu" in r.getMessage() and "CPU" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_time_budget_sizes_the_epochs(tmp_path):
    work = make_work(tmp_path)
    s = train_fold(
        work, 0, config_overrides={"minutes": 0.12, "iterations_per_epoch": 2, "augmentation": "light"}, validate=False
    )
    run = json.loads((WorkDir(work).run_dir("3d", 0) / "run.json").read_text())
    assert s["status"] == "finished" and s["epochs"] >= 1
    assert run["config"]["epochs"] == s["epochs"] or run.get("ended") == "time budget"
    shutil.rmtree(work)


def test_budget_sizing_leaves_the_start_up_out_of_the_epoch_time():
    from voxseg.experiment.runner import _StepClock

    seen = []
    clock = _StepClock(seen.append)
    clock.started = 100.0
    clock.times = [112.0 + 2.0 * k for k in range(10)]  # 10 steps: first done after 12 s, then 2 s a step
    epoch, startup = clock.steady_epoch(spent=33.0, steps=10)  # 3 s after the last step: checkpoint, validation
    assert startup == 10.0 and epoch == 23.0  # 12 s to the first step = 10 s start-up + one 2 s step
    # warm-up: the first steps are slow, the second half runs at 2 s a step; a spike is ignored
    clock.times = [112.0, 116.0, 119.5, 122.5, 125.0, 127.0, 129.0, 137.0, 139.0, 141.0, 143.0]
    epoch, startup = clock.steady_epoch(spent=146.0 - 100.0, steps=11)
    assert epoch == 11 * 2.0 + 3.0 and startup == 10.0
    assert _StepClock(None).steady_epoch(5.0, 1) == (5.0, 0.0)  # one step: the whole epoch counts
    clock("info")
    assert seen == ["info"]  # the caller's progress callback still gets every step


def _budget_at(*, minutes: float, spent: float, pace: float, tail: float = 0.0):
    """A Budget ``spent`` seconds in, steps at ``pace`` seconds."""
    from voxseg.training.budget import Budget

    budget = Budget(minutes, trained=spent)
    budget.step_pace, budget.tail = pace, tail
    return budget


def test_fill_minutes_refits_the_epoch_count_and_the_lr_schedule():
    import torch

    from voxseg.training.config import TrainConfig
    from voxseg.training.loop import _lr_factor, _refit_epochs

    model = torch.nn.Linear(2, 2)
    cfg = TrainConfig(epochs=10, minutes=1.0, lr=1.0, iterations_per_epoch=4)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor(cfg))
    # 9 s spent after 3 epochs at 0.5 s a step (2 s an epoch): 51 s left = 25.5 more epochs, the last partial
    new = _refit_epochs(cfg, 3, _budget_at(minutes=1.0, spent=9.0, pace=0.5), sched)
    assert new.epochs == 3 + 26 and new.minutes == 1.0
    assert sched.lr_lambdas[0](3) == pytest.approx((1 - 3 / 29) ** 0.9)  # the schedule follows
    # slower than planned (2.5 s a step, 1 s after each epoch: 11 s an epoch): fewer epochs
    slow = _refit_epochs(TrainConfig(epochs=100, minutes=1.0, iterations_per_epoch=4), 3,
                         _budget_at(minutes=1.0, spent=30.0, pace=2.5, tail=1.0), sched)  # fmt: skip
    assert slow.epochs == 3 + 3  # 30 s left / 11 s = 2.7: two whole epochs and a partial one
    unknown = _budget_at(minutes=1.0, spent=9.0, pace=0.5)
    unknown.step_pace = None
    assert _refit_epochs(new, 3, unknown, sched) is new  # no steady step timed yet: too early to tell
    same = TrainConfig(epochs=29, minutes=1.0, iterations_per_epoch=4)
    assert _refit_epochs(same, 3, _budget_at(minutes=1.0, spent=9.1, pace=0.5), sched) is same  # within 1 epoch


def test_a_budget_run_interrupted_after_its_timing_epoch_resumes_to_its_budget(tmp_path):
    work = make_work(tmp_path)
    quick = {"iterations_per_epoch": 2, "augmentation": "light"}

    def interrupt(info):
        if info.epoch == 1:
            raise KeyboardInterrupt  # killed after the first (timing) epoch's checkpoint

    with pytest.raises(KeyboardInterrupt):
        train_fold(work, 0, config_overrides={**quick, "minutes": 0.1}, progress=interrupt, validate=False)
    run_json = WorkDir(work).run_dir("3d", 0) / "run.json"
    cut = json.loads(run_json.read_text())
    assert cut["status"] == "running" and cut["epoch"] == 1 and cut["epochs_from_budget"]  # not "finished"
    assert cut["config"]["minutes"] == 0.1 and 0 < cut["seconds_trained"] < 6
    s = train_fold(work, 0, config_overrides=quick, resume=True, validate=False)  # the budget comes from run.json
    run = json.loads(run_json.read_text())
    assert s["status"] == "finished" and s["epochs"] > 1 and run["epoch"] == s["epochs"]
    assert run["config"]["minutes"] == 0.1 and run["seconds_trained"] > cut["seconds_trained"]
    assert run["seconds_trained"] < 0.1 * 60 * 1.5  # the time before the interruption counted against the budget
    again = train_fold(work, 0, config_overrides=quick, resume=True, validate=False)  # finished: nothing to do
    assert again["epochs"] == s["epochs"]
