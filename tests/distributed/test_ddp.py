"""Data-parallel training with real gloo process groups on CPU: 2 processes make the same update as
1 process with the whole batch, and a 2-process checkpoint resumes on 1 process."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.distributed as dist

from tests.experiment.work_helpers import make_work, weights
from voxseg.errors import ConfigError
from voxseg.experiment import WorkDir
from voxseg.experiment.launcher import _free_port, train_processes
from voxseg.experiment.train import train_folds
from voxseg.training.losses import LossSpec, SegmentationLoss
from voxseg.training.parallel import DataParallel, sum_over_ranks

# batch 4 split 2 + 2; the default augmentation and the default Dice+CE loss (batch Dice)
RUN = {"iterations_per_epoch": 3, "training.batch_size": 4, "augmentation": "default"}
QUIET = {"validate": False, "patch_validation": 0}


def _model(work) -> dict:
    return weights(WorkDir(work).checkpoint_dir("3d", 0) / "model.safetensors")


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.slow
def test_two_processes_match_one_process_and_resume_on_one(tmp_path):
    one, two = make_work(tmp_path / "one"), make_work(tmp_path / "two")
    train_folds(one, [0], config_overrides={**RUN, "epochs": 1}, **QUIET)
    summaries = train_processes(two, [0], processes=2, config_overrides={**RUN, "epochs": 1}, **QUIET)
    assert summaries[0]["status"] == "finished" and summaries[0]["steps"] == 3
    before = _model(one)
    _assert_same(_model(two), before)
    assert any(not np.array_equal(before[k], weights_at_start(one)[k]) for k in before)  # it did train
    run = json.loads((WorkDir(two).run_dir("3d", 0) / "run.json").read_text())
    assert run["processes"] == 2 and run["config"]["batch_size"] == 4
    # the 2-process checkpoint continues on 1 process exactly like the 1-process run does
    train_folds(one, [0], config_overrides={**RUN, "epochs": 2}, resume=True, **QUIET)
    train_processes(two, [0], processes=1, config_overrides={**RUN, "epochs": 2}, resume=True, **QUIET)
    _assert_same(_model(two), _model(one))
    history = json.loads((WorkDir(two).run_dir("3d", 0) / "run.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [0, 1]


def weights_at_start(work) -> dict:
    """The seeded initial weights of the plan's network (what fold 0 starts from)."""
    from voxseg.nets import build_network
    from voxseg.planning import Plan

    plan = Plan.load(WorkDir(work).plan_path)
    torch.manual_seed(0)
    return {k: v.numpy() for k, v in build_network(plan.configuration("3d").network).state_dict().items()}


@pytest.fixture
def single_group():
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_global_batch_dice_equals_monai_on_one_process(single_group):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6, 7, 5, requires_grad=True)
    target = torch.randint(0, 4, (2, 1, 6, 7, 5))  # 3 is the ignore label
    spec = LossSpec("dice_ce", include_background=False)
    reference = SegmentationLoss(spec, ignore_label=3)
    ours = SegmentationLoss(spec, ignore_label=3)
    ours.reduce_sums = sum_over_ranks
    a = reference(logits, target)
    (grad_a,) = torch.autograd.grad(a, logits)
    b = ours(logits, target)
    (grad_b,) = torch.autograd.grad(b, logits)
    torch.testing.assert_close(b, a)
    torch.testing.assert_close(grad_b, grad_a)


def test_a_single_process_group_is_not_data_parallel(single_group):
    assert DataParallel.current() is None


def test_shard_and_batch_checks():
    par = DataParallel(rank=1, world_size=2)
    x, y = torch.arange(8).reshape(4, 2), torch.arange(4)
    sx, sy = par.shard(x, y)
    assert sx.tolist() == [[4, 5], [6, 7]] and sy.tolist() == [2, 3]
    with pytest.raises(ConfigError, match="multiple of 2"):
        par.check(3)


def test_launcher_refuses_what_the_ranks_could_disagree_on(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="--epochs"):
        train_processes(tmp_path, processes=2, config_overrides={"minutes": 5})
    with pytest.raises(ConfigError, match="positive"):
        train_processes(tmp_path, processes=0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        train_processes(tmp_path, processes=2)
