"""The golden test inside every bundle: the built-ins pass it with each backend available here, and
it fails, naming what differs, on bundles whose weights, normalization or expected output were
changed (and re-hashed, so the sha256 checks alone do not catch them)."""

from __future__ import annotations

import json
import zipfile
from importlib.util import find_spec

import numpy as np
import pytest
from typer.testing import CliRunner

from voxseg.bundle import BundleManifest, builtin_index_path, load_index, open_bundle
from voxseg.bundle.export import write_bundle
from voxseg.bundle.golden import BACKENDS, DEFAULT_TOLERANCES, run_golden
from voxseg.cli.main import app

INDEX = json.loads(builtin_index_path().read_text())
ENTRIES = [(name, version) for name, model in INDEX["models"].items() for version in model["versions"]]
runner = CliRunner()


def _zip(name: str, version: str):
    return load_index(offline=True).resolve(name, version).local_path()


def _params(entries):
    """Fixed-shape models tile their whole fixed shape, the interactive model computes geodesic
    prompt maps (10-80 s on the shared 2-core machine): marked slow (they still run in CI)."""
    out = []
    for name, version in entries:
        m = open_bundle(_zip(name, version)).manifest
        slow = m.config.fixed_shape is not None or m.task == "interactive"
        out.append(pytest.param(name, version, marks=[pytest.mark.slow] if slow else []))
    return out


def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _rewrite(src, out, *, manifest_json=None, replace=None):
    """A copy of bundle ``src`` with files replaced and every sha256 recomputed (a consistent bundle)."""
    members = _members(src)
    data = json.loads(members.pop("bundle.json"))
    if manifest_json is not None:
        manifest_json(data)
    files = {**members, **(replace or {})}
    return write_bundle(BundleManifest.from_json(data), files, out)


@pytest.mark.parametrize(("name", "version"), _params(ENTRIES))
def test_builtin_passes_its_golden_test_with_every_backend(name, version):
    bundle = open_bundle(_zip(name, version))
    golden = bundle.manifest.golden
    assert golden is not None and golden["foreground_voxels"] > 0  # a case with something to segment
    assert {golden["input"], golden["expected"]} <= set(bundle.manifest.files)  # their sha256 in bundle.json
    results = {r.backend: r for r in run_golden(bundle)}
    assert set(results) == set(BACKENDS)
    # interactive models too: six extreme points stored with the input, run by every backend's runner
    engines = ("onnxruntime", "openvino") if find_spec("openvino") else ("onnxruntime",)  # the [openvino] extra
    for backend in ("torch-fp32", *engines):
        r = results[backend]
        assert r.skipped is None and r.ok, r.line()
        tolerance = golden["tolerances"].get(backend) or DEFAULT_TOLERANCES[backend]
        assert r.dice >= 0.99 and r.probability_max_error <= tolerance["probability_max_error"]
    assert results["torch-bf16"].ok, results["torch-bf16"].line()  # passes, or is skipped without native bf16


