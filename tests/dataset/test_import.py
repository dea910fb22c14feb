"""``import_dataset``: real folders of images and masks in several formats -> nnU-Net v2 layout."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ORIGIN, SPACING, make_case
from tests.io.helpers import write_dicom_series
from voxseg.dataset import read_dataset, verify_dataset
from voxseg.dataset.importer import ImportRefused, import_dataset, import_hint, parse_labels
from voxseg.errors import ConfigError, DatasetFormatError
from voxseg.io import Volume, read_image, write_image


def _case(seed: int, shape=(8, 16, 16), n_channels: int = 1):
    return make_case(np.random.default_rng(seed), shape=shape, n_channels=n_channels)


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def _mixed_folder(root: Path) -> tuple[Path, Path]:
    """Four cases, four image formats, four mask-naming conventions."""
    images, masks = root / "images", root / "masks"
    names = [
        ("liver_01.nii.gz", "liver_01_seg.nrrd"),
        ("liver_02.nrrd", "liver_02_mask.nii.gz"),
        ("liver_03.mha", "liver_03-seg.mha"),
        ("liver_04.tif", "liver_04_labels.nii"),
        ("liver_05.nii.gz", "liver_05_gt.nii.gz"),
    ]
    for seed, (image_name, mask_name) in enumerate(names):
        (img,), lab = _case(seed)
        write_image(img, images / image_name)
        write_image(lab, masks / mask_name)
    return images, masks


def test_mixed_formats_and_mask_suffixes_become_a_verified_dataset(tmp_path: Path) -> None:
    images, masks = _mixed_folder(tmp_path)
    before = _tree_digest(tmp_path)
    report = import_dataset(images, masks, out=tmp_path / "ds", labels='{"1": "liver"}', channels=["CT"])
    assert [c.case_id for c in report.cases] == [f"liver_0{i}" for i in range(1, 6)]
    assert all(c.status == "training" and c.values == (0, 1) for c in report.cases)
    assert not report.errors and report.labels == {"background": 0, "liver": 1}
    ds = read_dataset(tmp_path / "ds")
    assert ds.spec.channel_names == {0: "CT"} and ds.spec.num_training == 5
    assert verify_dataset(tmp_path / "ds") == []
    lab = read_image(ds.case("liver_04").label)
    img = read_image(ds.case("liver_04").images[0])
    assert lab.same_geometry(img) and np.allclose(img.spacing, SPACING, rtol=1e-6)
    assert np.allclose(img.origin, ORIGIN)
    assert _tree_digest(tmp_path / "images") | _tree_digest(tmp_path / "masks")  # inputs still there
    assert {k: v for k, v in _tree_digest(tmp_path).items() if not k.startswith("ds")} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_two_channels_per_case_and_channels_of_different_shapes(tmp_path: Path) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    for seed in range(3):
        (t1, t2), lab = _case(seed, n_channels=2)
        write_image(t1, images / f"p{seed}_0000.nii.gz")
        write_image(t2, images / f"p{seed}_0001.mha")
        write_image(lab, masks / f"p{seed}.nii.gz")
    (t1, _), lab = _case(9, n_channels=2)
    write_image(t1, images / "bad_0000.nii.gz")
    write_image(Volume(np.zeros((8, 16, 12), np.float32), SPACING, ORIGIN), images / "bad_0001.nii.gz")
    write_image(lab, masks / "bad_seg.nii.gz")
    with pytest.raises(ImportRefused) as info:
        import_dataset(images, masks, out=tmp_path / "ds", channels=["T1", "T2"])
    (problem,) = info.value.report.errors
    assert problem.path.name == "bad_0001.nii.gz" and "channel 1 has shape (8, 16, 12)" in problem.message
    assert not (tmp_path / "ds").exists()
    report = import_dataset(images, masks, out=tmp_path / "ds", channels=["T1", "T2"], skip_bad=True)
    assert [c.status for c in report.cases] == ["refused", "training", "training", "training"]
    assert read_dataset(tmp_path / "ds").spec.channel_names == {0: "T1", 1: "T2"}
    assert (tmp_path / "ds" / "imagesTr" / "p2_0001.nii.gz").is_file()
    assert verify_dataset(tmp_path / "ds") == []


def test_numbered_single_channel_cases_are_not_taken_for_channels(tmp_path: Path) -> None:
    for seed in range(2):
        (img,), lab = _case(seed)
        write_image(img, tmp_path / "images" / f"scan_{seed + 1:04d}.nii.gz")
        write_image(lab, tmp_path / "masks" / f"scan_{seed + 1:04d}.nii.gz")
    report = import_dataset(tmp_path / "images", tmp_path / "masks", out=tmp_path / "ds")
    assert [(c.case_id, c.channels) for c in report.cases] == [("scan_0001", 1), ("scan_0002", 1)]


def test_csv_and_tsv_of_pairs(tmp_path: Path) -> None:
    rows = []
    for seed in range(3):
        (a, b), lab = _case(seed, n_channels=2)
        write_image(a, tmp_path / "raw" / f"s{seed}_ct.nrrd")
        write_image(b, tmp_path / "raw" / f"s{seed}_pet.nii.gz")
        write_image(lab, tmp_path / "seg" / f"s{seed}_seg.nii.gz")
        rows.append([f"raw/s{seed}_ct.nrrd", str(tmp_path / "raw" / f"s{seed}_pet.nii.gz"), f"seg/s{seed}_seg.nii.gz"])
    (tmp_path / "pairs.csv").write_text("ct,pet,mask\n" + "\n".join(",".join(r) for r in rows) + "\n")
    report = import_dataset(tmp_path / "pairs.csv", out=tmp_path / "ds", channels=["CT", "PET"])
    assert [c.case_id for c in report.cases] == ["s0", "s1", "s2"] and not report.problems
    assert verify_dataset(tmp_path / "ds") == []
    # no header, tab-separated, a case column is not needed; a missing file is listed with its line
    (tmp_path / "pairs.tsv").write_text("\n".join("\t".join(r) for r in rows) + "\nraw/nope.nrrd\traw/x\tseg/y\n")
    with pytest.raises(ImportRefused) as info:
        import_dataset(tmp_path / "pairs.tsv", out=tmp_path / "ds2")
    (problem,) = info.value.report.errors
    assert problem.path == tmp_path / "raw" / "nope.nrrd" and "line 4 of pairs.tsv" in problem.message


def test_every_problem_is_listed_and_nothing_written(tmp_path: Path) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    names = ("good", "moved", "small", "fuzzy", "floaty", "extra", "lonely")
    for seed, name in enumerate(names):
        (img,), lab = _case(seed)
        write_image(img, images / f"{name}.nii.gz")
    write_image(img, images / "twin.nii.gz")  # the same image as "lonely"
    write_image(lab, masks / "good_seg.nii.gz")
    write_image(lab, masks / "twin_seg.nii.gz")
    write_image(Volume(lab.array, SPACING, (0.0, 0.0, 0.0)), masks / "moved_seg.nii.gz")  # header differs
    write_image(Volume(lab.array[:, :8], SPACING, ORIGIN), masks / "small_seg.nii.gz")  # shape differs
    write_image(lab.with_array(lab.array * 0.5), masks / "fuzzy_seg.nii.gz")  # float mask, non-integer
    write_image(lab.with_array(lab.array.astype(np.float32)), masks / "floaty_seg.nii.gz")  # holds integers: cast
    write_image(lab.with_array(lab.array * 3), masks / "extra_seg.nii.gz")  # value 3 not in --labels
    write_image(lab, masks / "orphan_seg.nii.gz")  # mask without image ("lonely": image without mask)
    (masks / "notes.txt").write_text("not an image")
    with pytest.raises(ImportRefused) as info:
        import_dataset(images, masks, out=tmp_path / "ds", labels={1: "tumour"})
    report = info.value.report
    errors = {p.path.name: p.message for p in report.errors}
    assert "origin" in errors["moved_seg.nii.gz"] and "--fix-geometry" in errors["moved_seg.nii.gz"]
    assert "shape (8, 8, 16)" in errors["small_seg.nii.gz"]
    assert "non-integer values (e.g. 0.5)" in errors["fuzzy_seg.nii.gz"]
    assert "[3] are not in --labels" in errors["extra_seg.nii.gz"]
    assert "image without a mask" in errors["lonely.nii.gz"]
    assert "mask without an image" in errors["orphan_seg.nii.gz"]
    assert "same image as case lonely" in errors["twin.nii.gz"]
    warnings = {p.path.name: p.message for p in report.problems if p.severity == "warning"}
    assert "cast to integers" in warnings["floaty_seg.nii.gz"] and "not an image" in warnings["notes.txt"]
    refused = {c.case_id for c in report.refused}
    assert refused == {"moved", "small", "fuzzy", "extra", "lonely", "twin"}
    assert not (tmp_path / "ds").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    report = import_dataset(
        images,
        masks,
        out=tmp_path / "ds",
        labels={1: "tumour"},
        fix_geometry=True,
        unlabelled_to_test=True,
        skip_bad=True,
    )
    status = {c.case_id: c.status for c in report.cases}
    assert status == {
        "good": "training",
        "moved": "training",
        "floaty": "training",
        "lonely": "test",
        "small": "refused",
        "fuzzy": "refused",
        "extra": "refused",
        "twin": "refused",
    }
    moved = read_dataset(tmp_path / "ds").case("moved")
    assert read_image(moved.label).same_geometry(read_image(moved.images[0]))
    assert (tmp_path / "ds" / "imagesTs" / "lonely_0000.nii.gz").is_file()
    assert verify_dataset(tmp_path / "ds") == []


def test_2d_png_and_tiff_with_255_masks_are_renumbered(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for k, ext in enumerate((".png", ".tif", ".png")):
        img = rng.integers(0, 200, (24, 32)).astype(np.uint8)
        lab = np.zeros((24, 32), np.uint8)
        lab[5:12, 8:20] = 255
        lab[14:18, 2:6] = 128
        write_image(Volume(img, (0.5, 0.5)), tmp_path / "images" / f"cell{k}{ext}")
        write_image(Volume(lab, (0.5, 0.5)), tmp_path / "masks" / f"cell{k}_mask.png")
    report = import_dataset(tmp_path / "images", tmp_path / "masks", out=tmp_path / "ds")
    assert report.labels == {"background": 0, "label_128": 1, "label_255": 2}
    assert any("255->2" in p.message for p in report.problems)
    ds = read_dataset(tmp_path / "ds")
    lab = read_image(ds.case("cell1").label)
    assert lab.ndim == 2 and sorted(np.unique(lab.array)) == [0, 1, 2] and lab.spacing == (0.5, 0.5)
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["label_values_renumbered"]["255"] == 2
    assert verify_dataset(tmp_path / "ds") == []


def test_a_dicom_series_folder_is_an_image(tmp_path: Path) -> None:
    (img,), lab = _case(0)
    hu = (img.array - 1000).astype(np.int16)
    write_dicom_series(
        tmp_path / "images" / "ct_7", hu, spacing=SPACING, origin=ORIGIN, series_uid="1.2.826.0.1.3680043.2.1125.7"
    )
    write_image(lab, tmp_path / "masks" / "ct_7_seg.nii.gz")
    report = import_dataset(tmp_path / "images", tmp_path / "masks", out=tmp_path / "ds")
    (case,) = report.cases
    assert case.case_id == "ct_7" and case.status == "training" and case.shape == (8, 16, 16)
    assert any("looks like CT" in p.message for p in report.problems)
    written = read_image(tmp_path / "ds" / "imagesTr" / "ct_7_0000.nii.gz")
    assert np.array_equal(written.array, hu)
    assert verify_dataset(tmp_path / "ds") == []


def test_output_folder_rules_rerun_and_overwrite(tmp_path: Path) -> None:
    images, masks = _mixed_folder(tmp_path)
    out = tmp_path / "ds"
    import_dataset(images, masks, out=out)
    stamp = (out / "dataset.json").stat().st_mtime_ns
    again = import_dataset(images, masks, out=out)  # same inputs and options: nothing to do
    assert again.up_to_date and (out / "dataset.json").stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match=r"not empty.*--overwrite"):
        import_dataset(images, masks, out=out, labels={1: "liver"})
    report = import_dataset(images, masks, out=out, labels={1: "liver"}, overwrite=True)
    assert report.labels == {"background": 0, "liver": 1} and read_dataset(out).spec.labels["liver"] == 1
    with pytest.raises(ConfigError, match="outside the inputs"):
        import_dataset(images, masks, out=tmp_path, overwrite=True)
    assert images.is_dir() and masks.is_dir()
    with pytest.raises(DatasetFormatError, match="no images"):
        (tmp_path / "empty").mkdir()
        import_dataset(tmp_path / "empty", masks, out=tmp_path / "ds3")


def test_one_folder_with_subfolders_or_seg_files_and_the_hint(tmp_path: Path) -> None:
    _mixed_folder(tmp_path / "mydata")
    assert import_hint(tmp_path / "mydata").startswith("voxseg dataset import")
    with pytest.raises(DatasetFormatError, match=r"voxseg dataset import .*images .*masks -o"):
        read_dataset(tmp_path / "mydata")
    report = import_dataset(tmp_path / "mydata", out=tmp_path / "ds")
    assert len(report.cases) == 5 and not report.errors
    flat = tmp_path / "flat"
    for seed in range(2):
        (img,), lab = _case(seed)
        write_image(img, flat / f"c{seed}.nii.gz")
        write_image(lab, flat / f"c{seed}_seg.nii.gz")
    assert import_hint(flat) == f"voxseg dataset import {flat} -o {tmp_path / 'flat_dataset'}"
    report = import_dataset(flat, out=tmp_path / "ds2")
    assert [c.case_id for c in report.cases] == ["c0", "c1"] and not report.errors
    assert import_hint(tmp_path / "ds2") == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"1": "liver", "2": "tumour"}', {0: "background", 1: "liver", 2: "tumour"}),
        ('{"liver": 1}', {0: "background", 1: "liver"}),
        ({2: "b", 1: "a"}, {0: "background", 1: "a", 2: "b"}),
    ],
)
def test_parse_labels(text, expected) -> None:
    assert parse_labels(text) == expected


def test_parse_labels_file_and_errors(tmp_path: Path) -> None:
    (tmp_path / "labels.json").write_text('{"1": "vessel"}')
    assert parse_labels(str(tmp_path / "labels.json")) == {0: "background", 1: "vessel"}
    for bad in ("{1: x}", '{"0": "liver"}', '["a"]', str(tmp_path / "nope.json")):
        with pytest.raises(ConfigError):
            parse_labels(bad)
