"""Instance datasets ("instances": true): ids in the label files, a border target in training,
objects split back at prediction, object matching in evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from voxseg.dataset import DatasetSpec, DatasetWriter, read_dataset, verify_dataset
from voxseg.dataset.instances import border_target, read_label
from voxseg.errors import DatasetFormatError
from voxseg.io import Volume, read_image, write_image


def touching_disks(shape=(64, 64), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """An image and its instance ids: rows of disks of radius 6, neighbours touching."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    ids = np.zeros(shape, np.uint16)
    n = 0
    for cy in range(10, shape[0] - 8, 16):
        for cx in range(8 + int(rng.integers(0, 4)), shape[1] - 8, 11):  # 11 < 2 x 6: neighbours touch
            n += 1
            ids[((yy - cy) ** 2 + (xx - cx) ** 2 <= 36) & (ids == 0)] = n
    image = np.where(ids > 0, 100.0, 10.0) + rng.normal(0, 5, shape)
    return image.astype(np.float32), ids


def write_instance_dataset(root: Path, cases: int = 4) -> Path:
    spec = DatasetSpec(root.name, {0: "fluorescence"}, {"background": 0, "nucleus": 1}, extra={"instances": True})
    with DatasetWriter(root, spec) as writer:
        for k in range(cases):
            image, ids = touching_disks(seed=k)
            writer.add_case(f"cells_{k:03d}", [Volume(image, (1.0, 1.0))], Volume(ids, (1.0, 1.0)))
    return root


def test_spec_declares_instances_and_trains_three_classes(tmp_path):
    ds = read_dataset(write_instance_dataset(tmp_path / "Dataset001_Cells"))
    assert ds.spec.instances is True
    assert ds.spec.labels == {"background": 0, "nucleus": 1}
    assert ds.spec.target_labels == {"background": 0, "nucleus": 1, "nucleus_boundary": 2}
    raw = read_image(ds.training[0].label).array
    assert raw.max() > 2  # ids kept as they are on disk
    target = ds.read_label(ds.training[0]).array
    assert set(np.unique(target)) == {0, 1, 2}
    assert np.array_equal(target > 0, raw > 0)
    # every pair of touching objects is separated by boundary voxels: interiors never touch
    import cc3d

    interiors = cc3d.connected_components((target == 1).astype(np.uint8), connectivity=8)
    assert interiors.max() == len(np.unique(raw)) - 1


@pytest.mark.parametrize(
    ("extra", "labels", "message"),
    [
        ({"instances": "yes"}, {"background": 0, "nucleus": 1}, "must be true or false"),
        ({"instances": True}, {"background": 0, "a": 1, "b": 2}, "exactly two labels"),
        ({"instances": True}, {"background": 0, "nucleus": 1, "ignore": 2}, "ignore"),
    ],
)
def test_spec_refuses_bad_instance_declarations(tmp_path, extra, labels, message):
    data = {"channel_names": {"0": "x"}, "labels": labels, "file_ending": ".nii.gz", **extra}
    with pytest.raises(DatasetFormatError, match=message):
        DatasetSpec.from_json(data, tmp_path / "dataset.json")


def test_verify_accepts_ids_and_refuses_negative(tmp_path):
    root = write_instance_dataset(tmp_path / "Dataset001_Cells", cases=2)
    assert [p for p in verify_dataset(root, num_workers=1) if p.severity == "error"] == []
    label = root / "labelsTr" / "cells_000.nii.gz"
    vol = read_image(label)
    write_image(vol.with_array(vol.array.astype(np.int16) * -1), label)
    problems = [str(p) for p in verify_dataset(root, num_workers=1)]
    assert any("instance ids must be 0 (background) or positive" in p for p in problems)


def test_plan_records_instances_and_preprocessing_stores_the_border_target(tmp_path):
    from voxseg.experiment.plan import plan_experiment
    from voxseg.planning import Plan
    from voxseg.preprocessing import read_preprocessed

    data = write_instance_dataset(tmp_path / "Dataset001_Cells")
    work = tmp_path / "work"
    plan = plan_experiment(data, work, folds=2, num_workers=1)
    assert plan.instances and plan.num_classes == 3
    assert Plan.load(work / "plan.json").instances
    assert json.loads((work / "fingerprint.json").read_text())["instances"] is True
    conf = plan.configuration()
    assert any("instance labels" in n for n in conf.notes)
    stored = read_preprocessed(work / "preprocessed" / conf.name / "cells_000")
    assert set(np.unique(stored.label)) == {0, 1, 2}


def test_plans_of_class_datasets_do_not_change():
    from tests.experiment.work_helpers import tiny_plan
    from voxseg.planning import Plan

    plan = tiny_plan()
    assert "instances" not in plan.to_json() and not Plan.from_json(plan.to_json()).instances


