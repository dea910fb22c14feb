"""DICOM series scanning and DICOM SEG round trips on series made from pydicom's real CT slices."""

from __future__ import annotations

import numpy as np
import pytest

from tests.dicom_helpers import MR, bright_block, write_series
from voxseg.errors import InputImageError
from voxseg.io import Volume, read_image
from voxseg.io.dicom_scan import find_series, is_dicom_file

highdicom = pytest.importorskip("highdicom")
from voxseg.io.dicom_seg import SegAlgorithm, write_dicom_seg  # noqa: E402

ALGO = SegAlgorithm("liver-model", "1.2.0", "voxseg test")


def two_class_mask(n: int) -> np.ndarray:
    mask = np.stack([bright_block(128, 128, k, n) for k in range(n)]).astype(np.uint8)
    mask[-1, :4, :4] = 2
    return mask


def test_magic_detects_dicom_without_suffix_and_scan_reports_problems(tmp_path):
    write_series(tmp_path / "a", suffix="")
    write_series(tmp_path / "b", prefix="uneven", positions=[0.0, 2.5, 5.0, 12.0])
    write_series(tmp_path / "b", prefix="scout", slices=2, source=MR)
    (tmp_path / "a" / "notes.txt").write_text("not dicom")
    assert is_dicom_file(tmp_path / "a" / "slice000") and not is_dicom_file(tmp_path / "a" / "notes.txt")
    found = {(s.folder.name, s.frames): s for s in find_series(tmp_path)}
    assert found[("a", 5)].problem is None and found[("a", 5)].modality == "CT"
    assert "not evenly spaced" in found[("b", 4)].problem
    assert found[("b", 2)].problem is None  # alone, a 2-slice series is an image; beside others a scout


@pytest.mark.parametrize("reverse", [False, True], ids=["sorted-files", "reversed-files"])
def test_seg_round_trip_on_the_source_grid(tmp_path, reverse):
    files = write_series(tmp_path / "ct", slices=5)
    image = read_image(tmp_path / "ct")
    mask = two_class_mask(5)
    out = write_dicom_seg(
        image.with_array(mask),
        tmp_path / "seg.dcm",
        source_files=files[::-1] if reverse else files,
        label_names={1: "liver", 2: "tumour"},
        algorithm=ALGO,
    )
    seg = highdicom.seg.segread(out)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "tumour"]
    algo = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algo.AlgorithmName, algo.AlgorithmVersion) == ("liver-model", "1.2.0")
    back = read_image(out)
    assert back.same_geometry(image)
    np.testing.assert_array_equal(back.array, mask)
    assert not list(tmp_path.glob(".seg.dcm*"))  # no temporary file left


def test_series_folder_holding_its_seg_still_reads_as_the_image(tmp_path):
    files = write_series(tmp_path / "ct", slices=4)
    image = read_image(tmp_path / "ct")
    mask = np.stack([bright_block(128, 128, k, 4) for k in range(4)]).astype(np.uint8)
    write_dicom_seg(image.with_array(mask), tmp_path / "ct" / "seg.dcm", source_files=files,
                    label_names={1: "nodule"}, algorithm=ALGO)  # fmt: skip
    again = read_image(tmp_path / "ct")
    np.testing.assert_array_equal(again.array, image.array)


def test_labels_off_the_source_grid_or_unnamed_are_refused(tmp_path):
    files = write_series(tmp_path / "ct", slices=4)
    image = read_image(tmp_path / "ct")
    mask = np.ones(image.shape, np.uint8)
    with pytest.raises(InputImageError, match="no name"):
        write_dicom_seg(image.with_array(mask * 3), tmp_path / "s.dcm", source_files=files,
                        label_names={1: "a"}, algorithm=ALGO)  # fmt: skip
    with pytest.raises(InputImageError, match="not on the source series' grid"):
        write_dicom_seg(Volume(mask[:3], image.spacing, image.origin), tmp_path / "s.dcm", source_files=files,
                        label_names={1: "a"}, algorithm=ALGO)  # fmt: skip
    assert not (tmp_path / "s.dcm").exists()
