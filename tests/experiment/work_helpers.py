"""Hand-made work folders for training tests (a tiny plan, real preprocessing, real splits)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import write_tiny_dataset
from voxseg.dataset import read_dataset
from voxseg.dataset.splits import load_or_create_splits
from voxseg.experiment import WorkDir
from voxseg.planning import ConfigurationPlan, Normalization, Plan
from voxseg.preprocessing import preprocess_dataset

SPACING = (2.0, 0.8, 0.8)
TINY_NET = {
    "name": "unet",
    "kwargs": {
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 2,
        "channels": [4, 8],
        "strides": [2],
        "num_res_units": 0,
    },
}


def tiny_plan(*, training: dict | None = None) -> Plan:
    conf = ConfigurationPlan("3d", SPACING, (8, 16, 16), 2, TINY_NET, mirror_axes=(1, 2))
    return Plan(
        dataset_name="tiny",
        channel_names={0: "CT"},
        labels={"background": 0, "tumor": 1},
        normalization=(Normalization("zscore"),),
        configurations={"3d": conf},
        default_configuration="3d",
        training=training or {},
    )


def make_work(root: Path, *, cases: int = 4, folds: int = 2, training: dict | None = None) -> Path:
    """A work folder as `voxseg plan` leaves it: dataset.json copy, plan.json, splits.json, preprocessed/3d."""
    data = write_tiny_dataset(root / "Dataset001_Tiny", cases=cases)
    work = WorkDir(root / "work")
    work.root.mkdir(parents=True)
    spec = json.loads((data / "dataset.json").read_text())
    (work.dataset_path).write_text(json.dumps({**spec, "voxseg_source": str(data.resolve())}))
    plan = tiny_plan(training=training)
    plan.save(work.plan_path)
    ds = read_dataset(data)
    load_or_create_splits(work.splits_path, ds.case_ids, k=folds, seed=0)
    conf = plan.configuration("3d")
    preprocess_dataset(
        ds,
        work.preprocessed_dir("3d"),
        target_spacing=conf.target_spacing,
        normalization=plan.normalization,
        num_workers=1,
    )
    return work.root


FAST = {"epochs": 2, "iterations_per_epoch": 3, "augmentation": "light"}


def weights(path: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(path))
