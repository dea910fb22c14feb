"""``voxseg predict`` as users run it: files, folders, fast mode, and every bad input of the issue."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.inference.helpers import make_plan, sphere, unet_spec, write_work
from voxseg.cli.main import main
from voxseg.io import Volume, read_image, write_image

SPACING = (2.0, 0.8, 0.8)


def ball(seed=0, shape=(10, 24, 24), spacing=SPACING) -> Volume:
    truth = sphere(shape, (5, 12, 12), 5.0, spacing)
    noise = np.random.default_rng(seed).normal(0, 0.05, shape)
    return Volume((truth + noise).astype(np.float32), spacing, (1.0, 2.0, 3.0))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    plan = make_plan(target_spacing=(1.0, 1.0, 1.0))
    return write_work(tmp_path_factory.mktemp("cli") / "work", plan, folds=(0, 1))


@pytest.fixture(scope="module")
def unet_works(tmp_path_factory):
    """Registry networks only: a ``python -m voxseg`` subprocess does not know the test network."""
    root = tmp_path_factory.mktemp("cli2")
    one = write_work(root / "one", make_plan(network=unet_spec(3, 1, 2)))
    two = write_work(root / "two", make_plan(channels=("T1", "T2"), network=unet_spec(3, 2, 2)))
    return one, two


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_file_in_file_out(work, tmp_path, capsys):
    write_image(ball(), tmp_path / "img.nii.gz")
    out = tmp_path / "pred" / "img_seg.nii.gz"
    code = main(["predict", "-i", str(tmp_path / "img.nii.gz"), "-o", str(out), "-m", str(work), "--instances"])
    assert code == 0
    pred, image = read_image(out), read_image(tmp_path / "img.nii.gz")
    assert pred.same_geometry(image) and pred.array.max() == 1
    assert (tmp_path / "pred" / "img_seg_objects.csv").is_file()
    assert "wrote" in capsys.readouterr().out


def test_folder_fast_mode_and_failure_exit_code(work, tmp_path, capsys):
    src = tmp_path / "in"
    for k in range(2):
        write_image(ball(k), src / f"case{k}_0000.nii.gz")
    (src / "broken_0000.nii.gz").write_bytes(b"not an image at all")
    out = tmp_path / "out"
    code = main(["predict", "-i", str(src), "-o", str(out), "-m", str(work), "--fast", "--threads", "1"])
    assert code == 1
    captured = capsys.readouterr()
    assert "2 predicted, 0 up to date, 1 failed" in captured.out
    assert "broken" in captured.err
    manifest = json.loads((out / "predictions.json").read_text())
    assert manifest["settings"]["tta"] is False and manifest["settings"]["overlap"] == 0.25
    assert manifest["settings"]["folds"] == [0]
    assert (out / "case0.nii.gz").is_file() and not (out / "broken.nii.gz").exists()
    (src / "broken_0000.nii.gz").unlink()
    code = main(["predict", "-i", str(src), "-o", str(out), "-m", str(work), "--fast"])
    assert code == 0 and "0 predicted, 2 up to date, 0 failed" in capsys.readouterr().out


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voxseg", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_bad_inputs_one_line_exit_1_nothing_written(unet_works, tmp_path, capsys):
    """Wrong channel count, 2D image for a 3D model, mask geometry, output folder, unwritable folder, all NaN."""
    work, work2ch = unet_works
    img = tmp_path / "img.nii.gz"
    write_image(ball(), img)
    flat = tmp_path / "flat.nii.gz"
    write_image(Volume(np.zeros((24, 24), np.float32)), flat)
    shifted = tmp_path / "shifted_mask.nii.gz"
    write_image(Volume(np.ones((10, 24, 24), np.uint8), SPACING, (9.0, 2.0, 3.0)), shifted)
    all_nan = tmp_path / "nan.nii.gz"
    write_image(Volume(np.full((10, 24, 24), np.nan, np.float32), SPACING), all_nan)
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("x")
    culprit = {  # the file each one-line error names
        "expects 2 channel": "img.nii.gz",
        "2D image": "flat.nii.gz",
        "mask geometry differs": "shifted_mask.nii.gz",
        "output path is a folder": "a_folder",
        "is a file": "a_file",
        "every voxel is NaN": "nan.nii.gz",
    }
    cases = {
        "expects 2 channel": ["-i", str(img), "-o", str(tmp_path / "o1.nii.gz"), "-m", str(work2ch)],
        "2D image": ["-i", str(flat), "-o", str(tmp_path / "o2.nii.gz"), "-m", str(work)],
        "mask geometry differs": [
            "-i",
            str(img),
            "-o",
            str(tmp_path / "o3.nii.gz"),
            "-m",
            str(work),
            "-b",
            str(shifted),
        ],
        "output path is a folder": ["-i", str(img), "-o", str(tmp_path / "a_folder"), "-m", str(work)],
        "is a file": ["-i", str(img), "-o", str(tmp_path / "a_file" / "o.nii.gz"), "-m", str(work)],
        "every voxel is NaN": ["-i", str(all_nan), "-o", str(tmp_path / "o5.nii.gz"), "-m", str(work)],
    }
    before = sorted(p.name for p in tmp_path.iterdir())
    for expected, args in cases.items():
        code = main(["predict", *args])
        err = capsys.readouterr().err
        lines = error_lines(err)
        assert code == 1 and len(lines) == 1 and expected in lines[0], (expected, err)
        assert culprit[expected] in lines[0], (expected, err)
        assert "Traceback" not in err
    r = run_cli("predict", *cases["2D image"])  # the real process: exit status and stderr
    assert r.returncode == 1 and len(error_lines(r.stderr)) == 1 and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written
    assert list((tmp_path / "a_folder").iterdir()) == []


def test_usage_errors_exit_2(work, tmp_path, capsys):
    write_image(ball(), tmp_path / "img.nii.gz")
    base = ["predict", "-i", str(tmp_path / "img.nii.gz"), "-o", str(tmp_path / "o.nii.gz"), "-m", str(work)]
    assert main([*base, "--min-size", "5", "--min-volume", "3"]) == 2
    assert main([*base, "--precision", "fp8"]) == 2
    assert main([*base, "--folds", "a,b"]) == 2
    assert main([*base, "--device", "cuda:7"]) == 2 or __import__("torch").cuda.is_available()
    assert not (tmp_path / "o.nii.gz").exists()
    err = capsys.readouterr().err
    assert "not both" in err and "fp8" in err
    assert (
        main(
            [
                "predict",
                "-i",
                str(tmp_path / "img.nii.gz"),
                "-o",
                str(tmp_path / "o.nii.gz"),
                "-m",
                str(tmp_path / "nope"),
            ]
        )
        == 1
    )
    assert "not found: tried a work folder" in capsys.readouterr().err
