"""`voxseg train` and `voxseg crossval` as a user runs them (in-process, real work folders)."""

from __future__ import annotations

import json

import pytest

from tests.experiment.work_helpers import make_work
from voxseg.cli.main import main
from voxseg.experiment import WorkDir

QUICK = ["--epochs", "1", "--set", "iterations_per_epoch=2", "--set", "augmentation=light"]


@pytest.mark.slow
def test_train_then_crossval(tmp_path, capsys):
    work = str(make_work(tmp_path))
    assert main(["train", work, "--fold", "0", *QUICK, "--workers", "0"]) == 0
    out = capsys.readouterr()
    assert "val Dice" in out.out and "fold" in out.out
    run = json.loads((WorkDir(work).run_dir("3d", 0) / "run.json").read_text())
    assert run["config"]["epochs"] == 1 and run["config"]["iterations_per_epoch"] == 2

    assert main(["crossval", work]) == 1  # fold 1 is missing
    err = capsys.readouterr().err
    assert "fold 1 is not trained" in err and "Traceback" not in err

    assert main(["train", work, "--fold", "1", *QUICK]) == 0
    capsys.readouterr()
    assert main(["crossval", work, "--config", "3d"]) == 0
    out = capsys.readouterr().out
    assert "tumor" in out and "mean" in out and "postprocessing" in out
    assert WorkDir(work).postprocessing_path("3d").is_file()


def test_usage_errors_are_one_line(tmp_path, capsys):
    work = str(make_work(tmp_path))
    assert main(["train", work, "--fold", "x"]) == 2
    assert main(["train", work, "--fold", "0", "--set", "learning_rate=1"]) == 2
    assert main(["train", work, "--device", "tpu"]) == 2
    assert main(["train", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 4 and "Traceback" not in err
    assert "not a voxseg work folder" in err
    assert not (WorkDir(work).root / "runs").exists()


def test_a_fold_being_trained_is_refused_naming_the_pid(tmp_path, capsys):
    import os
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    work = str(make_work(tmp_path))
    run_dir = WorkDir(work).run_dir("3d", 0)
    code = f"""
        import time
        from voxseg._procs import hold_folder
        with hold_folder({str(run_dir)!r}, what="x"):
            print("held", flush=True)
            time.sleep(120)
        """
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    other = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert other.stdout.readline().strip() == "held"
        assert main(["train", work, "--fold", "0", *QUICK]) == 1
    finally:
        other.kill()
        other.wait()
    err = capsys.readouterr().err
    assert f"training of fold 0 is running there already in PID {other.pid}" in err and "Traceback" not in err
    assert not (run_dir / "run.json").exists()
