"""`voxseg plan DATA -o WORK`: exit codes, the summary table, refusals, --snapshots and --set."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_tiny_dataset
from voxseg.cli.main import main
from voxseg.experiment import WorkDir
from voxseg.planning import Plan


@pytest.mark.slow
def test_plan_command(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    work = tmp_path / "work"
    argv = ["plan", str(tiny_dataset), "-o", str(work), "--folds", "2", "-j", "1"]
    code = main([*argv, "--snapshots", "--set", "network.name=unet", "--set", "loss=dice_focal", "--config", "3d"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "3d *" in out and "unet" in out and "8-32 x3" in out and "channel 0 (CT): ct" in out
    plan = Plan.load(WorkDir(work).plan_path)
    assert tuple(plan.configurations) == ("3d",) and plan.training["loss"] == {"name": "dice_focal"}
    assert len(list((WorkDir(work).snapshots_dir / "3d").glob("*.png"))) == 3  # bare --snapshots: 3 cases
    # the same command again resumes (no-op); other settings are refused with exit 2
    assert main([*argv, "--snapshots", "--set", "network.name=unet", "--set", "loss=dice_focal", "-c", "3d"]) == 0
    assert main([*argv, "--seed", "4"]) == 2
    assert "already planned with other settings" in capsys.readouterr().err


def test_refused_dataset_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "data", cases=3)
    (data / "labelsTr" / "case_000.nii.gz").unlink()
    (data / "labelsTr" / "case_002.nii.gz").unlink()
    r = subprocess.run(
        [sys.executable, "-m", "voxseg", "plan", str(data), "-o", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("error")]
    assert any("case_000" in line for line in lines) and any("case_002" in line for line in lines)
    assert "Traceback" not in r.stderr and not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--config", "4d"], "--config '4d'"),
        (["--budget", "tpu"], "unknown budget"),
        (["--set", "colour=blue"], "unknown key 'colour'"),
        (["--set", "novalue"], "expected KEY=VALUE"),
    ],
)
def test_bad_options_exit_2(tiny_dataset: Path, tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    assert main(["plan", str(tiny_dataset), "-o", str(tmp_path / "w"), "--folds", "2", *extra]) == 2
    assert message in capsys.readouterr().err
