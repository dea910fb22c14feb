"""Fault injection: ``kill -9`` of voxseg commands at random moments, then a rerun or ``--resume``.

Real subprocesses of the ``voxseg`` CLI, real signals; the processes a command started are found
through /proc (its descendants just before the kill) and must all be gone shortly after it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_tiny_dataset
from tests.experiment.work_helpers import make_work, tiny_plan, weights
from voxseg.experiment import WorkDir
from voxseg.training.checkpoint import latest_checkpoint, recover_checkpoint

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, sends POSIX signals"),
]

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
SEEDS = [0, 1, 2]
QUICK = ["--set", "iterations_per_epoch=2", "--set", "augmentation=light"]


def voxseg(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "voxseg", *map(str, args)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def finish(proc: subprocess.Popen, timeout: float = 280) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def run_voxseg(*args: str, timeout: float = 280) -> str:
    code, text = finish(voxseg(*args), timeout)
    assert code == 0, text[-3000:]
    return text


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # [state, ppid, ...]


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"  # a zombie is dead, just not reaped


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def kill_tree(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> set[int]:
    """Send ``sig`` to ``proc`` only; return the processes it had started (all must end with it)."""
    started = descendants(proc.pid)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    return started


def survivors(pids: set[int], timeout: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return sorted(p for p in pids if alive(p))


def wait_for(condition, proc: subprocess.Popen, timeout: float = 240.0, step: float = 0.02) -> bool:
    """Poll ``condition()`` until true (True) or ``proc`` exits first (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(step)
    raise AssertionError("timed out waiting")


# --- voxseg plan ---------------------------------------------------------------------------------


def _plan_files(work: Path) -> dict[str, object]:
    """What an uninterrupted plan leaves: the JSON artifacts and every preprocessed case file."""
    out: dict[str, object] = {}
    for name in ("plan.json", "splits.json", "fingerprint.json", "dataset.json"):
        out[name] = json.loads((work / name).read_text())
    for path in sorted((work / "preprocessed").rglob("*")):
        if path.is_file():
            rel = str(path.relative_to(work))
            out[rel] = json.loads(path.read_text()) if path.suffix == ".json" else path.read_bytes()
    return out


@pytest.fixture(scope="module")
def plan_reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("plan")
    data = write_tiny_dataset(root / "Dataset001_Tiny", cases=8)
    run_voxseg("plan", data, "-o", root / "ref", "--config", "3d", "--folds", "2", "-j", "2")
    return data, _plan_files(root / "ref")


@pytest.mark.parametrize("seed", SEEDS)
def test_killed_plan_leaves_no_worker_and_a_rerun_gives_the_same_plan(tmp_path, plan_reference, seed):
    data, reference = plan_reference
    work = tmp_path / "work"
    proc = voxseg("plan", data, "-o", work, "--config", "3d", "--folds", "2", "-j", "2")
    # a random moment once the preprocessing workers run
    assert wait_for(lambda: len(descendants(proc.pid)) >= 2, proc), "plan ended before its workers started"
    time.sleep(random.Random(seed).uniform(0.0, 1.5))
    workers = kill_tree(proc)
    assert workers, "no worker process was running at the kill"
    assert survivors(workers) == [], "preprocessing workers outlived the killed `voxseg plan`"
    run_voxseg("plan", data, "-o", work, "--config", "3d", "--folds", "2", "-j", "2")
    again = _plan_files(work)
    assert again.keys() == reference.keys()
    for name, value in reference.items():
        if name != "dataset.json":  # holds the work folder's own settings only; same source
            assert again[name] == value, name


# --- voxseg train --------------------------------------------------------------------------------

EPOCHS = 4


@pytest.fixture(scope="module")
def train_reference(tmp_path_factory):
    from voxseg.experiment.train import train_fold

    work = make_work(tmp_path_factory.mktemp("train"))
    fast = {"epochs": EPOCHS, "iterations_per_epoch": 2, "augmentation": "light"}
    train_fold(work, 0, config_overrides=fast, validate=False)
    return weights(WorkDir(work).checkpoint_dir("3d", 0) / "model.safetensors")


def _checkpoint_epoch(ckpt: Path) -> int:
    folder = latest_checkpoint(ckpt)
    if folder is None:
        return 0
    try:
        return int(json.loads((folder / "state.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0  # replaced while read


@pytest.mark.parametrize("seed", SEEDS)
def test_killed_training_resumes_from_its_last_good_checkpoint(tmp_path, train_reference, seed):
    work = make_work(tmp_path)
    ckpt = WorkDir(work).checkpoint_dir("3d", 0)
    args = ["train", work, "--fold", "0", "--epochs", EPOCHS, *QUICK, "--workers", "1"]
    proc = voxseg(*args)
    seen = 0

    def first_epoch_saved() -> bool:
        nonlocal seen
        seen = max(seen, _checkpoint_epoch(ckpt))
        return seen >= 1

    assert wait_for(first_epoch_saved, proc)
    # random delays land in later epochs, in checkpoint writes (the epochs are short) or in validation
    end = time.monotonic() + random.Random(seed).uniform(0.0, 2.0)
    while time.monotonic() < end and proc.poll() is None:
        seen = max(seen, _checkpoint_epoch(ckpt))
    started = kill_tree(proc)
    assert survivors(started) == [], "DataLoader workers outlived the killed `voxseg train`"
    assert _checkpoint_epoch(ckpt) >= seen >= 1  # the last good checkpoint survived the kill
    text = run_voxseg(*args, "--resume")
    assert "starting from scratch" not in text
    run = json.loads((WorkDir(work).run_dir("3d", 0) / "run.json").read_text())
    assert run["status"] == "finished" and run["epoch"] == EPOCHS and len(run["history"]) == EPOCHS
    assert run["val_dice"] is not None
    assert not list(ckpt.parent.glob("checkpoint.*"))  # no leftovers of interrupted writes
    got = weights(ckpt / "model.safetensors")
    assert got.keys() == train_reference.keys()
    for key, value in train_reference.items():  # resumed exactly: as if never interrupted
        np.testing.assert_array_equal(got[key], value)


def test_budget_run_killed_after_its_first_epoch_continues_to_its_budget(tmp_path):
    work = make_work(tmp_path)
    wd = WorkDir(work)
    minutes = 0.3
    args = ["train", work, "--fold", "0", "--minutes", minutes, *QUICK, "--workers", "0"]
    proc = voxseg(*args)
    assert wait_for(lambda: _checkpoint_epoch(wd.checkpoint_dir("3d", 0)) >= 1, proc, step=0.005)
    kill_tree(proc)
    cut = json.loads((wd.run_dir("3d", 0) / "run.json").read_text())
    assert cut["status"] != "finished"
    run_voxseg(*args, "--resume")
    run = json.loads((wd.run_dir("3d", 0) / "run.json").read_text())
    assert run["status"] == "finished" and run["epoch"] > 1  # not "finished" after the timing epoch
    assert run["config"]["minutes"] == minutes
    # it trained to its budget: most of the budget, the time before the kill included
    assert 0.5 * minutes * 60 < run["seconds_trained"] < 1.5 * minutes * 60


_WRITER = """
import sys, torch
from voxseg.training.checkpoint import TrainState, save_checkpoint
model = torch.nn.Linear(1500, 1500)  # 9 MB of weights, 18 MB of optimizer state: writing dominates the loop
opt = torch.optim.AdamW(model.parameters())
model(torch.ones(1, 1500)).sum().backward()
opt.step()
epoch = 0
while True:
    epoch += 1
    save_checkpoint(sys.argv[1], model, opt, TrainState(epoch=epoch, step=epoch))
"""


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_inside_checkpoint_writes_keeps_the_last_good_one(tmp_path, seed):
    import torch

    from voxseg.training.checkpoint import load_checkpoint

    ckpt = tmp_path / "checkpoint"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(ckpt)], env=ENV)
    seen = 0

    def saved_twice() -> bool:
        nonlocal seen
        seen = max(seen, _checkpoint_epoch(ckpt))
        return seen >= 2

    assert wait_for(saved_twice, proc)
    end = time.monotonic() + random.Random(seed).uniform(0.0, 1.0)
    while time.monotonic() < end:
        seen = max(seen, _checkpoint_epoch(ckpt))
    proc.kill()
    proc.wait()
    model = torch.nn.Linear(1500, 1500)
    state = load_checkpoint(ckpt, model, torch.optim.AdamW(model.parameters()))  # sha256 of every file checked
    assert state.epoch >= seen
    assert recover_checkpoint(ckpt) and load_checkpoint(ckpt, model).epoch == state.epoch
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]


# --- voxseg export -------------------------------------------------------------------------------


def _large_work(root: Path) -> Path:
    """A trained-looking work folder whose weights take a moment to zip (~60 MB)."""
    import torch

    from voxseg.io import write_json_atomic
    from voxseg.nets import build_network
    from voxseg.planning import ConfigurationPlan
    from voxseg.training.checkpoint import TrainState, save_checkpoint

    small = tiny_plan()
    net = {**small.configuration("3d").network.to_json()}
    net["kwargs"] = {**net["kwargs"], "channels": [64, 128, 256, 512], "strides": [2, 2, 2], "num_res_units": 2}
    conf = ConfigurationPlan("3d", (2.0, 0.8, 0.8), (16, 16, 16), 2, net, mirror_axes=(1, 2))
    plan = dataclasses.replace(small, configurations={"3d": conf})
    wd = WorkDir(root)
    plan.save(wd.plan_path)
    model = build_network(plan.configuration("3d").network)
    save_checkpoint(wd.checkpoint_dir("3d", 0), model, torch.optim.SGD(model.parameters(), lr=0.1), TrainState(1, 1))
    write_json_atomic(wd.run_dir("3d", 0) / "run.json", {"schema_version": 1, "status": "finished"})
    return root


@pytest.mark.parametrize("seed", SEEDS)
def test_killed_export_leaves_no_partial_zip(tmp_path, seed):
    work = _large_work(tmp_path / "work")
    out = tmp_path / "out" / "model.zip"
    out.parent.mkdir()
    args = ["export", work, "-o", out, "--name", "big", "--version", "v1"]
    proc = voxseg(*args)
    if wait_for(lambda: any(out.parent.iterdir()), proc, step=0.005):
        time.sleep(random.Random(seed).uniform(0.0, 0.5))  # a random moment of the zip's write
    kill_tree(proc)
    if out.exists():  # the kill came after the rename: then the archive is whole
        with zipfile.ZipFile(out) as zf:
            assert zf.testzip() is None
    run_voxseg(*args)
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None and "bundle.json" in zf.namelist()
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.zip"]  # the killed run's temporary is gone


# --- voxseg web ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
def test_killed_web_leaves_no_streamlit_process(sig):
    pytest.importorskip("streamlit")
    port = _free_port()
    proc = voxseg("web", "--port", port)
    health = f"http://127.0.0.1:{port}/_stcore/health"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(health, timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    assert wait_for(ready, proc, timeout=120, step=0.25), finish(proc)[1][-2000:]
    servers = descendants(proc.pid)
    assert any("streamlit" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace") for p in servers)
    kill_tree(proc, sig)
    assert survivors(servers) == [], f"the Streamlit server outlived `voxseg web` killed with {sig.name}"
    assert not ready()
