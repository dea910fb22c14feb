"""export_bundle from a really trained work folder -> open_bundle -> the same weights; verify
finds tampering, missing and extra files and weights that do not fit the network."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from voxseg.bundle import export_bundle, open_bundle, verify_bundle
from voxseg.bundle.export import write_bundle
from voxseg.errors import BundleError
from voxseg.workdir.layout import WorkDir

from .conftest import make_work


@pytest.mark.slow
def test_export_after_real_training_keeps_the_weights(tmp_path):
    work = make_work(tmp_path / "WORK", folds=(0,), trained=True)
    out = export_bundle(work, tmp_path / "trained.zip", name="trained", version="v1")
    bundle = open_bundle(out)
    trained = load_file(str(WorkDir(work).checkpoint_dir("3d", 0) / "model.safetensors"))
    for key, value in trained.items():
        np.testing.assert_array_equal(bundle.state_dict(0)[key].numpy(), value)
    assert verify_bundle(out) == []


def test_zip_bundle_holds_the_weights(work_folder, bundle_zip):
    bundle = open_bundle(bundle_zip)
    m = bundle.manifest
    assert (m.name, m.version, m.folds, m.configuration, m.task) == ("tiny-nodules", "v1", (0, 1), "3d", "instances")
    assert m.metrics["foreground_mean"]["dice"] == 0.8125
    assert m.postprocessing.makes_instances
    assert set(m.versions) >= {"voxseg", "torch", "python"}
    assert bundle.root is None  # read in memory, nothing written
    for fold in (0, 1):
        trained = load_file(str(WorkDir(work_folder).checkpoint_dir("3d", fold) / "model.safetensors"))
        packed = bundle.state_dict(fold)
        assert set(packed) == set(trained)
        for key, value in trained.items():
            np.testing.assert_array_equal(packed[key].numpy(), value)
    assert "| nodule (1) | 0.812 ± 0.050 |" in bundle.card
    assert "2 training cases" in bundle.card
    with zipfile.ZipFile(bundle_zip) as zf:
        assert sorted(zf.namelist()) == [
            "README.md",
            "bundle.json",
            "weights/fold_0.safetensors",
            "weights/fold_1.safetensors",
        ]


def test_folder_bundle_verifies_and_loads_strictly(work_folder, tmp_path):
    out = export_bundle(work_folder, tmp_path / "tiny", name="tiny", version="1.0", folds=[1], license="MIT")
    bundle = open_bundle(out)
    assert bundle.root == out and bundle.manifest.folds == (1,)
    assert verify_bundle(out) == []
    net = bundle.network(1)
    assert not net.training
    with pytest.raises(BundleError, match="already exists"):
        export_bundle(work_folder, out, name="tiny", version="1.0")


def test_zip_opened_with_cache_is_extracted_once(bundle_zip, tmp_path):
    first = open_bundle(bundle_zip, cache=tmp_path)
    assert first.root is not None and first.root.parent == tmp_path / "bundles"
    assert first.weight_files()[0].is_file()
    again = open_bundle(bundle_zip, cache=tmp_path)
    assert again.root == first.root
    assert list((tmp_path / "bundles").iterdir()) == [first.root]


def _folder_copy(bundle_zip: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "copy"
    with zipfile.ZipFile(bundle_zip) as zf:
        zf.extractall(folder)  # the test's own trusted archive
    return folder


def test_verify_reports_a_tampered_file(bundle_zip, tmp_path):
    folder = _folder_copy(bundle_zip, tmp_path)
    weights = folder / "weights" / "fold_0.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor
    weights.write_bytes(bytes(data))
    problems = verify_bundle(folder)
    assert len(problems) == 1
    expected = json.loads((folder / "bundle.json").read_text())["files"]["weights/fold_0.safetensors"]
    assert "weights/fold_0.safetensors fails its checksum" in problems[0] and expected in problems[0]
    with pytest.raises(BundleError, match="fails its checksum"):
        open_bundle(folder)


def test_verify_reports_missing_and_unlisted_files(bundle_zip, tmp_path):
    folder = _folder_copy(bundle_zip, tmp_path)
    (folder / "README.md").unlink()
    assert "'README.md' is listed in bundle.json but missing" in verify_bundle(folder)[0]
    folder = _folder_copy(bundle_zip, tmp_path / "b")
    (folder / "notes.txt").write_text("hello")
    assert "'notes.txt' is not listed" in verify_bundle(folder)[0]
    (folder / "notes.txt").unlink()
    (folder / "bundle.json").unlink()
    assert "not a bundle (no bundle.json)" in verify_bundle(folder)[0]


def test_verify_finds_weights_that_do_not_fit_the_spec(bundle_zip, tmp_path):
    bundle = open_bundle(bundle_zip)
    data = bundle.manifest.to_json()
    data["plan"]["configurations"]["3d"]["network"]["kwargs"]["channels"] = [8, 16]
    data.pop("network")
    from voxseg.bundle import BundleManifest

    manifest = BundleManifest.from_json(data)
    files = {name: bundle.read(name) for name in bundle.manifest.files}
    out = write_bundle(manifest, files, tmp_path / "misfit.zip")
    problems = verify_bundle(out)
    assert len(problems) == 2
    assert "fold 0 weights do not match the network spec" in problems[0]


def test_export_refuses_a_work_folder_without_trained_folds(tmp_path, work_folder):
    empty = tmp_path / "empty"
    shutil.copytree(work_folder, empty, ignore=shutil.ignore_patterns("runs"))
    with pytest.raises(BundleError, match="no finished fold of configuration '3d'"):
        export_bundle(empty, tmp_path / "x.zip", name="x", version="v1")
    with pytest.raises(BundleError, match="not a voxseg work folder"):
        export_bundle(tmp_path / "nowhere", tmp_path / "x.zip", name="x", version="v1")
    with pytest.raises(BundleError, match="'version'"):
        export_bundle(work_folder, tmp_path / "x.zip", name="x", version="a b")
    from voxseg.errors import ConfigError

    with pytest.raises(ConfigError, match=r"a \.zip file or a folder"):
        export_bundle(work_folder, tmp_path / "x.tar", name="x", version="v1")
    assert not (tmp_path / "x.zip").exists()


def test_export_refuses_a_corrupt_checkpoint(tmp_path, work_folder):
    copy = tmp_path / "work"
    shutil.copytree(work_folder, copy)
    weights = WorkDir(copy).checkpoint_dir("3d", 0) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\1")
    with pytest.raises(BundleError, match=r"does not match the sha256 in its state\.json"):
        export_bundle(copy, tmp_path / "x.zip", name="x", version="v1", folds=[0])
