"""Input collection for DICOM: series folders, studies, nested folders, lists and --series, no model needed."""

from __future__ import annotations

import pytest

from tests.dicom_helpers import MR, write_series
from voxseg.errors import InputImageError
from voxseg.inference.inputs import collect_inputs, select_inputs


def test_series_folder_is_one_case_named_after_it(tmp_path):
    write_series(tmp_path / "ct_series", slices=4)
    [case] = collect_inputs(tmp_path / "ct_series")
    assert case.case_id == "ct_series" and case.images == (tmp_path / "ct_series",)
    assert case.series_uid is not None and case.is_dicom


def test_nested_study_gives_one_case_per_series_and_reports_the_rest(tmp_path):
    write_series(tmp_path / "p1" / "CT", slices=4)
    write_series(tmp_path / "p2" / "CT", slices=4)
    write_series(tmp_path / "p2" / "mixed", prefix="ct", description="Chest")
    write_series(tmp_path / "p2" / "mixed", prefix="mr", source=MR, description="T1 axial")
    selection = select_inputs(tmp_path, series="CT")
    ids = sorted(c.case_id for c in selection.cases)
    assert ids[:2] == ["p1_CT", "p2_CT"] and ids[2].startswith("p2_mixed_") and "Chest" in ids[2]
    [skip] = selection.skipped
    assert skip["modality"] == "MR" and skip["description"] == "T1 axial" and "--series" in skip["reason"]
    by_text = select_inputs(tmp_path, series="t1 AX").cases  # a description substring
    assert [c.case_id for c in by_text] == ["p2_mixed_1_T1_axial"]


def test_single_file_series_stay_2d_cases_named_after_the_file(tmp_path):
    write_series(tmp_path, prefix="xray_a", slices=1)
    write_series(tmp_path, prefix="xray_b", slices=1)
    cases = collect_inputs(tmp_path)
    assert sorted(c.case_id for c in cases) == ["xray_a000", "xray_b000"]
    assert all(c.series_uid is None and c.images[0].suffix == ".dcm" for c in cases)


def test_only_skipped_series_is_a_one_line_error_with_the_reasons(tmp_path):
    write_series(tmp_path / "s", positions=[0.0, 2.5, 5.0, 20.0])  # a missing slice
    with pytest.raises(InputImageError) as info:
        collect_inputs(tmp_path / "s")
    assert "1 DICOM series skipped" in str(info.value) and "not evenly spaced" in str(info.value)
    assert "\n" not in str(info.value)


def test_list_line_naming_a_series_folder(tmp_path):
    write_series(tmp_path / "a", slices=3)
    (tmp_path / "list.csv").write_text("image\na\n")
    [case] = collect_inputs(tmp_path / "list.csv")
    assert case.case_id == "a" and case.series_uid is not None
