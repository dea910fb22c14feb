"""run.json: a typed, versioned record with one writer (write_run_record)."""

from __future__ import annotations

import json

import pytest

from voxseg.errors import ConfigError
from voxseg.workdir.run_record import RunRecord, write_run_record


def test_writer_merges_fields_types_them_and_keeps_extras(tmp_path):
    first = write_run_record(tmp_path, replace=True, status="running", epoch=2, step=40, fold=0, plan_sha256="ab")
    assert first.status == "running" and first.epoch == 2 and first.get("fold") == 0
    second = write_run_record(tmp_path, val_dice=0.8, validation={"cases": ["a"]}, ended="time budget")
    assert (second.epoch, second.val_dice, second.get("plan_sha256"), second.get("ended")) == (
        2,
        0.8,
        "ab",
        "time budget",
    )
    data = json.loads((tmp_path / "run.json").read_text())
    assert data["schema_version"] == 1 and data["validation"] == {"cases": ["a"]} and data["fold"] == 0
    assert RunRecord.read(tmp_path) == second
    # replace starts a new record (a resumed run's old validation is stale)
    third = write_run_record(tmp_path, replace=True, status="running", epoch=3)
    assert third.val_dice is None and third.get("fold") is None


def test_bad_values_are_refused_and_nan_is_stored_as_null(tmp_path):
    with pytest.raises(ConfigError, match="status 'done'"):
        write_run_record(tmp_path, replace=True, status="done")
    with pytest.raises(ConfigError, match="epoch must be an integer"):
        write_run_record(tmp_path, replace=True, status="running", epoch=-1)
    assert not (tmp_path / "run.json").exists()  # nothing written for a refused record
    record = write_run_record(tmp_path, replace=True, status="finished", val_dice=float("nan"))
    assert record.val_dice is None and json.loads((tmp_path / "run.json").read_text())["val_dice"] is None


def test_a_newer_schema_is_a_clear_error(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"schema_version": 2, "status": "running"}))
    with pytest.raises(ConfigError, match="schema_version 2"):
        RunRecord.read(tmp_path)
