"""The golden test inside every bundle: the built-ins pass it with each backend available here, and
it fails, naming what differs, on bundles whose weights, normalization or expected output were
changed (and re-hashed, so the sha256 checks alone do not catch them)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from voxseg.bundle import BundleManifest, builtin_index_path, load_index, open_bundle
from voxseg.bundle.export import write_bundle
from voxseg.bundle.golden import BACKENDS, run_golden
from voxseg.cli.main import app

INDEX = json.loads(builtin_index_path().read_text())
ENTRIES = [(name, version) for name, model in INDEX["models"].items() for version in model["versions"]]
runner = CliRunner()


def _zip(name: str, version: str):
    return load_index(offline=True).resolve(name, version).local_path()


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


@pytest.mark.parametrize(("name", "version"), ENTRIES)
def test_builtin_passes_its_golden_test_with_every_backend(name, version):
    bundle = open_bundle(_zip(name, version))
    golden = bundle.manifest.golden
    assert golden is not None and golden["foreground_voxels"] > 0  # a case with something to segment
    assert {golden["input"], golden["expected"]} <= set(bundle.manifest.files)  # their sha256 in bundle.json
    results = {r.backend: r for r in run_golden(bundle)}
    assert set(results) == set(BACKENDS)
    interactive = bundle.manifest.task == "interactive"
    if interactive:  # six extreme points, stored with the input; onnxruntime does not run prompts yet
        assert results["onnxruntime"].skipped and "interactive" in results["onnxruntime"].skipped
    for backend in ("torch-fp32",) if interactive else ("torch-fp32", "onnxruntime"):  # installed for tests
        r = results[backend]
        assert r.skipped is None and r.ok, r.line()
        assert r.dice >= 0.99 and r.probability_max_error <= golden["tolerances"][backend]["probability_max_error"]
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
    assert any("label voxels per million differ" in p and "postprocessing" in p for p in result.problems)


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
