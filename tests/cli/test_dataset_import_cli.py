"""`voxseg dataset import` as a user runs it: a folder of images and masks -> dataset -> plan -> train -> predict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_case
from voxseg.cli.main import main
from voxseg.io import read_image, write_image

FORMATS = (".nii.gz", ".nrrd", ".mha", ".tif")
MASK_NAMES = ("{}_seg.nii.gz", "{}_mask.nrrd", "{}-seg.mha", "{}_labels.nii.gz")


def _user_folder(root: Path, cases: int = 4) -> Path:
    """mydata/images + mydata/masks in mixed formats and naming conventions, lesion = 2."""
    rng = np.random.default_rng(0)
    for i in range(cases):
        (img,), lab = make_case(rng)
        write_image(img, root / "images" / f"patient{i}{FORMATS[i % 4]}")
        write_image(lab.with_array(lab.array * 2), root / "masks" / MASK_NAMES[i % 4].format(f"patient{i}"))
    return root


def test_import_prints_a_table_and_refusals_exit_1(tmp_path: Path, capsys) -> None:
    data = _user_folder(tmp_path / "mydata", cases=3)
    (data / "masks" / "ghost_seg.nii.gz").write_bytes((data / "masks" / "patient0_seg.nii.gz").read_bytes())
    out = tmp_path / "ds"
    args = ["dataset", "import", str(data / "images"), str(data / "masks"), "-o", str(out)]
    assert main([*args, "--labels", '{"2": "lesion"}']) == 1
    captured = capsys.readouterr()
    assert "patient2" in captured.out and "training" in captured.out
    assert "ghost_seg.nii.gz: mask without an image" in captured.err
    assert "--skip-bad" in captured.err and "Traceback" not in captured.err and not out.exists()

    (tmp_path / "labels.json").write_text('{"2": "lesion"}')
    code = main([*args, "--labels", str(tmp_path / "labels.json"), "--skip-bad", "--channels", "MRI"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "wrote" in captured.out and "3 training" in captured.out and "'lesion': 1" in captured.out
    assert main(["dataset", "verify", str(out)]) == 0
    assert read_image(out / "labelsTr" / "patient1.nii.gz").array.max() == 1  # 2 -> 1, consecutive labels
    # the same command again: nothing to do; other options: the folder is not empty (usage error, exit 2)
    assert main([*args, "--labels", str(tmp_path / "labels.json"), "--skip-bad", "--channels", "MRI"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main([*args, "--skip-bad"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args[:-1], str(tmp_path / "ds2"), "--skip-bad", "--channels", "CT,PET"]) == 2
    assert "2 name(s) for 1 channel(s)" in capsys.readouterr().err


def test_plan_on_images_and_masks_suggests_the_import_command(tmp_path: Path) -> None:
    data = _user_folder(tmp_path / "mydata", cases=2)
    r = subprocess.run(
        [sys.executable, "-m", "voxseg", "plan", str(data), "-o", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    expected = f"voxseg dataset import {data / 'images'} {data / 'masks'} -o {tmp_path / 'mydata_dataset'}"
    assert expected in r.stderr.replace("\n", "")


@pytest.mark.slow
def test_import_then_verify_plan_train_predict(tmp_path: Path, capsys) -> None:
    data = _user_folder(tmp_path / "mydata", cases=4)
    ds, work = tmp_path / "Dataset001_Mine", tmp_path / "work"
    args = ["dataset", "import", str(data / "images"), str(data / "masks"), "-o", str(ds), "--channels", "MRI"]
    assert main([*args, "--labels", '{"2": "lesion"}']) == 0
    assert main(["dataset", "verify", str(ds)]) == 0
    assert main(["plan", str(ds), "-o", str(work), "--folds", "2", "-j", "1", "--config", "3d"]) == 0
    quick = ["--epochs", "1", "--minutes", "0.05", "--set", "iterations_per_epoch=2", "--set", "augmentation=light"]
    assert main(["train", str(work), "--fold", "0", *quick, "--workers", "0"]) == 0
    capsys.readouterr()
    image = data / "images" / "patient1.nrrd"
    out = tmp_path / "pred" / "patient1.nii.gz"
    code = main(["predict", "-i", str(image), "-o", str(out), "-m", str(work), "--no-tta"])
    assert code == 0, capsys.readouterr().err
    pred, src = read_image(out), read_image(image)
    assert pred.same_geometry(src) and set(np.unique(pred.array)) <= {0, 1}
