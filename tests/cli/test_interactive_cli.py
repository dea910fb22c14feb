"""``voxseg predict --points`` and ``voxseg evaluate-interactive`` on a real interactive work folder."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from tests.interactive.test_pipeline import interactive_work
from voxseg.cli.main import main
from voxseg.interactive import PointPrompt, extreme_points, write_points
from voxseg.io import read_image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return interactive_work(tmp_path_factory.mktemp("interactive_cli"))


def _case(data):
    image = sorted((data / "imagesTr").iterdir())[0]
    label = sorted((data / "labelsTr").iterdir())[0]
    return image, read_image(label)


def test_predict_with_points_in_voxel_and_world_space(trained, tmp_path, capsys):
    data, work, _ = trained
    image_path, label = _case(data)
    points = extreme_points(label.array != 0)
    write_points(tmp_path / "points.json", PointPrompt(points))
    out = tmp_path / "mask.nii.gz"
    args = ["predict", "-i", str(image_path), "-o", str(out), "-m", str(work), "--no-tta"]
    assert main([*args, "--points", str(tmp_path / "points.json")]) == 0
    mask = read_image(out)
    assert mask.geometry == label.geometry and set(np.unique(mask.array)) <= {0, 1}
    world = np.array([label.index_to_world(p) for p in points])
    write_points(tmp_path / "world.json", PointPrompt(world, space="world"))
    out2 = tmp_path / "mask2.nii.gz"
    assert main(["predict", "-i", str(image_path), "-o", str(out2), "-m", str(work), "--no-tta",
                 "--points", str(tmp_path / "world.json")]) == 0  # fmt: skip
    np.testing.assert_array_equal(read_image(out2).array, mask.array)
    # napari CSV: the same points as voxel indices
    csv_path = tmp_path / "points.csv"
    write_points(csv_path, PointPrompt(points))
    out3 = tmp_path / "mask3.nii.gz"
    assert main(["predict", "-i", str(image_path), "-o", str(out3), "-m", str(work), "--no-tta",
                 "--points", str(csv_path)]) == 0  # fmt: skip
    np.testing.assert_array_equal(read_image(out3).array, mask.array)


def test_bad_points_are_one_line_errors(trained, tmp_path, capsys):
    data, work, _ = trained
    image_path, label = _case(data)
    points = extreme_points(label.array != 0)
    world = np.array([label.index_to_world(p) for p in points])
    cases = {
        "few.json": (PointPrompt(points[:4]), "fewer than the 6 needed"),
        "outside.json": (PointPrompt(np.vstack([points[:5], [[0, 0, 500]]])), "outside the image"),
        "same.json": (PointPrompt(np.repeat(points[:1], 6, axis=0)), "are the same voxel"),
        "world_as_voxel.json": (PointPrompt(world), "world coordinates"),
    }
    for name, (prompt, message) in cases.items():
        write_points(tmp_path / name, prompt)
        out = tmp_path / f"{name}.nii.gz"
        code = main(
            ["predict", "-i", str(image_path), "-o", str(out), "-m", str(work), "--points", str(tmp_path / name)]
        )
        err = capsys.readouterr().err
        assert code == 1, (name, err)
        assert message in err and name in err, err
        assert len([line for line in err.splitlines() if "error" in line]) == 1, err  # one error line
        assert not out.exists()


def test_evaluate_interactive_writes_the_curve(trained, tmp_path, capsys):
    data, work, _ = trained
    out = tmp_path / "eval"
    cases = ["soft_tissue_mri_000", "soft_tissue_mri_001"]
    args = ["evaluate-interactive", str(work), str(data), "-o", str(out), "--clicks", "2", "--no-tta"]
    assert main([*args, "--cases", cases[0], "--cases", cases[1]]) == 0
    rows = list(csv.DictReader((out / "curve.csv").open()))
    assert [int(r["k"]) for r in rows] == [0, 1, 2]
    assert all(0.0 <= float(r["mean_dice"]) <= 1.0 for r in rows)
    per_case = list(csv.DictReader((out / "cases.csv").open()))
    assert [r["case"] for r in per_case] == cases
    with Image.open(out / "curve.png") as img:
        assert img.format == "PNG" and img.size[0] > 100
    result = json.loads((out / "interactive.json").read_text())
    assert result["automatic_dice"] is None and len(result["mean_dice"]) == 3
    assert "k=2" in capsys.readouterr().out
    assert main(["evaluate-interactive", str(work), str(data), "-o", str(out), "--cases", "nope"]) == 2
