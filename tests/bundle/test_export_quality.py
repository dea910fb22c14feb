"""``voxseg export`` warns about a model that has learnt little and ``--min-dice`` refuses it."""

from __future__ import annotations

import json

from voxseg.cli.main import main
from voxseg.experiment import WorkDir
from voxseg.io import write_json_atomic

from .conftest import make_work


def _weak(work: WorkDir) -> None:
    """Fold 0 trained one epoch to a validation Dice of 0.1; the CV mean Dice is 0.12."""
    run = work.run_dir("3d", 0) / "run.json"
    write_json_atomic(run, {**json.loads(run.read_text()), "epoch": 1, "val_dice": 0.1})
    summary = work.crossval_dir("3d") / "summary.json"
    write_json_atomic(summary, {**json.loads(summary.read_text()), "mean_dice": 0.12})


def test_export_warns_about_a_weak_model_and_min_dice_refuses_it(tmp_path, capsys):
    work = WorkDir(make_work(tmp_path / "WORK"))
    _weak(work)
    out = tmp_path / "weak.zip"
    args = ["export", str(work.root), "-o", str(out), "--name", "weak", "--version", "v1"]
    assert main([*args, "--min-dice", "0.5"]) == 1
    err = capsys.readouterr().err
    assert "mean Dice is 0.1200, under --min-dice 0.5; not exported" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    assert not out.exists()

    assert main(args) == 0  # without --min-dice: exported, with warnings
    printed = capsys.readouterr()
    warned = " ".join(printed.err.split())
    assert "fold 0 trained only 1 epoch(s)" in warned and "fold 0 validation Dice 0.1000 is low" in warned
    assert "cross-validation mean Dice 0.1200 is low" in warned
    assert out.is_file() and f"next: voxseg predict -m {out} -i INPUT -o OUTPUT" in printed.out


def test_min_dice_needs_a_crossval_summary(tmp_path, capsys):
    work = WorkDir(make_work(tmp_path / "WORK"))
    (work.crossval_dir("3d") / "summary.json").unlink()
    out = tmp_path / "m.zip"
    assert main(["export", str(work.root), "-o", str(out), "--name", "m", "--version", "v1", "--min-dice", "0.5"]) == 1
    assert "is unknown (run `voxseg crossval` first)" in capsys.readouterr().err
    good = WorkDir(make_work(tmp_path / "GOOD"))  # CV Dice 0.8125 over --min-dice 0.5: exported
    assert main(["export", str(good.root), "-o", str(out), "--name", "m", "--version", "v1", "--min-dice", "0.5"]) == 0
