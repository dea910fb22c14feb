"""BundleManifest: JSON round trip and strict validation with messages naming the field."""

from __future__ import annotations

import json

import pytest

from voxseg.bundle import BundleManifest
from voxseg.bundle._util import parse_reference, safetensors_problem, version_key
from voxseg.errors import BundleError
from voxseg.postprocessing import PostprocessingSpec, Step

from .conftest import tiny_plan

SHA = "a" * 64


def _manifest(**changes) -> BundleManifest:
    kwargs = dict(
        name="tiny-nodules",
        version="v1",
        task="instances",
        plan=tiny_plan(),
        configuration="3d",
        folds=(0, 1),
        files={"weights/fold_0.safetensors": SHA, "weights/fold_1.safetensors": SHA, "README.md": SHA},
        license="CC-BY-4.0",
        authors=("A. Author",),
        postprocessing=PostprocessingSpec(final=(Step.of("instances", min_size=150),)),
        metrics={"foreground_mean": {"dice": 0.8}},
        versions={"voxseg": "0.1.0"},
        created="2026-01-01T00:00:00+00:00",
    )
    kwargs.update(changes)
    return BundleManifest(**kwargs)


def test_round_trip_keeps_everything():
    m = _manifest()
    data = json.loads(m.dumps())
    assert data["input"]["channels"][0]["name"] == "CT"
    assert data["input"]["channels"][0]["normalization"]["scheme"] == "zscore"
    assert data["input"]["target_spacing"] == [1.0, 1.0, 1.0]
    assert data["labels"] == {"background": 0, "nodule": 1}
    assert data["network"]["name"] == "unet"
    back = BundleManifest.from_json(data)
    assert back == m
    assert back.reference == "tiny-nodules@v1"
    assert back.postprocessing.makes_instances


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda d: d.update(name="Bad Name"), "'name'"),
        (lambda d: d.update(version="1/2"), "'version'"),
        (lambda d: d.update(task="detection"), "'task'"),
        (lambda d: d.update(folds=[0, 0]), "'folds'"),
        (lambda d: d.update(folds="0"), "'folds'"),
        (lambda d: d.update(configuration="2d"), "'configuration'"),
        (lambda d: d.update(schema_version=99), "'schema_version'"),
        (lambda d: d.update(extra=1), "unknown field(s) extra"),
        (lambda d: d.pop("plan"), "missing field(s) plan"),
        (lambda d: d["files"].update({"README.md": "xyz"}), "'README.md' has no valid sha256"),
        (lambda d: d["files"].update({"../evil": SHA}), "invalid relative path"),
        (lambda d: d["files"].pop("weights/fold_1.safetensors"), "lacks weights/fold_1.safetensors"),
        (lambda d: d.update(labels={"background": 0, "tumour": 1}), "'labels' disagrees with the embedded plan"),
        (lambda d: d["plan"].update(default_configuration="2d"), "'plan' is invalid"),
        (lambda d: d["postprocessing"]["final"].append({"op": "nope"}), "'postprocessing' is invalid"),
        (lambda d: d.update(authors="x"), "'authors'"),
    ],
)
def test_invalid_fields_are_named(edit, needle):
    data = json.loads(_manifest().dumps())
    edit(data)
    with pytest.raises(BundleError) as err:
        BundleManifest.from_json(data)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_not_json():
    with pytest.raises(BundleError, match="not valid JSON"):
        BundleManifest.loads(b"{nope")


def test_references_and_versions():
    assert parse_reference("mouse-lung-nodules") == ("mouse-lung-nodules", None)
    assert parse_reference("mouse-lung-nodules@v2") == ("mouse-lung-nodules", "v2")
    with pytest.raises(BundleError, match="not a valid model name"):
        parse_reference("Mouse Lung")
    assert sorted(["v10", "v2", "v1"], key=version_key) == ["v1", "v2", "v10"]
    assert sorted(["1.0.1", "1.0", "0.9", "1.10"], key=version_key) == ["0.9", "1.0", "1.0.1", "1.10"]


def test_safetensors_sniffing():
    import pickle
    import struct

    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    good = struct.pack("<Q", len(header)) + header + b"\0\0\0\0"
    assert safetensors_problem(good, len(good)) is None
    assert "truncated" in safetensors_problem(good[:-1], len(good) - 1)
    blob = pickle.dumps({"w": [1.0]})
    assert "pickle" in safetensors_problem(blob, len(blob))
    assert "zip archive" in safetensors_problem(b"PK\x03\x04" + b"\0" * 20, 24)


def test_importing_the_bundle_package_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, voxseg.bundle, voxseg.bundle.onnx_backend, voxseg.cli.bundle; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'monai'}))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
    code = "import sys, voxseg.bundle; print(any(m.startswith('voxseg.training') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_card_says_when_the_figures_rest_on_some_folds_only():
    from voxseg.bundle.card import cv_table

    per_class = {"1": {"dice": {"mean": 0.9, "std": 0.01}}}
    whole = cv_table(_manifest(metrics={"per_class": per_class, "folds": 5, "cases": 20, "partial": False}))
    assert not any("only" in row for row in whole)
    part = _manifest(metrics={"per_class": per_class, "folds": 5, "cases": 4, "partial": True, "folds_scored": [0]})
    assert cv_table(part)[-1] == (
        "Scored on fold(s) 0 of 5 only (4 cases): an estimate, not a cross-validation of every case."
    )
