"""The full-volume validation after training takes at most a share of a time budget (issue 20):
fewer cases, then fewer tiles, then none (the patch estimate stands in), said in run.json."""

from __future__ import annotations

import json

import pytest

from tests.experiment.work_helpers import make_work
from voxseg.dataset.splits import read_splits
from voxseg.experiment import WorkDir
from voxseg.experiment.reserve import VALIDATION_SHARE, _tiles, choose_validation
from voxseg.experiment.train import train_fold
from voxseg.nets import build_network
from voxseg.planning import Plan
from voxseg.training.sampling import load_cases


def _record_pace(run_dir, seconds_per_tile: float) -> None:
    """Another fold's run.json saying how long its validation took per tile."""
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"validation": {"wall_seconds": seconds_per_tile * 100, "tiles": 100}, "val_cases": ["x"]}
    (run_dir / "run.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return make_work(tmp_path_factory.mktemp("valbudget"), cases=6, folds=2)


def test_choose_validation_cuts_cases_then_tiles_then_skips(work) -> None:
    wd = WorkDir(work)
    plan = Plan.load(wd.plan_path)
    conf = plan.configuration("3d")
    val = read_splits(wd.splits_path)[0].val
    prefixes = [str(wd.preprocessed_dir("3d") / c) for c in val]
    model = build_network(conf.network)
    patch = tuple(p // 2 for p in conf.patch_size)  # tiles that overlap on these small images
    other = wd.run_dir("3d", 1)
    _record_pace(other, 1.0)  # 1 s per tile: the budgets below are in tiles
    shapes = [c.data.shape[1:] for c in load_cases(prefixes)]
    tiles = {o: [_tiles(s, patch, o) for s in shapes] for o in (0.5, 0.0)}
    assert len(val) == 3 and sum(tiles[0.0]) < sum(tiles[0.5])

    def choose(seconds):
        return choose_validation(model, prefixes, patch, budget_seconds=seconds, other_runs=[other])

    roomy = choose(100 * sum(tiles[0.5]) / VALIDATION_SHARE)
    assert (roomy.cases, roomy.overlap, roomy.subsampled) == (3, 0.5, None)
    assert roomy.seconds <= VALIDATION_SHARE * 100 * sum(tiles[0.5]) / VALIDATION_SHARE
    fewer_tiles = choose(1.3 * (sum(tiles[0.0]) + 1.5) / VALIDATION_SHARE)  # all cases, only with fewer tiles
    assert fewer_tiles.cases == 3 and fewer_tiles.overlap < 0.5 and "3 of 3" in fewer_tiles.subsampled
    two = choose(1.3 * (sum(tiles[0.0][:2]) + 1.0) / VALIDATION_SHARE)  # 2 cases without overlap, not 3
    assert (two.cases, two.overlap) == (2, 0.0) and "2 of 3" in two.subsampled
    assert two.seconds <= 1.3 * (sum(tiles[0.0][:2]) + 1.0) + 1e-6
    one_cheap = choose(1.3 * (tiles[0.0][0] + 0.5) / VALIDATION_SHARE)  # one case, only without overlap
    assert one_cheap.cases == 1 and one_cheap.overlap == 0.0
    none = choose(1.0)
    assert none.cases == 0 and none.seconds == 0 and "skipped" in none.subsampled


@pytest.mark.slow
def test_a_short_budget_validates_a_subsample_and_says_so(work) -> None:
    wd = WorkDir(work)
    _record_pace(wd.run_dir("3d", 1), 0.05)  # fold 1 "took" 0.05 s per tile: 10% of 0.1 min is 0.6 s
    overrides = {"minutes": 0.1, "iterations_per_epoch": 2, "augmentation": "light"}
    summary = train_fold(work, 0, config_overrides=overrides, patch_validation=2)
    run = json.loads((wd.run_dir("3d", 0) / "run.json").read_text())
    record = run["validation"]
    assert record["subsampled"] and record["of"] == 3 and len(record["cases"]) < 3
    assert summary["val_dice"] == run["val_dice"]
    if record["cases"]:  # the cases it did predict were written and scored
        assert len(list(wd.validation_dir("3d", 0).glob("*.nii.gz"))) == len(record["cases"])
    else:
        assert record["val_dice_from"] == "patches"
