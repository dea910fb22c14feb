"""benchmarks/vs_nnunet.py --real-size: peak PSS of a process tree, Dice, and a tiny end-to-end run
(needs nnunetv2 in its own venv: VOXSEG_NNUNET_BIN=/path/to/venv/bin, else skipped)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("dynamic_network_architectures")
pytest.importorskip("psutil")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import vs_nnunet_real  # noqa: E402


def _nnunet_bin() -> Path | None:
    found = shutil.which("nnUNetv2_predict_from_modelfolder")
    for candidate in (os.environ.get("VOXSEG_NNUNET_BIN"), found and str(Path(found).parent), "/work/venv-nnunet/bin"):
        if candidate and (Path(candidate) / "nnUNetv2_plan_and_preprocess").is_file():
            return Path(candidate)
    return None


def test_peak_pss_sums_the_whole_process_tree():
    child = "import time, numpy as np; a = np.ones(60 * 2**20 // 8); time.sleep(1.5)"
    parent = textwrap.dedent(f"""
        import subprocess, sys, time, numpy as np
        a = np.ones(40 * 2**20 // 8)
        p = subprocess.Popen([sys.executable, "-c", {child!r}])
        p.wait()
    """)
    wall, pss = vs_nnunet_real.run_pss([sys.executable, "-c", parent], dict(os.environ), poll=0.05)
    assert wall >= 1.5
    assert pss > 100  # 40 MiB in the parent and 60 MiB in the child, counted together
    with pytest.raises(SystemExit, match="command failed"):
        vs_nnunet_real.run_pss([sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ))


def test_mean_dice_over_foreground_classes():
    ref = np.zeros((4, 4), np.uint8)
    ref[:2] = 1
    ref[2:, :2] = 2
    pred = ref.copy()
    assert vs_nnunet_real.mean_dice(pred, ref) == 1.0
    pred[2:, :2] = 0  # class 2 missed entirely
    assert vs_nnunet_real.mean_dice(pred, ref) == pytest.approx(0.5)
    assert vs_nnunet_real.mean_dice(np.zeros_like(ref), np.zeros_like(ref)) == 1.0


@pytest.mark.slow
@pytest.mark.skipif(_nnunet_bin() is None, reason="nnunetv2 not installed (set VOXSEG_NNUNET_BIN to its venv's bin)")
def test_real_size_mode_at_a_tiny_size(tmp_path):
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "vs_nnunet.py"), "--work", str(tmp_path), "--real-size"]
    cmd += ["--sizes", "32", "--train-size", "32", "--train-cases", "2", "--cases", "1", "--iterations", "2"]
    cmd += ["--train-patch", "16", "--backends", "onnxruntime", "--threads", "1", "--json", str(out)]
    cmd += ["--nnunet-bin", str(_nnunet_bin())]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "nnU-Net planned" in done.stdout and "patch [32, 32, 32]" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    assert {(r["run"], r["tta"]) for r in rows} >= {("nnU-Net glibc", False), ("voxseg onnxruntime", True)}
    for r in rows:
        assert r["seconds"] > 0 and r["pss_mib"] > 50 and 0 <= r["dice"] <= 1
        assert r["agreement"] > 0.99  # the same briefly trained network, two implementations
