"""The stored case format, preprocess_dataset (resume, workers, bad cases) and snapshots."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from voxseg.dataset import read_dataset
from voxseg.dataset.phantoms import make_phantom
from voxseg.errors import InputImageError, VoxsegError
from voxseg.io import Volume, read_image
from voxseg.planning import Normalization
from voxseg.preprocessing import (
    PreprocessedCase,
    case_paths,
    list_preprocessed,
    preprocess_case,
    preprocess_dataset,
    read_case_record,
    read_preprocessed,
    sample_class_locations,
    snapshot_png,
    write_preprocessed,
)

NORM = [Normalization("zscore")]
TARGET = (1.0, 0.8, 0.8)


def _case(with_label: bool = True) -> PreprocessedCase:
    rng = np.random.default_rng(0)
    img = rng.normal(0, 1, (10, 16, 16)).astype(np.float32)
    lab = np.zeros((10, 16, 16), np.uint8)
    lab[3:7, 4:12, 5:11] = 1
    lab[4:6, 6:9, 6:9] = 2
    lab[0, :, :] = 4  # ignore
    label = Volume(lab, (2.0, 0.8, 0.8)) if with_label else None
    return preprocess_case([Volume(img, (2.0, 0.8, 0.8))], label, target_spacing=TARGET, normalization=NORM)


def test_write_then_read_round_trip_memory_mapped(tmp_path: Path) -> None:
    case = _case()
    json_path = write_preprocessed(tmp_path / "c1", case, settings={"x": 1}, ignore_label=4, max_locations=50)
    assert json_path == tmp_path / "c1.json"
    assert {p.name for p in tmp_path.iterdir()} == {"c1.npy", "c1_seg.npy", "c1.json"}
    back = read_preprocessed(tmp_path / "c1")
    assert isinstance(back.data, np.memmap) and not back.data.flags.writeable
    assert back.data.dtype == np.float32 and back.data.flags.c_contiguous
    np.testing.assert_array_equal(back.data, case.data)
    np.testing.assert_array_equal(back.label, case.label)
    assert back.properties == case.properties
    assert set(back.class_locations) == {1, 2}  # neither background nor the ignore label
    for value, where in back.class_locations.items():
        assert where.shape == (min(50, np.count_nonzero(case.label == value)), 3) and where.dtype == np.int64
        assert np.all(case.label[tuple(where.T)] == value)
    record = read_case_record(tmp_path / "c1")
    assert record["schema_version"] == 1 and record["settings"] == {"x": 1} and record["case_id"] == "c1"
    assert record["class_voxels"] == {str(v): int(np.count_nonzero(case.label == v)) for v in (1, 2)}
    in_memory = read_preprocessed(tmp_path / "c1", mmap=False)
    assert not isinstance(in_memory.data, np.memmap)


def test_locations_are_seeded_and_the_json_stays_compact(tmp_path: Path) -> None:
    case = _case()
    write_preprocessed(tmp_path / "a", case, max_locations=20)
    write_preprocessed(tmp_path / "a_again", case, max_locations=20)
    write_preprocessed(tmp_path / "b", case, max_locations=20, seed=1)
    a, again, b = (read_preprocessed(tmp_path / n).class_locations for n in ("a", "a_again", "b"))
    assert not np.array_equal(a[1], again[1])  # the case id is part of the seed
    np.testing.assert_array_equal(a[1], read_preprocessed(tmp_path / "a").class_locations[1])
    write_preprocessed(tmp_path / "a", case, max_locations=20)
    np.testing.assert_array_equal(a[1], read_preprocessed(tmp_path / "a").class_locations[1])
    assert not np.array_equal(a[1], b[1])
    lines = (tmp_path / "a.json").read_text().splitlines()
    assert len(lines) < 80  # one line per class list, not one per number


def test_sample_class_locations_counts_every_voxel() -> None:
    lab = np.zeros((5, 6), np.int16)
    lab[1:3, 1:4] = 300
    locations, counts = sample_class_locations(lab, max_per_class=100)
    assert counts == {300: 6} and locations[300].tolist() == [[1, 1], [1, 2], [1, 3], [2, 1], [2, 2], [2, 3]]


def test_unlabelled_case_and_stale_label_file(tmp_path: Path) -> None:
    write_preprocessed(tmp_path / "c", _case())
    write_preprocessed(tmp_path / "c", _case(with_label=False))
    assert not case_paths(tmp_path / "c")[1].exists()
    back = read_preprocessed(tmp_path / "c")
    assert back.label is None and back.class_locations == {}


def test_a_failed_rewrite_leaves_no_case_that_looks_done(tmp_path: Path) -> None:
    good = _case()
    write_preprocessed(tmp_path / "c", good)
    bad = PreprocessedCase(good.data, np.array([object()] * 3), good.properties)  # np.save refuses objects
    with pytest.raises(ValueError):
        write_preprocessed(tmp_path / "c", bad)
    assert not (tmp_path / "c.json").exists()
    assert list_preprocessed(tmp_path) == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputImageError, match=r"c\.json: preprocessed case not found"):
        read_preprocessed(tmp_path / "c")
    write_preprocessed(tmp_path / "c", _case())
    record = json.loads((tmp_path / "c.json").read_text())
    record["schema_version"] = 99
    (tmp_path / "c.json").write_text(json.dumps(record))
    with pytest.raises(InputImageError, match="schema version 99"):
        read_preprocessed(tmp_path / "c")
    write_preprocessed(tmp_path / "c", _case())
    np.save(tmp_path / "c.npy", np.zeros((1, 2, 2, 2), np.float32))
    with pytest.raises(InputImageError, match=r"c\.npy: array is float32\(1, 2, 2, 2\)"):
        read_preprocessed(tmp_path / "c")


def _run(dataset: Path, out: Path, **kw):
    calls: list[tuple[int, int, str]] = []
    kw.setdefault("target_spacing", (2.0, 1.0, 1.0))
    kw.setdefault("normalization", NORM)
    kw.setdefault("num_workers", 1)
    report = preprocess_dataset(dataset, out, progress=lambda *a: calls.append(a), **kw)
    return report, calls


def test_preprocess_dataset_resumes(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "pre"
    report, calls = _run(tiny_dataset, out)
    ids = ["case_000", "case_001", "case_002", "case_003"]
    assert report.done == tuple(ids) and report.skipped == ()
    assert [c[:2] for c in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert list_preprocessed(out) == ids
    case = read_preprocessed(out / "case_002")
    assert case.data.shape[1:] == case.label.shape == (12, 16, 16)  # 12x20x20 at 2x0.8x0.8 mm -> 2x1x1 mm
    assert read_case_record(out / "case_002")["settings"]["normalization"] == [NORM[0].to_json()]
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    report, calls = _run(tiny_dataset, out)
    assert report.done == () and report.skipped == tuple(ids) and len(calls) == 4
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes

    (out / "case_001.json").unlink()
    report, _ = _run(tiny_dataset, out)
    assert report.done == ("case_001",) and len(report.skipped) == 3

    report, _ = _run(tiny_dataset, out, target_spacing=(2.0, 1.6, 1.6))  # other settings: everything again
    assert report.done == tuple(ids)
    report, _ = _run(tiny_dataset, out, target_spacing=(2.0, 1.6, 1.6), overwrite=True)
    assert report.done == tuple(ids)


def test_preprocess_dataset_in_worker_processes_with_snapshots(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "pre"
    report, calls = _run(read_dataset(tiny_dataset), out, num_workers=2, snapshots=1)
    assert report.done == ("case_000", "case_001", "case_002", "case_003") and len(calls) == 4
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["case_000.png"]
    with Image.open(out / "snapshots" / "case_000.png") as png:
        assert png.format == "PNG" and png.height > png.width  # three stages stacked
    _run(tiny_dataset, tmp_path / "serial")
    np.testing.assert_array_equal(
        read_preprocessed(out / "case_003").data, read_preprocessed(tmp_path / "serial" / "case_003").data
    )


def test_one_bad_case_is_reported_with_its_file_and_the_others_are_done(tiny_dataset: Path, tmp_path: Path) -> None:
    bad = tiny_dataset / "imagesTr" / "case_002_0000.nii.gz"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    out = tmp_path / "pre"
    with pytest.raises(VoxsegError) as info:
        _run(tiny_dataset, out)
    message = str(info.value)
    assert "failed for 1 of 4 cases" in message and "case_002: " in message and str(bad) in message
    assert "\n" not in message
    assert list_preprocessed(out) == ["case_000", "case_001", "case_003"]


def test_snapshot_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    img = Volume(rng.normal(100, 10, (8, 30, 24)).astype(np.float32), (3.0, 0.7, 0.7), (5.0, 0.0, -3.0))
    lab = np.zeros((8, 30, 24), np.uint8)
    lab[2:6, 10:20, 8:16] = 1
    label = img.with_array(lab)
    case = preprocess_case([img], label, target_spacing=(1.0, 1.0, 1.0), normalization=NORM)
    path = snapshot_png("c9", [img], case, tmp_path / "shots" / "c9.png", raw_label=label, label_names={1: "tumour"})
    with Image.open(path) as png:
        assert png.size[0] > 100 and png.size[1] > 2 * png.size[0] // 3
    assert os.listdir(tmp_path / "shots") == ["c9.png"]


def test_phantoms_microbleed_mask_channel_and_sparse_ignore_label(tmp_path: Path) -> None:
    cmb = make_phantom("brain-swi-cmb", tmp_path / "cmb", cases=1, size=(40, 48, 40))
    norms = [Normalization("percentile_minmax", percentile=99.0, mask_channel=1), Normalization("mask")]
    case_id = read_dataset(cmb).case_ids[0]
    _run(cmb, tmp_path / "pre_cmb", normalization=norms, target_spacing=(1.0, 1.0, 1.0))
    case = read_preprocessed(tmp_path / "pre_cmb" / case_id)
    assert set(np.unique(case.data[1])) == {0.0, 1.0}
    assert case.data[0].min() == 0.0 and case.data[0].max() == 1.0
    assert 1 in case.class_locations

    cord = make_phantom(
        "mouse-spinal-cord", tmp_path / "cord", cases=1, size=(32, 40, 40), options={"annotated_slices": 3}
    )
    first = read_dataset(cord).training[0]
    raw = read_image(first.label)
    _run(cord, tmp_path / "pre_cord", target_spacing=raw.spacing)
    pre = read_preprocessed(tmp_path / "pre_cord" / first.case_id)
    np.testing.assert_array_equal(pre.label, raw.array[pre.properties.crop_box.slices])
    record = read_case_record(tmp_path / "pre_cord" / first.case_id)
    assert record["ignore_label"] == 3 and set(pre.class_locations) == {1, 2}
