"""``voxseg dataset extract-slices / crop / pseudo-labels`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tests.dataset.sparse_helpers import sparse_cord
from voxseg.cli.main import main
from voxseg.dataset import read_dataset
from voxseg.io import read_image, write_image


def test_extract_slices_crop_pseudo_labels_chain(tmp_path, capsys):
    cord = sparse_cord(tmp_path / "cord")
    assert main(["dataset", "extract-slices", str(cord), str(tmp_path / "cord2d")]) == 0
    assert "wrote 6 slices of 2 cases" in capsys.readouterr().out
    assert len(read_dataset(tmp_path / "cord2d").case_ids) == 6
    assert main(["dataset", "extract-slices", str(cord), str(tmp_path / "all"), "--all", "--axis", "0"]) == 0
    assert len(read_dataset(tmp_path / "all").case_ids) == 2 * 24

    pred = tmp_path / "pred"
    pred.mkdir()
    for case in read_dataset(cord).training:
        img = read_image(case.images[0])
        write_image(img.with_array(np.ones(img.shape, np.uint8)), pred / f"{case.case_id}.nii.gz")
    assert main(["dataset", "pseudo-labels", str(cord), str(pred), str(tmp_path / "dense")]) == 0
    out = capsys.readouterr().out
    assert "mouse_spinal_cord_000" in out and "3072" in out  # 3 annotated 32x32 slices kept
    assert main(["dataset", "pseudo-labels", str(cord), str(pred), str(tmp_path / "best"), "--min-dice", "0.99"]) == 2
    assert "nothing written" in capsys.readouterr().err
    assert "ignore" not in read_dataset(tmp_path / "dense").spec.labels

    args = ["dataset", "crop", str(tmp_path / "dense"), str(tmp_path / "crop"), "--to-label", "--margin", "0.1mm"]
    assert main(args) == 0
    record = json.loads((tmp_path / "crop" / "crop.json").read_text())
    assert record["margin"] == "0.1mm" and len(record["cases"]) == 2
    assert main(["dataset", "crop", str(cord), str(tmp_path / "ends"), "--box", "2:-2,:,:"]) == 0
    assert read_image(read_dataset(tmp_path / "ends").training[0].label).shape == (20, 32, 32)


def test_errors_are_one_line(tmp_path, capsys):
    cord = sparse_cord(tmp_path / "cord", cases=1)
    r = subprocess.run(
        [sys.executable, "-m", "voxseg", "dataset", "extract-slices", str(cord), str(cord)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "outside the input" in r.stderr
    assert main(["dataset", "crop", str(cord), str(tmp_path / "c"), "--box", "10:50,:"]) == 2
    assert "3D image" in capsys.readouterr().err
    assert main(["dataset", "pseudo-labels", str(cord), str(tmp_path / "missing"), str(tmp_path / "p")]) == 1
    assert "predictions folder not found" in capsys.readouterr().err
