"""The command line as a user runs it: real processes for exit codes, in-process for the rest."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.conftest import write_tiny_dataset
from voxseg.cli.main import main


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voxseg", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_version_and_usage_errors():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("voxseg ")
    r = run_cli("dataset", "verify")  # missing argument
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    r = run_cli("no-such-command")
    assert r.returncode == 2


def test_info_json(capsys):
    assert main(["info", "--json", "--cache", "/tmp/vx-cache"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["paths"]["cache"] == {"path": "/tmp/vx-cache", "from": "flag"}
    assert report["packages"]["torch"]
    assert report["cpu"]["torch_threads"] >= 1
    assert report["devices"]["default"] in ("cpu", "cuda")


def test_info_env_var(monkeypatch, capsys):
    monkeypatch.setenv("VOXSEG_MODELS", "/tmp/vx-models")
    assert main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["paths"]["models"]["from"] == "$VOXSEG_MODELS"


def test_verify_good_dataset(tiny_dataset, capsys):
    assert main(["dataset", "verify", str(tiny_dataset)]) == 0
    assert "OK" in capsys.readouterr().out


def test_verify_broken_dataset_lists_problems_and_exits_1(tiny_dataset):
    (tiny_dataset / "labelsTr" / "case_001.nii.gz").unlink()
    img = tiny_dataset / "imagesTr" / "case_002_0000.nii.gz"
    img.write_bytes(img.read_bytes()[:-40])
    r = run_cli("dataset", "verify", str(tiny_dataset))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr + r.stdout
    assert "case_001.nii.gz: label file missing" in r.stderr
    assert "case_002_0000.nii.gz" in r.stderr and "truncated" in r.stderr
    assert "2 error(s)" in r.stderr


def test_verify_missing_folder_is_one_line(tmp_path):
    r = run_cli("dataset", "verify", str(tmp_path / "nope"))
    assert r.returncode == 1
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert errors and all("nope" in ln for ln in errors)
    assert "Traceback" not in r.stderr


def test_show_writes_png(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "pics" / "one.png"
    assert main(["dataset", "show", str(tiny_dataset), "--case", "case_002", "-o", str(out)]) == 0
    img = np.asarray(Image.open(out))
    assert img.ndim == 3 and img.shape[2] == 3 and img.shape[0] > 100
    # the red label overlay is visible
    assert np.any((img[..., 0] > 200) & (img[..., 1] < 80))
    assert (
        main(["dataset", "show", str(tiny_dataset), "-c", "case_000", "-c", "case_001", "-o", str(tmp_path / "many")])
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["case_000.png", "case_001.png"]
    img_file = tiny_dataset / "imagesTr" / "case_000_0000.nii.gz"
    assert main(["dataset", "show", str(img_file), "-o", str(tmp_path / "img.png")]) == 0
    assert (tmp_path / "img.png").is_file()


def test_show_unknown_case(tiny_dataset, capsys):
    assert main(["dataset", "show", str(tiny_dataset), "--case", "zzz"]) == 1
    assert "zzz" in capsys.readouterr().err


def test_convert(tmp_path, capsys):
    src = write_tiny_dataset(tmp_path / "src", cases=2)
    assert main(["dataset", "convert", str(src), str(tmp_path / "out"), "--file-ending", ".mha"]) == 0
    assert (tmp_path / "out" / "imagesTr" / "case_000_0000.mha").is_file()
    assert main(["dataset", "convert", str(src), str(tmp_path / "out")]) == 1
    assert "already holds" in capsys.readouterr().err


def test_phantom_then_verify_then_show(tmp_path):
    """The issue's acceptance path, as a user types it."""
    data = tmp_path / "d"
    r = run_cli("dataset", "phantom", "mouse-lung-ct", str(data), "--cases", "4", "--size", "48")
    assert r.returncode == 0, r.stderr
    assert json.loads((data / "dataset.json").read_text())["numTraining"] == 4
    r = run_cli("dataset", "verify", str(data))
    assert r.returncode == 0, r.stderr
    r = run_cli("dataset", "show", str(data), "-o", str(tmp_path / "lung.png"))
    assert r.returncode == 0 and (tmp_path / "lung.png").is_file()


def test_phantom_list_and_bad_input(tmp_path, capsys):
    assert main(["dataset", "phantom", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("mouse-lung-ct", "soft-tissue-mri", "pet-mip", "mouse-spinal-cord", "brain-swi-cmb"):
        assert name in out
    assert "annotated_slices" in out
    assert main(["dataset", "phantom", "mouse-lung", str(tmp_path / "x")]) == 1
    assert "did you mean mouse-lung-ct" in capsys.readouterr().err
    assert main(["dataset", "phantom", "pet-mip", str(tmp_path / "y"), "-O", "nope=1"]) == 2
    assert "has no option 'nope'" in capsys.readouterr().err
    assert main(["dataset", "phantom", "pet-mip", str(tmp_path / "y"), "--size", "a,b"]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_sparse_spinal_cord_phantom_verifies(tmp_path, capsys):
    data = tmp_path / "cord"
    assert (
        main(
            [
                "dataset",
                "phantom",
                "mouse-spinal-cord",
                str(data),
                "-n",
                "2",
                "--size",
                "32",
                "-O",
                "annotated_slices=3",
            ]
        )
        == 0
    )
    assert json.loads((data / "dataset.json").read_text())["labels"]["ignore"] == 3
    assert main(["dataset", "verify", str(data)]) == 0


def test_evaluate_folders_cli(tiny_dataset, tmp_path, capsys):
    import shutil

    from voxseg.io import read_image, write_image

    pred = tmp_path / "pred"
    pred.mkdir()
    for f in (tiny_dataset / "labelsTr").iterdir():
        shutil.copy(f, pred / f.name)
    lab = read_image(pred / "case_000.nii.gz")
    write_image(lab.with_array(lab.array * 0), pred / "case_000.nii.gz")  # one case missed entirely
    assert main(["evaluate", str(pred), str(tiny_dataset / "labelsTr"), "-o", str(tmp_path / "rep")]) == 0
    report = json.loads((tmp_path / "rep" / "evaluation.json").read_text())
    dice = {c["case"]: c["classes"]["1"]["dice"] for c in report["cases"]}
    assert dice == {"case_000": 0.0, "case_001": 1.0, "case_002": 1.0, "case_003": 1.0}
    assert (tmp_path / "rep" / "evaluation_cases.csv").is_file()
    (pred / "case_003.nii.gz").unlink()
    assert main(["evaluate", str(pred), str(tiny_dataset / "labelsTr")]) == 1
    assert "case_003" in capsys.readouterr().err
