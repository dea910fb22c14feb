"""Patch runners (onnxruntime, OpenVINO) on the built-in bundles' real ONNX models and golden cases:
agreement, ``voxseg predict --backend openvino|auto`` with torch unimportable, the cached ``auto`` choice,
and background-tile skipping in the numpy sliding window."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.resources import files

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

from voxseg.bundle import open_bundle
from voxseg.errors import ConfigError
from voxseg.inference.runners import RUNNERS, OpenVinoRunner, OrtRunner, native_bf16

MODELS = files("voxseg.bundle") / "models"
#: the smallest built-in 3D network with a golden case (a 0.5 s golden test)
SMALL = "mouse-lung-nodules-v1.zip"


@pytest.fixture(scope="module")
def bundle():
    return open_bundle(MODELS / SMALL)


@pytest.fixture(scope="module")
def tiles(bundle):
    from voxseg.bundle.calibrate import golden_tiles

    return golden_tiles(bundle, limit=4)


def test_runners_give_the_same_logits_on_golden_tiles(bundle, tiles):
    onnx = bundle.read(bundle.manifest.onnx_file(0))
    x = np.concatenate([tiles[0], np.ascontiguousarray(tiles[0][:, :, ::-1])])  # a batch of two
    ort_out = OrtRunner(onnx, threads=1)(x)
    ov_out = OpenVinoRunner(onnx, threads=1)(x)
    assert ort_out.dtype == ov_out.dtype == np.float32
    assert ort_out.shape == ov_out.shape == (2, bundle.manifest.plan.num_classes, *x.shape[2:])
    np.testing.assert_allclose(ov_out, ort_out, atol=2e-3 * np.abs(ort_out).max())
    assert set(RUNNERS) == {"onnxruntime", "openvino"}


def test_precisions_are_checked(bundle, tiles):
    onnx = bundle.read(bundle.manifest.onnx_file(0))
    with pytest.raises(ConfigError, match="calibration tiles"):
        OpenVinoRunner(onnx, precision="int8")
    with pytest.raises(ConfigError, match="fp32 only"):
        OrtRunner(onnx, precision="int8")
    if not native_bf16():
        with pytest.raises(ConfigError, match="no native bf16"):
            OpenVinoRunner(onnx, precision="bf16")
    int8 = OpenVinoRunner(onnx, threads=1, precision="int8", calibration=tiles)
    fp32 = OrtRunner(onnx, threads=1)(tiles[0])
    got = int8(tiles[0])
    assert got.shape == fp32.shape and np.corrcoef(got.ravel(), fp32.ravel())[0, 1] > 0.9


def test_openvino_passes_the_golden_tests_of_the_built_in_bundles():
    from voxseg.bundle.golden import run_golden

    for name in (SMALL, "pet-mip-tumors-v1.zip"):
        results = {r.backend: r for r in run_golden(open_bundle(MODELS / name), backends=["onnxruntime", "openvino"])}
        for r in results.values():
            assert r.ok and not r.skipped, r.line()
        assert results["openvino"].labels_per_million <= 200 and results["openvino"].dice >= 0.999


def test_auto_backend_is_calibrated_once_and_cached(bundle, tmp_path):
    from voxseg.bundle.calibrate import CALIBRATION_FILE, choose_backend
    from voxseg.bundle.onnx_backend import OnnxPredictor

    first = choose_backend(bundle, threads=1, cache=tmp_path, repeats=1)
    assert first["cached"] is False and first["backend"] in RUNNERS
    assert set(first["seconds_per_tile"]) == {"onnxruntime", "openvino"}
    table = json.loads((tmp_path / CALIBRATION_FILE).read_text())
    assert [e["backend"] for e in table.values()] == [first["backend"]]
    predictor = OnnxPredictor.from_bundle(bundle, backend="auto", num_threads=1, cache=tmp_path, tta=False)
    settings = predictor.settings()
    assert settings["backend"] == first["backend"] and settings["backend_choice"]["cached"] is True
    assert settings["backend_choice"]["seconds_per_tile"] == first["seconds_per_tile"]


def test_skipped_tiles_are_not_run_and_count_as_background():
    from voxseg.bundle.onnx_backend import background_tile_test
    from voxseg.inference.window import sliding_window
    from voxseg.planning import Normalization

    image = np.zeros((1, 40, 40, 16), np.float32)
    image[0, 2:14, 2:14, 2:14] = np.random.default_rng(0).normal(0, 1, (12, 12, 12))
    calls = []

    def run(x):
        calls.append(x.shape[0])
        return np.concatenate([np.full_like(x, 0.25), np.full_like(x, 0.75)], axis=1)

    test = background_tile_test([Normalization("zscore")])
    out = sliding_window(image, run, (16, 16, 16), overlap=0.5, skip=test, background=[1.0, 0.0])
    full = sliding_window(image, run, (16, 16, 16), overlap=0.5)
    assert 0 < len(calls) - 16 < 16  # the full pass ran 16 tiles, the skipping pass fewer
    np.testing.assert_allclose(out[:, :8, :8], full[:, :8, :8], atol=1e-6)  # only run tiles cover it
    np.testing.assert_allclose(out[:, 30:, 30:], [[[[1.0]]], [[[0.0]]]] * np.ones_like(out[:, 30:, 30:]))
    ct = background_tile_test([Normalization("ct", mean=0.0, std=100.0, clip_low=-1000.0, clip_high=1000.0)])
    assert ct(np.full((1, 4, 4), -9.0)) and not ct(np.full((1, 4, 4), 0.0))
    with pytest.raises(ConfigError, match="background"):
        sliding_window(image, run, (16, 16, 16), skip=test)


_CLI_WITHOUT_TORCH = textwrap.dedent(
    """
    import sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockTorch())
    from voxseg.cli.main import main

    code = main(sys.argv[1:])
    print("TORCH_LOADED" if any(m.split(".")[0] == "torch" for m in sys.modules) else "NO_TORCH")
    sys.exit(code)
    """
)


def _predict(argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", _CLI_WITHOUT_TORCH, *argv]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "NO_TORCH" in run.stdout
    return run


@pytest.mark.slow
def test_cli_predict_with_openvino_never_imports_torch(bundle, tmp_path):
    from voxseg.bundle.golden import read_golden
    from voxseg.io import read_image, write_image

    _, images, _ = read_golden(bundle)
    (tmp_path / "in").mkdir()
    write_image(images[0], tmp_path / "in" / "case.nii.gz")
    common = ["predict", "-i", str(tmp_path / "in"), "-m", str(MODELS / SMALL), "--no-tta", "--threads", "1"]
    _predict([*common, "-o", str(tmp_path / "ov"), "--backend", "openvino"])
    _predict([*common, "-o", str(tmp_path / "ort"), "--backend", "onnxruntime"])
    ov, ort = (read_image(tmp_path / d / "case.nii.gz").array for d in ("ov", "ort"))
    assert (ov == ort).mean() >= 0.9999 and 0 < (ov > 0).mean() < 1
    manifest = json.loads((tmp_path / "ov" / "predictions.json").read_text())
    assert manifest["settings"]["backend"] == "openvino" and manifest["settings"]["precision"] in ("fp32", "bf16")
    env = {**os.environ, "VOXSEG_CACHE": str(tmp_path / "cache")}
    _predict([*common, "-o", str(tmp_path / "auto"), "--backend", "auto"], env=env)
    choice = json.loads((tmp_path / "auto" / "predictions.json").read_text())["settings"]["backend_choice"]
    assert choice["cached"] is False and (tmp_path / "cache" / "backend-calibration.json").is_file()
    assert (read_image(tmp_path / "auto" / "case.nii.gz").array == ort).mean() >= 0.9999


@pytest.mark.slow
def test_imported_nnunet_model_ships_onnx_that_openvino_runs_as_onnxruntime(tmp_path):
    """``import_nnunet(..., onnx=True)``: the ONNX backends run the imported model. They run voxseg's
    own pipeline, not the nnU-Net-exact torch path (resampling and tiling differ slightly)."""
    pytest.importorskip("dynamic_network_architectures")
    from tests.nnunet.synthetic import make_model_folder
    from voxseg.bundle.onnx_backend import OnnxPredictor
    from voxseg.io import Volume
    from voxseg.nnunet import import_nnunet

    folder = make_model_folder(tmp_path, folds=(0,), transpose=(2, 0, 1), patch_size=(16, 16, 8))
    out = import_nnunet(folder, tmp_path / "model.zip", onnx=True)
    assert "model_fold_0.onnx" in open_bundle(out).manifest.files
    image = Volume(np.random.default_rng(0).normal(100, 20, (10, 20, 18)).astype(np.float32), (1.0, 1.0, 1.0))
    probs = {
        b: OnnxPredictor.from_bundle(out, backend=b, tta=True).predict(image, probabilities=True).probabilities
        for b in ("onnxruntime", "openvino")
    }
    assert probs["openvino"].shape == (2, *image.shape)
    assert np.abs(probs["openvino"].astype(np.float32) - probs["onnxruntime"].astype(np.float32)).max() < 2e-3
