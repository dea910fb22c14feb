"""evaluate_folders: pairing by name, labels from dataset.json, reports, clear errors."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from voxseg.errors import InputImageError, VoxsegError
from voxseg.evaluation import dice, evaluate_case, evaluate_folders, hd95
from voxseg.io import Volume, write_image

from ..postprocessing.helpers import ball

SPACING = (2.0, 0.75, 0.75)
ORIGIN = (10.0, -5.0, 3.0)
SHAPE = (12, 32, 32)


def _pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = np.zeros(SHAPE, np.uint8)
    ref[ball(SHAPE, (6, 10 + rng.integers(0, 4), 12), 6, SPACING)] = 1
    ref[ball(SHAPE, (6, 24, 22), 4, SPACING)] = 2
    pred = np.roll(ref, int(rng.integers(0, 3)), axis=2)
    return pred, ref


def _write(
    root: Path, cases: dict[str, tuple[np.ndarray, np.ndarray]], *, dataset_json: bool = True
) -> tuple[Path, Path]:
    pred_dir, gt_dir = root / "pred", root / "raw" / "labelsTr"
    for case, (pred, ref) in cases.items():
        write_image(Volume(pred, SPACING, ORIGIN), pred_dir / f"{case}.nii.gz")
        write_image(Volume(ref, SPACING, ORIGIN), gt_dir / f"{case}.nii.gz")
    if dataset_json:
        labels = {"background": 0, "lesion": 1, "organ": 2, "ignore": 3}
        spec = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": len(cases), "file_ending": ".nii.gz"}
        (root / "raw" / "dataset.json").write_text(json.dumps(spec))
    (pred_dir / "predictions.json").write_text("{}")  # other files are ignored
    return pred_dir, gt_dir


def test_reports_per_case_and_summary(tmp_path):
    cases = {f"case_{i:03d}": _pair(i) for i in range(3)}
    empty_pred = np.zeros(SHAPE, np.uint8)
    cases["case_003"] = (empty_pred, cases["case_000"][1])  # class 1 and 2 missed: HD95 inf
    pred_dir, gt_dir = _write(tmp_path, cases)
    path = evaluate_folders(pred_dir, gt_dir, tmp_path / "eval", num_workers=2, tolerance_mm=1.0)
    assert path == tmp_path / "eval" / "evaluation.json"
    report = json.loads(path.read_text())
    assert report["labels"] == [1, 2] and report["ignore_label"] == 3 and report["missing"] == []
    assert [c["case"] for c in report["cases"]] == sorted(cases)
    pred, ref = cases["case_001"]
    row = report["cases"][1]["classes"]["1"]
    assert row["dice"] == pytest.approx(dice(pred, ref)[1])
    assert row["hd95"] == pytest.approx(hd95(pred, ref, spacing=SPACING)[1], rel=1e-6)
    assert row["ref_voxels"] == int(np.count_nonzero(ref == 1))
    assert report["cases"][3]["classes"]["1"]["hd95"] is None  # inf is written as null in JSON
    summary = report["summary"]["per_class"]["1"]
    dices = [c["classes"]["1"]["dice"] for c in report["cases"]]
    assert summary["dice"]["mean"] == pytest.approx(np.mean(dices)) and summary["dice"]["n"] == 4
    assert summary["dice"]["std"] == pytest.approx(np.std(dices))
    assert summary["hd95"]["n"] == 3 and summary["hd95"]["n_infinite"] == 1
    assert report["summary"]["foreground_mean"]["dice"] == pytest.approx(
        np.mean([summary["dice"]["mean"], report["summary"]["per_class"]["2"]["dice"]["mean"]])
    )
    with (tmp_path / "eval" / "evaluation_cases.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["case", "class", "dice", "hd95", "surface_dice", "pred_voxels", "ref_voxels"]
    assert len(rows) == 8 and rows[6]["case"] == "case_003" and math.isinf(float(rows[6]["hd95"]))
    with (tmp_path / "eval" / "evaluation_summary.csv").open(newline="") as fh:
        summary_rows = list(csv.DictReader(fh))
    assert {(r["class"], r["metric"]) for r in summary_rows} == {
        (c, m) for c in ("1", "2") for m in ("dice", "hd95", "surface_dice")
    }
    leftovers = [p.name for p in (tmp_path / "eval").iterdir()]
    assert sorted(leftovers) == ["evaluation.json", "evaluation_cases.csv", "evaluation_summary.csv"]


def test_labels_found_in_files_without_dataset_json(tmp_path):
    a_pred, a_ref = _pair(0)
    b_ref = np.zeros(SHAPE, np.uint8)
    b_ref[2:5, 2:5, 2:5] = 1
    pred_dir, gt_dir = _write(tmp_path, {"a": (a_pred, a_ref), "b": (b_ref, b_ref)}, dataset_json=False)
    report = json.loads(evaluate_folders(pred_dir, gt_dir, tmp_path / "out", num_workers=0).read_text())
    assert report["labels"] == [1, 2] and report["ignore_label"] is None
    b2 = report["cases"][1]["classes"]["2"]  # class 2 absent from both files of case b
    assert (b2["dice"], b2["hd95"], b2["pred_voxels"]) == (1.0, 0.0, 0)
    only1 = json.loads(evaluate_folders(pred_dir, gt_dir, tmp_path / "o1", labels=[1]).read_text())
    assert only1["labels"] == [1] and "surface_dice" not in only1["cases"][0]["classes"]["1"]


def test_missing_extra_and_mismatched_files(tmp_path):
    cases = {"a": _pair(0), "b": _pair(1)}
    pred_dir, gt_dir = _write(tmp_path, cases)
    (pred_dir / "b.nii.gz").unlink()
    with pytest.raises(VoxsegError, match=r"1 reference case\(s\) have no prediction: b"):
        evaluate_folders(pred_dir, gt_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    report = json.loads(evaluate_folders(pred_dir, gt_dir, tmp_path / "out", allow_missing=True).read_text())
    assert report["missing"] == ["b"] and len(report["cases"]) == 1
    write_image(Volume(cases["b"][0], SPACING, ORIGIN), pred_dir / "b.nii.gz")
    write_image(Volume(cases["b"][0], SPACING, ORIGIN), pred_dir / "zz.nii.gz")
    with pytest.raises(VoxsegError, match=r"without a reference.*zz"):
        evaluate_folders(pred_dir, gt_dir, tmp_path / "out")
    (pred_dir / "zz.nii.gz").unlink()
    write_image(Volume(cases["b"][0], (2.0, 0.75, 0.8), ORIGIN), pred_dir / "b.nii.gz")
    with pytest.raises(InputImageError, match=r"b\.nii\.gz: geometry differs from the reference b\.nii\.gz: spacing"):
        evaluate_folders(pred_dir, gt_dir, tmp_path / "out")
    write_image(Volume(cases["b"][0][:-1], SPACING, ORIGIN), pred_dir / "b.nii.gz")
    with pytest.raises(InputImageError, match="shape"):
        evaluate_folders(pred_dir, gt_dir, tmp_path / "out", num_workers=2)
    with pytest.raises(InputImageError, match="folder not found"):
        evaluate_folders(tmp_path / "nope", gt_dir, tmp_path / "out")


def test_evaluate_case_in_memory():
    pred, ref = _pair(2)
    ref_with_ignore = ref.copy()
    ref_with_ignore[0] = 3
    out = evaluate_case(Volume(pred, SPACING), Volume(ref_with_ignore, SPACING), labels=[1, 2], ignore_label=3)
    assert set(out) == {1, 2} and set(out[1]) == {"dice", "hd95", "pred_voxels", "ref_voxels"}
    assert out[2]["hd95"] == pytest.approx(hd95(pred, ref_with_ignore, spacing=SPACING)[2])
