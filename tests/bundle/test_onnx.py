"""The ONNX path: export_bundle(onnx=True), then onnxruntime prediction with torch unimportable,
matching the torch backend (Dice >= 0.999)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from voxseg.bundle import export_bundle, open_bundle, verify_bundle

_BLOCK_TORCH = textwrap.dedent(
    """
    import sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockTorch())
    """
)

BLOCKED_RUN = _BLOCK_TORCH + textwrap.dedent(
    """
    import json
    import numpy as np
    from voxseg.bundle.onnx_backend import OnnxPredictor
    from voxseg.io import Volume

    bundle, image, out = sys.argv[1:4]
    vol = Volume(np.load(image), (1.5, 1.0, 1.0))
    result = OnnxPredictor.from_bundle(bundle, tta=True, overlap=0.5).predict(vol, probabilities=True)
    np.save(out + "_labels.npy", result.labels.array)
    np.save(out + "_probs.npy", result.probabilities)
    print(json.dumps({"torch_loaded": any(m.split(".")[0] == "torch" for m in sys.modules)}))
    """
)


@pytest.fixture(scope="module")
def onnx_bundle(work_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny-onnx"
    return export_bundle(work_folder, out, name="tiny-onnx", version="v1", onnx=True)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.logical_and(a, b).sum()
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * inter / total


@pytest.mark.slow
def test_onnxruntime_without_torch_matches_the_torch_backend(onnx_bundle, tmp_path):
    from scipy import ndimage

    from voxseg.io import Volume
    from voxseg.models import load_predictor

    bundle = open_bundle(onnx_bundle)
    assert set(bundle.onnx_files()) == {0, 1}
    assert verify_bundle(onnx_bundle) == []
    rng = np.random.default_rng(3)
    image = ndimage.gaussian_filter(rng.normal(0, 1, (14, 26, 23)), 2).astype(np.float32) * 10
    np.save(tmp_path / "image.npy", image)
    run = subprocess.run(
        [sys.executable, "-c", BLOCKED_RUN, str(onnx_bundle), str(tmp_path / "image.npy"), str(tmp_path / "onnx")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"torch_loaded": False}
    onnx_labels = np.load(tmp_path / "onnx_labels.npy")
    onnx_probs = np.load(tmp_path / "onnx_probs.npy").astype(np.float32)

    predictor = load_predictor(onnx_bundle, tta=True, overlap=0.5, precision="fp32", cache=tmp_path, models=tmp_path)
    ref = predictor.predict(Volume(image, (1.5, 1.0, 1.0)), probabilities=True)
    assert onnx_labels.shape == ref.labels.shape == image.shape
    assert np.abs(onnx_probs - ref.probabilities.astype(np.float32)).max() < 2e-3
    assert _dice(onnx_labels > 0, ref.labels.array > 0) >= 0.999
    assert 0 < (ref.labels.array > 0).mean() < 1  # a non-trivial segmentation was compared


def test_bundle_without_onnx_is_explained(bundle_zip):
    from voxseg.bundle.onnx_backend import OnnxPredictor
    from voxseg.errors import BundleError

    with pytest.raises(BundleError, match=r"no model_fold_0\.onnx; export the bundle with --onnx"):
        OnnxPredictor.from_bundle(bundle_zip)


@pytest.mark.slow
def test_2d_multiclass_bundle_on_3d_data_matches_torch(tmp_path):
    """A 2D configuration run slice by slice, label values 0/1/3 (a lookup table), no TTA axes."""
    import torch
    from safetensors.torch import save_file

    from voxseg.bundle import BundleManifest
    from voxseg.bundle.export import write_bundle
    from voxseg.bundle.onnx_export import onnx_bytes
    from voxseg.io import Volume
    from voxseg.models import load_predictor
    from voxseg.models.load import load_onnx_predictor
    from voxseg.nets import build_network
    from voxseg.planning import ConfigurationPlan, Normalization, Plan

    kwargs = {"spatial_dims": 2, "in_channels": 2, "out_channels": 3, "channels": [4, 8], "strides": [2]}
    spec = {"name": "unet", "kwargs": {**kwargs, "num_res_units": 0}}
    cfg = ConfigurationPlan("2d", (0.5, 0.5), (16, 16), 4, spec, mirror_axes=(1,))
    norm = (Normalization("zscore"), Normalization("none"))
    labels = {"background": 0, "a": 1, "b": 3}
    plan = Plan("two", {0: "T2", 1: "T1"}, labels, norm, {"2d": cfg}, "2d", data_ndim=3)
    torch.manual_seed(0)
    weights = tmp_path / "w.safetensors"
    save_file(build_network(spec).state_dict(), str(weights))
    manifest = BundleManifest("two", "v1", "semantic", plan, "2d", (0,), {"weights/fold_0.safetensors": "0" * 64})
    files = {"weights/fold_0.safetensors": weights, "model_fold_0.onnx": onnx_bytes(manifest, weights)}
    bundle = write_bundle(manifest, files, tmp_path / "two.zip")

    rng = np.random.default_rng(1)
    images = [Volume(rng.normal(0, 1, (3, 20, 25)).astype(np.float32), (2.0, 0.5, 0.5)) for _ in range(2)]
    got = load_onnx_predictor(bundle, tta=True, cache=tmp_path, models=tmp_path).predict(images)
    ref = load_predictor(bundle, tta=True, precision="fp32", cache=tmp_path, models=tmp_path).predict(images)
    assert got.labels.shape == ref.labels.shape == (3, 20, 25)
    assert set(np.unique(ref.labels.array)) <= {0, 1, 3} and len(np.unique(ref.labels.array)) > 1
    assert (got.labels.array == ref.labels.array).mean() >= 0.999


_CLI_WITHOUT_TORCH = _BLOCK_TORCH + textwrap.dedent(
    """
    from voxseg.cli.main import main

    code = main(sys.argv[1:])
    print("TORCH_LOADED" if any(m.split(".")[0] == "torch" for m in sys.modules) else "NO_TORCH")
    sys.exit(code)
    """
)


@pytest.mark.slow
def test_cli_predict_with_the_onnxruntime_backend_never_imports_torch(onnx_bundle, tmp_path):
    from voxseg.io import Volume, read_image, write_image
    from voxseg.models import load_predictor

    rng = np.random.default_rng(3)
    image = Volume(rng.normal(0, 1, (12, 20, 20)).astype(np.float32), (1.5, 1.0, 1.0))
    image.array[4:8, 6:12, 6:12] += 4.0
    write_image(image, tmp_path / "case.nii.gz")
    out = tmp_path / "out.nii.gz"
    argv = ["predict", "-i", str(tmp_path / "case.nii.gz"), "-o", str(out), "-m", str(onnx_bundle)]
    argv += ["--backend", "onnxruntime", "--no-tta"]
    run = subprocess.run([sys.executable, "-c", _CLI_WITHOUT_TORCH, *argv], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "NO_TORCH" in run.stdout
    torch_labels = load_predictor(onnx_bundle, tta=False, precision="fp32").predict(image).labels.array
    assert _dice(read_image(out).array > 0, torch_labels > 0) >= 0.999
    bad = subprocess.run(
        [sys.executable, "-c", _CLI_WITHOUT_TORCH, *argv[:-3], "--backend", "tensorflow"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--backend" in bad.stderr
