"""A mean that leaves cases out (HD95 of an empty prediction) says how many, in the table and the reports."""

from __future__ import annotations

import csv
import json

import numpy as np

from voxseg.cli.main import main

from .test_folders import _pair, _write


def test_hd95_mean_says_how_many_cases_are_undefined(tmp_path, capsys):
    cases = {f"case_{k}": _pair(k) for k in range(3)}
    for case in ("case_1", "case_2"):  # the model found no lesion (label 1) in two cases
        pred, ref = cases[case]
        cases[case] = (np.where(pred == 1, 0, pred).astype(np.uint8), ref)
    pred_dir, gt_dir = _write(tmp_path, cases)
    assert main(["evaluate", str(pred_dir), str(gt_dir), "-o", str(tmp_path / "out")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "hd95" in out and "mm (mean of 1 case; 2 undefined: empty prediction or reference)" in out
    report = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    lesion = report["summary"]["per_class"]["1"]["hd95"]
    assert lesion["n"] == 1 and lesion["n_infinite"] == 2
    assert lesion["note"] == "mean of 1 case; 2 undefined: empty prediction or reference"
    assert report["summary"]["per_class"]["2"]["hd95"]["note"] == ""  # every case counts: nothing to say
    with (tmp_path / "out" / "evaluation_summary.csv").open() as fh:
        rows = {(r["class"], r["metric"]): r for r in csv.DictReader(fh)}
    assert rows[("1", "hd95")]["note"] == lesion["note"] and rows[("1", "hd95")]["n_infinite"] == "2"
