"""Every built-in model runs with ``voxseg predict --backend onnxruntime`` in a process where torch
cannot be imported, agreeing with its golden output (the torch fp32 pipeline's) at Dice >= 0.99;
the licence is shown at install and at the first prediction; prediction manifests name the model's
sha256."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from voxseg.bundle import builtin_index_path, load_index, open_bundle
from voxseg.bundle.golden import read_golden
from voxseg.io import read_image, write_image

from .test_golden import _params

INDEX = json.loads(builtin_index_path().read_text())
ENTRIES = [(n, v) for n, m in INDEX["models"].items() for v in m["versions"]]
SEMANTIC = [(n, v) for n, v in ENTRIES if INDEX["models"][n]["versions"][v].get("task") != "interactive"]

BLOCKED_CLI = textwrap.dedent(
    """
    import sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockTorch())
    from voxseg.cli.main import entry_point

    sys.argv = ["voxseg", *sys.argv[1:]]
    try:
        entry_point()
    finally:
        assert not any(m.split(".")[0] == "torch" for m in sys.modules), "torch was imported"
    """
)


def _zip(name, version):
    return load_index(offline=True).resolve(name, version).local_path()


def _env(tmp_path):
    env = dict(os.environ)
    env.update(VOXSEG_CACHE=str(tmp_path / "cache"), VOXSEG_MODELS=str(tmp_path / "models"))
    return env


def _dice(a, b):
    a, b = a > 0, b > 0
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2 * int((a & b).sum()) / total


@pytest.mark.parametrize(("name", "version"), _params(SEMANTIC))
def test_onnxruntime_predicts_every_builtin_without_torch(name, version, tmp_path):
    path = _zip(name, version)
    bundle = open_bundle(path)
    assert all(bundle.manifest.onnx_file(f) in bundle.manifest.files for f in bundle.manifest.folds)
    section, images, expected = read_golden(bundle)
    cases = tmp_path / "in"
    cases.mkdir()
    for k, vol in enumerate(images):
        write_image(vol, cases / f"case_{k:04d}.nii.gz")
    settings = ["--tta" if section["settings"]["tta"] else "--no-tta", "--overlap", str(section["settings"]["overlap"])]
    args = ["predict", "-i", str(cases), "-o", str(tmp_path / "out"), "-m", str(path), "--backend", "onnxruntime"]
    run = subprocess.run(
        [sys.executable, "-c", BLOCKED_CLI, *args, *settings],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(tmp_path),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    labels = np.asarray(read_image(tmp_path / "out" / "case.nii.gz").array)
    assert labels.shape == expected["labels"].shape
    assert _dice(labels, expected["labels"]) >= 0.99
    assert "licence CC-BY-4.0" in run.stderr  # the first prediction of this model here shows its terms
    manifest = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert manifest["settings"]["model_sha256"] == bundle.sha256
    assert manifest["cases"]["case"]["settings"]["model_sha256"] == bundle.sha256


def test_interactive_builtin_ships_onnx_networks():
    bundle = open_bundle(_zip("interactive-soft-tissue", "v1"))
    assert all(bundle.manifest.onnx_file(f) in bundle.manifest.files for f in bundle.manifest.folds)


def test_onnxruntime_predicts_the_interactive_builtin_from_points_without_torch(tmp_path):
    """The six-point model through the same runner as the others: ``--points`` with ``--backend
    onnxruntime`` in a process where torch cannot be imported, against its golden labels."""
    path = _zip("interactive-soft-tissue", "v1")
    section, images, expected = read_golden(open_bundle(path))
    write_image(images[0], tmp_path / "image.nii.gz")
    points = {"space": "voxel", "points": np.asarray(expected["points"]).tolist(), "labels": [1] * 6}
    (tmp_path / "points.json").write_text(json.dumps(points))
    settings = ["--tta" if section["settings"]["tta"] else "--no-tta", "--overlap", str(section["settings"]["overlap"])]
    args = ["predict", "-i", str(tmp_path / "image.nii.gz"), "-o", str(tmp_path / "mask.nii.gz"), "-m", str(path)]
    args += ["--points", str(tmp_path / "points.json"), "--backend", "onnxruntime", *settings]
    run = subprocess.run(
        [sys.executable, "-c", BLOCKED_CLI, *args], capture_output=True, text=True, timeout=600, env=_env(tmp_path)
    )
    assert run.returncode == 0, run.stderr[-3000:]
    labels = np.asarray(read_image(tmp_path / "mask.nii.gz").array)
    assert labels.shape == expected["labels"].shape and labels.any()
    assert _dice(labels, expected["labels"]) >= 0.99


def test_install_prints_terms_and_runs_the_golden_test(tmp_path):
    from typer.testing import CliRunner

    from voxseg.cli.main import app

    env = {"VOXSEG_CACHE": str(tmp_path / "cache"), "VOXSEG_MODELS": str(tmp_path / "models")}
    runner = CliRunner()
    result = runner.invoke(app, ["install", "mouse-lung-nodules@v1", "--offline"], env=env)
    assert result.exit_code == 0, result.output
    assert "mouse-lung-nodules@v1: licence CC-BY-4.0; intended use: demonstration" in result.output
    assert "torch-fp32: ok" in result.output and "onnxruntime: ok" in result.output
    result = runner.invoke(app, ["install", "mouse-lung-nodules@v2", "--offline", "--no-test"], env=env)
    assert result.exit_code == 0, result.output
    assert "licence CC-BY-4.0" in result.output and "torch-fp32" not in result.output


def test_first_use_line_is_shown_once(tmp_path):
    from voxseg.bundle.notice import first_use_line, terms

    m = open_bundle(_zip("pet-mip-tumors", "v1")).manifest
    info = terms(m)
    first = first_use_line(info, "a" * 64, tmp_path)
    assert first is not None and "pet-mip-tumors@v1: licence CC-BY-4.0" in first
    assert first_use_line(info, "a" * 64, tmp_path) is None
    assert first_use_line(info, "b" * 64, tmp_path) is not None  # another model (or version) is new again


def test_prediction_settings_name_the_model_sha256(tmp_path):
    from voxseg.models import load_predictor

    path = _zip("mouse-lung-nodules", "v1")
    predictor = load_predictor(path, cache=tmp_path, models=tmp_path, tta=False)
    assert predictor.settings()["model_sha256"] == open_bundle(path).sha256
    assert predictor.model_terms["license"] == "CC-BY-4.0"
    assert predictor.first_folds(1).settings()["model_sha256"] == predictor.model_sha256
