"""``voxseg demo``: one phantom mouse CT segmented by the built-in nodule model, offline."""

from __future__ import annotations

import csv

import pytest
from PIL import Image

from voxseg.bundle import builtin_index_path

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        "mouse-lung-nodules" not in builtin_index_path().read_text(), reason="built-in nodule model not shipped"
    ),
]


def test_demo_cli_writes_mask_table_and_overview(tmp_path, capsys):
    from voxseg.cli.main import main
    from voxseg.io import read_image

    out = tmp_path / "demo"
    argv = ["demo", "-o", str(out), "--models-dir", str(tmp_path / "m"), "--cache-dir", str(tmp_path / "c")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for name in ("demo_ct.nii.gz", "demo_truth.nii.gz", "demo_nodules.nii.gz", "demo_objects.csv", "demo_overview.png"):
        assert (out / name).is_file(), name
        assert name in printed
    assert "nodules found" in printed and "synthetic phantoms" in printed
    with open(out / "demo_objects.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows, "the demo case has nodules; the table should list some"
    mask = read_image(out / "demo_nodules.nii.gz")
    ct = read_image(out / "demo_ct.nii.gz")
    assert mask.shape == ct.shape and mask.spacing == ct.spacing
    assert int(mask.array.max()) == len(rows)  # instance ids 1..N
    assert min(int(r["voxels"]) for r in rows) >= 150
    with Image.open(out / "demo_overview.png") as png:
        assert png.width > 200 and png.height > 200
