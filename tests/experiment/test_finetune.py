"""``voxseg.experiment.finetune`` as a library: frozen encoder, warm-up, version numbering, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from voxseg.dataset import read_dataset
from voxseg.dataset.phantoms import make_phantom
from voxseg.errors import DatasetFormatError
from voxseg.experiment.finetune_work import check_compatible


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("VOXSEG_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("VOXSEG_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_next_version_counts_from_the_index_and_the_installed_versions(store):
    from voxseg.bundle.cache import install
    from voxseg.bundle.listing import next_version

    assert next_version("mouse-lung-nodules") == "v3"  # the index lists v1 and v2
    assert next_version("never-seen") == "v1"
    install("mouse-lung-nodules@v1")
    assert next_version("mouse-lung-nodules") == "v3"


def test_an_ignore_value_that_is_a_model_class_is_refused(store, tmp_path):
    from voxseg.bundle.cache import resolve_bundle

    plan = resolve_bundle("mouse-lung-nodules@v2").manifest.plan
    data = make_phantom("mouse-lung-ct", tmp_path / "d", cases=1, seed=2, size=48)
    spec = json.loads((data / "dataset.json").read_text())
    check_compatible(read_dataset(data), plan, "m")  # as generated: fine
    spec["labels"] = {"background": 0, "tumor": 1, "ignore": 2}
    (data / "dataset.json").write_text(json.dumps(spec))
    three = plan.replace(labels={"background": 0, "tumor": 1, "vessel": 2})  # a model with a class 2
    with pytest.raises(DatasetFormatError, match="ignore label 2 is one of"):
        check_compatible(read_dataset(data), three, "m")


def test_warm_up_ramps_the_scheduled_learning_rate_by_step():
    import torch

    from voxseg.training.config import TrainConfig
    from voxseg.training.loop import _warm_up

    cfg = TrainConfig(lr=0.1, warmup_steps=4, lr_schedule="constant")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    seen = []
    for step in range(6):
        _warm_up(cfg, step, opt, sched)
        seen.append(round(opt.param_groups[0]["lr"], 6))
    assert seen == [0.025, 0.05, 0.075, 0.1, 0.1, 0.1]


@pytest.mark.slow
def test_a_frozen_encoder_keeps_the_parents_encoder_weights(store, tmp_path):
    from voxseg.bundle.cache import resolve_bundle
    from voxseg.experiment.finetune import finetune

    data = make_phantom("mouse-lung-ct", tmp_path / "d", cases=1, seed=3, size=64)
    out = tmp_path / "new.zip"
    result = finetune(data, model="mouse-lung-nodules@v2", minutes=0.2, out=out, freeze_encoder=True,
                      overrides={"iterations_per_epoch": 3})  # fmt: skip
    assert result.held_out == () and result.before_dice is None and not result.installed
    parent, new = resolve_bundle("mouse-lung-nodules@v2"), resolve_bundle(out)
    old_w, new_w = parent.state_dict(0), new.state_dict(0)
    encoder = [k for k in old_w if k.startswith(("input_block.", "downsamples.", "bottleneck."))]
    decoder = [k for k in old_w if k.startswith("upsamples.")]
    assert encoder and all(np.array_equal(old_w[k].numpy(), new_w[k].numpy()) for k in encoder)
    assert any(not np.array_equal(old_w[k].numpy(), new_w[k].numpy()) for k in decoder)
    assert new.manifest.provenance["finetune"]["validation"]["note"] == "no held-out case"


@pytest.mark.slow
def test_a_training_work_folder_is_a_model_to_start_from(store, tmp_path):
    from tests.experiment.work_helpers import FAST, make_work
    from voxseg.bundle.cache import resolve_bundle
    from voxseg.experiment.finetune import finetune
    from voxseg.experiment.train import train_folds

    work = make_work(tmp_path / "run", cases=3, folds=2)
    train_folds(work, [0], config_overrides=FAST)
    data = tmp_path / "run" / "Dataset001_Tiny"
    result = finetune(data, model=work, minutes=0.2, holdout=0, overrides={"iterations_per_epoch": 2})
    assert result.installed and result.reference == "work@v2" and result.parent == "work@v1"
    parents = sorted((tmp_path / "cache" / "finetune" / "parents").glob("work-*.zip"))
    assert len(parents) == 1  # the work folder, packaged once
    new = resolve_bundle("work")  # -m NAME picks the new version
    assert new.manifest.version == "v2" and new.manifest.provenance["parent"].startswith("work@v1")
    again = finetune(data, model=work, minutes=0.2, holdout=0, overrides={"iterations_per_epoch": 2})
    assert again.reference == "work@v2"  # finished already: the same version, no new parent bundle
    assert sorted((tmp_path / "cache" / "finetune" / "parents").glob("work-*.zip")) == parents