def test_bundle_test_cli_names_each_backend(tmp_path):
    path = _zip("mouse-lung-nodules", "v1")
    result = runner.invoke(app, ["bundle", "test", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["model"] == "mouse-lung-nodules@v1"
    assert [r["backend"] for r in report["results"]] == list(BACKENDS)
    result = runner.invoke(app, ["bundle", "test", str(path), "--backend", "onnxruntime"])
    assert result.exit_code == 0 and "onnxruntime: ok" in result.output


def test_perturbed_weights_fail_naming_the_network(tmp_path):
    from safetensors.numpy import load, save

    src = _zip("mouse-lung-nodules", "v1")
    tensors = load(_members(src)["weights/fold_0.safetensors"])
    rng = np.random.default_rng(0)
    tensors = {k: (v + rng.normal(0, 0.02, v.shape).astype(v.dtype)) if v.ndim > 1 else v for k, v in tensors.items()}
    bad = _rewrite(src, tmp_path / "perturbed.zip", replace={"weights/fold_0.safetensors": save(tensors)})
    results = {r.backend: r for r in run_golden(open_bundle(bad), backends=["torch-fp32"])}
    assert not results["torch-fp32"].ok
    assert "the network or its weights changed" in results["torch-fp32"].problems[0]
    result = runner.invoke(app, ["bundle", "test", str(bad), "--backend", "torch-fp32"])
    assert result.exit_code == 1  # the CLI prints the error's one line (main.py); here it is the exception
    assert "golden test failed (torch-fp32: probabilities differ" in str(result.exception)
    assert "torch-fp32: FAILED" in result.output


def test_edited_normalization_fails_naming_the_normalization(tmp_path):
    src = _zip("mouse-lung-nodules", "v1")

    def edit(data):
        data["plan"]["normalization"][0]["mean"] += 100.0
        del data["input"]  # the derived copy would disagree with the edited plan

    bad = _rewrite(src, tmp_path / "normalization.zip", manifest_json=edit)
    (result,) = run_golden(open_bundle(bad), backends=["onnxruntime"])
    assert not result.ok
    assert any("the normalization" in p and "mean" in p for p in result.problems), result.problems


def test_tampered_expected_output_fails_naming_the_labels(tmp_path):
    from safetensors.numpy import load, save

    src = _zip("mouse-spinal-cord-gmwm", "v1")
    expected = load(_members(src)["golden/expected.safetensors"])
    labels = expected["labels"].copy()
    labels[labels.shape[0] // 2] = 0  # one slice of the expected label map erased
    changed = save({"labels": labels, "probabilities": expected["probabilities"]})
    bad = _rewrite(src, tmp_path / "expected.zip", replace={"golden/expected.safetensors": changed})
    (result,) = run_golden(open_bundle(bad), backends=["torch-fp32"])
    assert not result.ok and result.labels_per_million > 200
    assert any("label voxels per million differ" in p and "postprocessing, threshold" in p for p in result.problems)


def test_manifest_golden_section_must_list_its_files():
    from voxseg.errors import BundleError

    data = json.loads(_members(_zip("mouse-lung-nodules", "v1"))["bundle.json"])
    del data["files"]["golden/input.safetensors"]
    with pytest.raises(BundleError, match=r"golden.*'golden/input.safetensors' is not listed in 'files'"):
        BundleManifest.from_json(data)


def test_provenance_and_terms_are_in_the_builtins():
    bundle = open_bundle(_zip("brain-microbleeds", "v1"))
    m = bundle.manifest
    assert m.provenance["plan_sha256"] and len(m.provenance["plan_sha256"]) == 64
    assert m.provenance["parent"] is None and "phantom" in m.provenance["training_data"]
    assert "synthetic phantoms" in m.intended_use
    card = bundle.card
    assert "## Provenance" in card and f"Plan sha256: {m.provenance['plan_sha256']}" in card
    assert "Golden test:" in card and "voxseg bundle test brain-microbleeds" in card
    assert len(bundle.sha256) == 64


def test_edited_postprocessing_fails_naming_the_postprocessing(tmp_path):
    src = _zip("mouse-lung-nodules", "v1")

    def edit(data):  # instances >= 150 voxels -> >= 100 000 voxels: every nodule removed
        data["postprocessing"]["final"][-1]["min_size"] = 100_000

    bad = _rewrite(src, tmp_path / "postprocessing.zip", manifest_json=edit)
    (result,) = run_golden(open_bundle(bad), backends=["torch-fp32"])
    assert not result.ok and result.probability_max_error <= 0.002
    assert "with matching probabilities: the postprocessing, threshold or label values changed" in result.problems[0]


def test_export_writes_the_golden_test_from_a_validation_case(tmp_path):
    from voxseg.bundle import export_bundle
    from voxseg.dataset.layout import DatasetSpec, DatasetWriter
    from voxseg.dataset.splits import Fold, write_splits
    from voxseg.io import Volume, write_json_atomic

    from .conftest import make_work

    work = make_work(tmp_path / "WORK")
    rng = np.random.default_rng(1)
    spec = DatasetSpec("tiny", {0: "CT"}, {"background": 0, "nodule": 1}, ".nii.gz", 2)
    with DatasetWriter(tmp_path / "raw", spec) as writer:
        for i in range(2):
            lab = np.zeros((20, 24, 24), np.uint8)
            lab[6 + i : 14, 8:16, 8:16] = 1
            img = rng.normal(0, 1, lab.shape).astype(np.float32) + 3 * lab
            writer.add_case(f"case_{i}", [Volume(img, (1, 1, 1))], Volume(lab, (1, 1, 1)))
    dataset = json.loads((work / "dataset.json").read_text())
    write_json_atomic(work / "dataset.json", {**dataset, "voxseg_source": str(tmp_path / "raw")})
    write_splits(work / "splits.json", [Fold(("case_0",), ("case_1",)), Fold(("case_1",), ("case_0",))], seed=0)
    out = export_bundle(work, tmp_path / "tiny.zip", name="tiny", version="v1", parent="tiny@v0", license="MIT")
    bundle = open_bundle(out)
    golden = bundle.manifest.golden
    assert golden["source"].startswith("validation case case_1, crop ")
    assert golden["settings"] == {"tta": True, "overlap": 0.5}
    assert all(r.ok for r in run_golden(bundle, backends=["torch-fp32"]))
    prov = bundle.manifest.provenance
    assert prov["parent"] == "tiny@v0" and prov["data_fingerprint_sha256"] is None  # no fingerprint.json here
    assert "Fine-tuned from: tiny@v0" in bundle.card


def test_export_without_the_raw_dataset_writes_no_golden_test(bundle_zip):
    bundle = open_bundle(bundle_zip)
    assert bundle.manifest.golden is None and not any(f.startswith("golden/") for f in bundle.manifest.files)
    result = runner.invoke(app, ["bundle", "test", str(bundle_zip)])
    assert result.exit_code == 1 and "no golden test in this bundle" in result.output


def test_index_and_entry_carry_licence_and_intended_use():
    entry = load_index(offline=True).resolve("pet-mip-tumors", "v1")
    assert entry.license == "CC-BY-4.0" and "synthetic phantoms" in entry.intended_use
    assert entry.to_json()["license"] == "CC-BY-4.0"
    result = runner.invoke(app, ["bundle", "entry", str(entry.local_path()), "--url", "https://example.org/p.zip"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)["models"]["pet-mip-tumors"]["versions"]["v1"]
    assert (info["license"], info["intended_use"]) == (entry.license, entry.intended_use)
