"""`voxseg finetune` as a user runs it: the built-in mouse-lung-nodules model fine-tuned on phantoms."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from voxseg.cli.main import main
from voxseg.dataset.phantoms import make_phantom

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--set", "iterations_per_epoch=3", "--set", "augmentation=light"]


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """A private model store and cache (the built-in models install from the package)."""
    monkeypatch.setenv("VOXSEG_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("VOXSEG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "models"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _data(tmp_path: Path, cases: int = 3) -> Path:
    return make_phantom("mouse-lung-ct", tmp_path / "data", cases=cases, seed=7, size=64)


@pytest.mark.slow
def test_finetune_installs_the_next_version_which_records_its_parent_and_predicts(tmp_path, store, capsys):
    from voxseg.bundle.cache import resolve_bundle

    data = _data(tmp_path)
    parent = resolve_bundle("mouse-lung-nodules@v2")
    assert main(["finetune", str(data), "-m", "mouse-lung-nodules", "--minutes", "0.3", *QUICK]) == 0
    out = capsys.readouterr().out
    assert "mouse-lung-nodules@v3" in out and "next: voxseg predict" in out
    new = resolve_bundle("mouse-lung-nodules")  # NAME picks the newest: the local v3 over the index's v2
    assert new.manifest.reference == "mouse-lung-nodules@v3"
    prov = new.manifest.provenance
    assert prov["parent"] == "mouse-lung-nodules@v2"
    assert prov["parent_model"] == {"name": "mouse-lung-nodules", "version": "v2", "sha256": parent.sha256}
    cases = prov["finetune"]["cases"]
    assert sorted(cases) == ["mouse_lung_ct_000", "mouse_lung_ct_001", "mouse_lung_ct_002"]
    assert cases["mouse_lung_ct_001"]["label"] == _sha(data / "labelsTr" / "mouse_lung_ct_001.nii.gz")
    assert cases["mouse_lung_ct_001"]["images"] == [_sha(data / "imagesTr" / "mouse_lung_ct_001_0000.nii.gz")]
    val = prov["finetune"]["validation"]
    assert val["held_out"] == ["mouse_lung_ct_002"]
    assert isinstance(val["before"], float) and isinstance(val["after"], float)
    assert new.manifest.plan.configuration().network == parent.manifest.plan.configuration().network  # plan kept
    image = data / "imagesTr" / "mouse_lung_ct_000_0000.nii.gz"
    pred = tmp_path / "pred.nii.gz"
    assert main(["predict", "-i", str(image), "-o", str(pred), "-m", "mouse-lung-nodules", "--no-tta"]) == 0
    assert pred.is_file()


def _one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_incompatible_datasets_are_refused_in_one_line(tmp_path, store, capsys):
    flat = make_phantom("pet-mip", tmp_path / "mip", cases=2, seed=1, size=(64, 32))  # 2D, one channel
    assert main(["finetune", str(flat), "-m", "mouse-lung-nodules", "--minutes", "0.1"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "2D image" in line and "imagesTr" in line and "segments 3D images" in line
    data = _data(tmp_path, cases=1)
    spec = json.loads((data / "dataset.json").read_text())
    spec["labels"] = {"background": 0, "vessel": 1}
    (data / "dataset.json").write_text(json.dumps(spec))
    assert main(["finetune", str(data), "-m", "mouse-lung-nodules", "--minutes", "0.1"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "dataset.json" in line and "vessel=1" in line and "tumor=1" in line


def _voxseg(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "voxseg", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_a_killed_finetune_resumes_when_run_again(tmp_path):
    data = _data(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "VOXSEG_MODELS": str(tmp_path / "models"),
           "VOXSEG_CACHE": str(tmp_path / "cache")}  # fmt: skip
    work, new = tmp_path / "work", tmp_path / "new.zip"
    args = ["finetune", str(data), "-m", "mouse-lung-nodules", "--minutes", "0.6", "-o", str(new), "--work", str(work)]
    args += ["--set", "iterations_per_epoch=2", "--set", "augmentation=light"]
    proc = _voxseg(*args, env=env)
    state = work / "runs" / "3d" / "fold_0" / "checkpoint" / "state.json"
    deadline = time.monotonic() + 240
    while not state.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    time.sleep(0.5)  # a moment into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    killed = json.loads(state.read_text())
    assert not new.exists()
    again = _voxseg(*args, env=env)
    out, err = again.communicate(timeout=240)
    assert again.returncode == 0, err[-3000:]
    run = json.loads((work / "runs" / "3d" / "fold_0" / "run.json").read_text())
    assert run["history"][: killed["epoch"]] == killed["history"]  # the epochs before the kill were kept
    assert run["epoch"] > killed["epoch"] or run["status"] == "finished"
    assert new.is_file() and "mouse-lung-nodules@v3" in out