def test_for_plan_ends_an_instance_plan_with_the_split():
    from tests.experiment.work_helpers import tiny_plan
    from voxseg.postprocessing import PostprocessingSpec, Step, for_plan

    classes = tiny_plan()
    cells = classes.replace(instances=True)
    spec = PostprocessingSpec(classes={1: [Step.of("fill_holes")]})
    assert for_plan(spec, classes) is spec
    ended = for_plan(spec, cells)
    assert [s.op for s in ended.final] == ["split_instances"] and ended.steps_for(1) == spec.steps_for(1)
    assert for_plan(ended, cells) == ended  # never twice
    replaced = for_plan(PostprocessingSpec(final=[Step.of("instances", min_size=5)]), cells)
    assert [s.to_json() for s in replaced.final] == [{"op": "split_instances", "min_size": 5}]


def test_split_of_the_border_target_gives_back_every_object():
    from voxseg.postprocessing.touching import split_instances

    _, ids = touching_disks()
    back = split_instances(border_target(ids), connectivity=8)
    assert back.max() == ids.max()
    # each object comes back whole: ids map one to one
    pairs = {(int(a), int(b)) for a, b in zip(ids[ids > 0], back[ids > 0], strict=True)}
    assert len(pairs) == ids.max()


def test_evaluate_matches_objects(tmp_path):
    from voxseg.evaluation import evaluate_folders

    root = write_instance_dataset(tmp_path / "Dataset001_Cells", cases=2)
    refs = root / "labelsTr"
    pred = tmp_path / "pred"
    pred.mkdir()
    for f in sorted(refs.glob("*.nii.gz")):
        vol = read_image(f)
        merged = np.where(vol.array > 0, 1, 0) if f.name.startswith("cells_000") else vol.array
        write_image(vol.with_array(merged.astype(np.uint16)), pred / f.name)
    report = json.loads(evaluate_folders(pred, refs, tmp_path / "eval", num_workers=1).read_text())
    found = report["instances"]
    per_case = {c["case"]: c["instances"] for c in report["cases"]}
    assert per_case["cells_001"]["f1"] == 1.0
    assert per_case["cells_000"]["tp"] == 0 and per_case["cells_000"]["fp"] == 1  # all merged: one big object
    assert 0 < found["f1"] < 1 and found["iou_threshold"] == 0.5
    assert report["summary"]["per_class"]["1"]["dice"]["mean"] == pytest.approx(1.0)  # same foreground
    plain = json.loads(evaluate_folders(pred, refs, tmp_path / "eval2", num_workers=1, instances=False).read_text())
    assert "instances" not in plain


def test_import_keeps_ids_and_declares_instances(tmp_path):
    from voxseg.dataset.importer import import_dataset
    from voxseg.errors import ConfigError

    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    for k in range(2):
        image, ids = touching_disks(seed=k)
        write_image(Volume(image, (1.0, 1.0)), src / "images" / f"c{k}.tif")
        write_image(Volume(ids, (1.0, 1.0)), src / "masks" / f"c{k}.tif")
    import_dataset(src, out=tmp_path / "ds", instances="nucleus")
    ds = read_dataset(tmp_path / "ds")
    assert ds.spec.instances and ds.spec.labels == {"background": 0, "nucleus": 1}
    assert read_label(ds.training[0].label, instances=False).array.max() > 2
    with pytest.raises(ConfigError, match="--instances"):
        import_dataset(src, out=tmp_path / "ds2", instances="nucleus", labels={"1": "x"})


@pytest.mark.slow
def test_trained_instance_model_predicts_one_id_per_object_and_exports_the_split(tmp_path):
    from voxseg.bundle import export_bundle, open_bundle
    from voxseg.experiment.crossval import crossval
    from voxseg.experiment.plan import plan_experiment
    from voxseg.experiment.train import train_folds
    from voxseg.inference.predictor import Predictor

    data = write_instance_dataset(tmp_path / "Dataset001_Cells")
    work = tmp_path / "work"
    plan_experiment(data, work, folds=2, num_workers=1)
    summaries = train_folds(work, [0], config_overrides={"epochs": 1, "iterations_per_epoch": 2})
    assert summaries[0]["status"] == "finished"
    objects = crossval(work, folds=[0])["instances"]  # the split's smallest object, chosen by object F1
    assert objects["candidates"][0]["min_size"] == 0 and len(objects["candidates"]) > 1
    assert [r["min_size"] for r in objects["candidates"] if r["chosen"]] == [objects["min_size"]]
    predictor = Predictor.from_work(work, tta=False)
    split = predictor.postprocessing.final[-1]
    assert split.op == "split_instances" and dict(split.params).get("min_size", 0) == objects["min_size"]
    image, _ = touching_disks(seed=9)
    labels = predictor.predict([Volume(image, (1.0, 1.0))]).labels
    assert labels.array.dtype.kind == "u" and labels.shape == image.shape
    bundle = open_bundle(export_bundle(work, tmp_path / "cells.zip", name="cells", version="v1", golden=False))
    assert bundle.manifest.task == "instances" and bundle.manifest.postprocessing.final[-1] == split
    assert bundle.manifest.plan.instances
