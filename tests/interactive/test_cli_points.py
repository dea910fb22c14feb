"""``voxseg points``: simulated extreme points from a label file, as the CLI writes them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from voxseg.cli.main import main
from voxseg.interactive import load_points, read_points
from voxseg.io import Volume, read_image, write_image

DIRECTION = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0))


def write_label(path):
    label = np.zeros((12, 30, 30), np.uint8)
    label[3:9, 5:20, 8:25] = 1
    label[4:6, 22:28, 2:6] = 2
    write_image(Volume(label, (3.0, 0.8, 0.8), (10.0, -5.0, 2.0), DIRECTION), path)
    return path


def test_points_json_in_world_space_round_trips(tmp_path, capsys):
    label_path = write_label(tmp_path / "case.nii.gz")
    out = tmp_path / "points.json"
    assert main(["points", str(label_path), "-o", str(out), "--label", "1", "--space", "world", "--inward", "0"]) == 0
    assert "wrote 6 world points" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["space"] == "world" and len(data["points"]) == 6
    volume = read_image(label_path)
    voxels, labels = load_points(out, volume)
    assert (volume.array[tuple(voxels.T)] == 1).all() and labels == (1,) * 6
    assert voxels[0][0] == 3 and voxels[1][0] == 8  # z ends of label 1


def test_napari_csv_with_jitter(tmp_path):
    label_path = write_label(tmp_path / "case.nii.gz")
    out = tmp_path / "points.csv"
    args = ["points", str(label_path), "-o", str(out), "--jitter-mm", "1.5", "--seed", "3", "--inward", "1,2,2"]
    assert main(args) == 0
    first = out.read_text()
    assert first.splitlines()[0] == "index,axis-0,axis-1,axis-2,label"
    assert main(args) == 0 and out.read_text() == first  # seeded
    prompt = read_points(out)
    assert prompt.points.shape == (6, 3) and prompt.space == "voxel"


def test_errors_are_one_line(tmp_path, capsys):
    label_path = write_label(tmp_path / "case.nii.gz")
    out = tmp_path / "p.json"
    assert main(["points", str(label_path), "-o", str(out), "--label", "7"]) == 2
    assert "no voxel of label 7" in capsys.readouterr().err
    assert main(["points", str(label_path), "-o", str(out), "--jitter-mm", "2"]) == 2
    assert "--jitter-mm needs --seed" in capsys.readouterr().err
    assert main(["points", str(label_path), "-o", str(tmp_path / "p.csv"), "--space", "world"]) == 2
    assert main(["points", str(tmp_path / "missing.nii.gz"), "-o", str(out)]) == 1
    assert not out.exists()


def test_predict_without_points_refuses_an_interactive_model(tmp_path, capsys):
    from tests.bright_model import spheres_image, write_bright_work
    from voxseg.errors import ConfigError
    from voxseg.inference import Predictor

    work = write_bright_work(tmp_path / "interactive", interactive=True)
    image, _ = spheres_image()
    path = write_image(image, tmp_path / "img.nii.gz")
    code = main(["predict", "-i", str(path), "-o", str(tmp_path / "out.nii.gz"), "-m", str(work)])
    err = capsys.readouterr().err
    assert code == 2 and "is interactive" in err and "--points" in err and "Traceback" not in err
    assert not (tmp_path / "out.nii.gz").exists()
    with pytest.raises(ConfigError, match="segment_from_points"):  # the library says it too
        Predictor.from_work(work).predict(image)


def test_predict_with_points_on_a_2d_image_names_the_image(tmp_path, capsys):
    """The image is checked before the points: a 2D image is the image's fault, not the point file's."""
    from tests.bright_model import write_bright_work

    work = write_bright_work(tmp_path / "interactive", interactive=True)
    flat = write_image(Volume(np.zeros((30, 30), np.float32)), tmp_path / "flat.nii.gz")
    points = tmp_path / "points.json"
    points.write_text(json.dumps([[1, 2, 3]] * 6))
    argv = ["predict", "-i", str(flat), "-o", str(tmp_path / "out.nii.gz"), "-m", str(work), "--points", str(points)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "flat.nii.gz: interactive models are 3D" in err and "points.json" not in err and "Traceback" not in err
    assert not (tmp_path / "out.nii.gz").exists()
