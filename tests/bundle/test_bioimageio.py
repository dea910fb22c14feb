"""bioimage.io export: the package validates with bioimageio.spec and passes bioimageio.core's model
test (its test tensors reproduced by the format's own preprocessing, ONNX run and postprocessing)."""

from __future__ import annotations

import json
import zipfile

import pytest
from typer.testing import CliRunner

pytest.importorskip("bioimageio.core")
pytest.importorskip("bioimageio.spec", minversion="0.5.14")  # older ones break with pydantic 2.14
pytest.importorskip("onnxruntime")

from voxseg.bundle import load_index
from voxseg.bundle.bioimageio import bioimageio_preprocessing, export_bioimageio
from voxseg.cli.main import app
from voxseg.planning import Normalization


def _check_package(path):
    from bioimageio.core import test_model
    from bioimageio.spec import InvalidDescr, load_description

    descr = load_description(path)
    assert not isinstance(descr, InvalidDescr), descr.validation_summary.format()
    summary = test_model(path)
    assert summary.status == "passed", summary.format()
    return descr


def test_builtin_exports_a_package_that_bioimageio_core_passes(tmp_path):
    bundle = load_index(offline=True).resolve("mouse-lung-nodules", "v1").local_path()
    out = export_bioimageio(bundle, tmp_path / "lung.zip")
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        readme = zf.read("README.md").decode()
        rdf = json.loads(zf.read("bioimageio.yaml"))
    assert {"bioimageio.yaml", "model.onnx", "test_input.npy", "test_output.npy", "cover.png", "README.md"} <= names
    ops = [step["id"] for step in rdf["inputs"][0]["preprocessing"]]
    assert ops == ["ensure_dtype", "clip", "fixed_zero_mean_unit_variance"]  # the ct scheme, expressed
    assert [s["id"] for s in rdf["outputs"][0]["postprocessing"]] == ["softmax"]
    for limit in ("Resampling", "Sliding window", "Test-time augmentation", "Postprocessing"):
        assert limit in readme
    descr = _check_package(out)
    assert descr.license == "CC-BY-4.0"


def test_cli_exports_a_work_folder_as_bioimageio(work_folder, tmp_path):
    out = tmp_path / "tiny-bioimageio.zip"
    result = CliRunner().invoke(
        app, ["export", str(work_folder), "--format", "bioimageio", "-o", str(out), "--name", "tiny", "--version", "v1"]
    )
    assert result.exit_code == 0, result.output
    _check_package(out)


def test_cli_refuses_a_folder_output_for_bioimageio(work_folder, tmp_path):
    args = ["export", str(work_folder), "--format", "bioimageio", "-o", str(tmp_path / "x"), "--name", "t"]
    result = CliRunner().invoke(app, [*args, "--version", "v1"])
    assert result.exit_code == 1 and "a bioimage.io package is a .zip" in str(result.exception)


def test_inexpressible_normalization_is_none():
    axes = ("z", "y", "x")
    masked = [Normalization("percentile_minmax", mask_channel=1), Normalization("mask")]
    assert bioimageio_preprocessing(masked, axes) is None  # mixed schemes, statistics inside a mask
    assert bioimageio_preprocessing([Normalization("zscore", use_nonzero_mask=True)], axes) is None
    steps = bioimageio_preprocessing([Normalization("zscore")], axes)
    assert steps[-1] == {"id": "zero_mean_unit_variance", "kwargs": {"axes": ["z", "y", "x"], "eps": 1e-6}}
