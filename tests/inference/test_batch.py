"""predict_folder / predict_case on real files: outputs, manifest, resume, bad files, geometry."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tests.inference.helpers import make_plan, sphere, threshold_spec, write_work
from voxseg.errors import InputImageError
from voxseg.inference.batch import CaseInput, collect_inputs, predict_case, predict_folder
from voxseg.inference.predictor import Predictor
from voxseg.io import Volume, read_image, write_image

SPACING = (2.5, 0.7, 0.9)
ORIGIN = (-40.0, 12.5, 7.0)
C, S = np.cos(0.5), np.sin(0.5)
DIRECTION = ((C, 0.0, S), (0.0, 1.0, 0.0), (-S, 0.0, C))


def image_with_balls(seed: int, shape=(12, 28, 24)) -> tuple[Volume, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = sphere(shape, (6, 8, 8), 5.0, SPACING) | sphere(shape, (6, 20, 16), 3.0, SPACING)
    arr = truth.astype(np.float32) * 100 + rng.normal(0, 3, shape).astype(np.float32)
    return Volume(arr, SPACING, ORIGIN, DIRECTION), truth


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Predictor:
    # threshold at 50 on raw intensities: the known objects are exactly the prediction
    plan = make_plan(target_spacing=SPACING, network=threshold_spec(3, 1, 2, centers=[0.0, 100.0]))
    work = write_work(tmp_path_factory.mktemp("work"), plan)
    return Predictor.from_work(work, precision="fp32", tta=False)


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "in"
    truths = {}
    for k in range(3):
        vol, truth = image_with_balls(k)
        write_image(vol, src / f"case{k}_0000.nii.gz")
        truths[f"case{k}"] = truth
    return src, truths


def test_written_prediction_overlays_the_input_exactly(tmp_path, folder, predictor):
    src, truths = folder
    report = predict_folder(src, tmp_path / "out", predictor)
    assert report.ok and report.done == ("case0", "case1", "case2")
    for case, truth in truths.items():
        image = read_image(src / f"{case}_0000.nii.gz")
        pred = read_image(tmp_path / "out" / f"{case}.nii.gz")
        assert pred.shape == image.shape
        assert not pred.geometry.differences(image.geometry)
        np.testing.assert_allclose(pred.direction, DIRECTION, atol=1e-5)
        np.testing.assert_array_equal(pred.array > 0, truth)  # the known objects land on the same voxels
    assert report.objects == {"case0": 2, "case1": 2, "case2": 2}


def test_manifest_records_each_case(tmp_path, folder, predictor):
    src, _ = folder
    out = tmp_path / "out"
    predict_folder(src, out, predictor, instances=True)
    manifest = json.loads((out / "predictions.json").read_text())
    assert manifest["schema_version"] == 1 and manifest["model"] == predictor.model_id
    assert manifest["settings"]["tta"] is False and manifest["settings"]["instances"] is True
    entry = manifest["cases"]["case1"]
    assert entry["status"] == "ok" and entry["error"] is None and entry["objects"] == 2
    assert entry["inputs"][0]["path"].endswith("case1_0000.nii.gz") and len(entry["inputs"][0]["sha256"]) == 64
    assert entry["output"].endswith("case1.nii.gz")
    assert {"preprocess", "network", "restore", "postprocess", "read", "write", "total"} <= set(entry["seconds"])


def test_resume_skips_finished_cases_and_redoes_changed_ones(tmp_path, folder, predictor):
    src, _ = folder
    out = tmp_path / "out"
    first = predict_folder(src, out, predictor)
    assert len(first.done) == 3
    stamp = (out / "case0.nii.gz").stat().st_mtime_ns
    second = predict_folder(src, out, predictor)
    assert second.done == () and second.skipped == ("case0", "case1", "case2")
    assert (out / "case0.nii.gz").stat().st_mtime_ns == stamp
    vol, _ = image_with_balls(7)
    write_image(vol, src / "case1_0000.nii.gz")  # modified input
    (out / "case2.nii.gz").unlink()  # lost output
    third = predict_folder(src, out, predictor)
    assert third.done == ("case1", "case2") and third.skipped == ("case0",)
    fourth = predict_folder(src, out, predictor, min_size=5)  # other settings: redo everything
    assert len(fourth.done) == 3
    fifth = predict_folder(src, out, predictor, min_size=5, resume=False)
    assert len(fifth.done) == 3


def test_a_corrupt_file_is_reported_and_the_rest_done(tmp_path, folder, predictor):
    src, _ = folder
    bad = src / "case1_0000.nii.gz"
    bad.write_bytes(bad.read_bytes()[:-300])
    out = tmp_path / "out"
    report = predict_folder(src, out, predictor)
    assert not report.ok and report.done == ("case0", "case2")
    assert report.failed[0][0] == "case1" and "truncated" in report.failed[0][1]
    assert not (out / "case1.nii.gz").exists()
    entry = json.loads((out / "predictions.json").read_text())["cases"]["case1"]
    assert entry["status"] == "failed" and "\n" not in entry["error"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_instances_table_and_probabilities(tmp_path, predictor):
    vol, truth = image_with_balls(3)
    write_image(vol, tmp_path / "img.nii.gz")
    case = collect_inputs(tmp_path / "img.nii.gz")[0]
    assert case == CaseInput("img", (tmp_path / "img.nii.gz",))
    entry = predict_case(case, tmp_path / "o" / "img.nii.gz", predictor, instances=True, probabilities=True)
    inst = read_image(tmp_path / "o" / "img.nii.gz").array
    assert entry["objects"] == 2 and inst.max() == 2
    assert np.count_nonzero(inst == 1) > np.count_nonzero(inst == 2)  # ids by size
    rows = list(csv.DictReader((tmp_path / "o" / "img_objects.csv").open()))
    assert [int(r["id"]) for r in rows] == [1, 2] and rows[0]["class"] == "1"
    assert float(rows[0]["volume_mm3"]) == pytest.approx(np.count_nonzero(inst == 1) * np.prod(SPACING))
    assert 90 < float(rows[0]["mean_intensity"]) < 110 and float(rows[0]["sphericity"]) > 0.5
    assert {"centroid_z", "world_z_mm", "bbox_x_max", "max_intensity"} <= set(rows[0])
    with np.load(tmp_path / "o" / "img_probabilities.npz") as npz:
        assert npz["probabilities"].dtype == np.float16 and npz["probabilities"].shape == (2, *truth.shape)
        np.testing.assert_allclose(npz["spacing"], SPACING)
    small = predict_case(case, tmp_path / "o2" / "img.nii.gz", predictor, instances=True, min_volume=200.0)
    assert small["objects"] == 1


def test_multichannel_folder_list_file_and_masks(tmp_path):
    plan = make_plan(channels=("T1", "T2"), target_spacing=SPACING, network=threshold_spec(3, 2, 2, channel=1))
    predictor = Predictor.from_work(write_work(tmp_path / "work", plan), precision="fp32", tta=False)
    src, masks = tmp_path / "in", tmp_path / "masks"
    for k in range(2):
        vol, truth = image_with_balls(k)
        write_image(vol.with_array(np.zeros(vol.shape, np.float32)), src / f"c{k}_0000.nii.gz")
        write_image(vol.with_array(truth.astype(np.float32)), src / f"c{k}_0001.nii.gz")
    keep = np.zeros(vol.shape, np.uint8)
    keep[:, :14] = 1
    write_image(vol.with_array(keep), masks / "c0.nii.gz")
    report = predict_folder(src, tmp_path / "out", predictor, mask_dir=masks)
    assert report.ok and report.objects == {"c0": 1, "c1": 2}
    listing = tmp_path / "cases.csv"
    listing.write_text("t1,t2\n# a comment\nin/c1_0000.nii.gz,in/c1_0001.nii.gz\n")
    assert [c.case_id for c in collect_inputs(listing)] == ["c1"]
    assert predict_folder(listing, tmp_path / "out2", predictor).done == ("c1",)
    single = collect_inputs(src / "c0_0000.nii.gz")[0]
    assert len(single.images) == 2  # the _0001 sibling comes along


def test_bad_inputs(tmp_path, predictor):
    with pytest.raises(InputImageError, match="input not found"):
        collect_inputs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputImageError, match="no image files"):
        predict_folder(tmp_path / "empty", tmp_path / "out", predictor)
    vol, _ = image_with_balls(0)
    write_image(vol, tmp_path / "in" / "a.nii.gz")
    (tmp_path / "blocker").write_text("a file")
    with pytest.raises(InputImageError, match="is a file"):
        predict_folder(tmp_path / "in", tmp_path / "blocker" / "out", predictor)
    case = collect_inputs(tmp_path / "in" / "a.nii.gz")[0]
    (tmp_path / "outdir").mkdir()
    with pytest.raises(InputImageError, match="output path is a folder"):
        predict_case(case, tmp_path / "outdir", predictor)
