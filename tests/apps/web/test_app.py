"""The Streamlit page driven by Streamlit's AppTest (the real script, real model, real files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit", reason='the web app needs Streamlit: pip install "voxseg[web]"')

from streamlit.testing.v1 import AppTest

from tests.apps.web.helpers import pet_case
from voxseg.apps.web import logic
from voxseg.apps.web.server import APP_PATH
from voxseg.io import Volume, write_image

MB = 1 << 20


@pytest.fixture
def app(work_2d, tmp_path, monkeypatch) -> AppTest:
    monkeypatch.setenv(logic.ENV_MODEL, str(work_2d))
    monkeypatch.setenv(logic.ENV_MAX_UPLOAD_MB, "1")
    monkeypatch.setenv("VOXSEG_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("VOXSEG_CACHE", str(tmp_path / "cache"))
    at = AppTest.from_file(str(APP_PATH), default_timeout=120)
    at.run()
    assert not at.exception
    return at


def _file(volume: Volume, name: str, tmp_path: Path) -> bytes:
    return write_image(volume, tmp_path / name).read_bytes()


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="upload_file").set_value((name, data, "application/octet-stream"))
    at.run()
    assert not at.exception
    return at


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def _segment(at: AppTest) -> AppTest:
    at.button(key="segment").click()
    at.run()
    assert not at.exception
    return at


def test_start_page_offers_the_model_and_asks_for_an_image(app):
    assert app.selectbox(key="model_choice").value.endswith("(--model)")
    assert any("Upload a 2D image" in i.value for i in app.info)
    assert not _errors(app)


def test_upload_segment_show_overlay_table_and_summary(app, tmp_path):
    _upload(app, "pet.nii.gz", _file(pet_case(5)[0], "pet.nii.gz", tmp_path))
    assert any("pet.nii.gz: 2D, 128 x 64" in c.value for c in app.caption)
    _segment(app)
    metrics = {m.label: m.value for m in app.metric}
    assert set(metrics) == {"Objects", "Total area (mm²)", "Time (s)"}
    table = app.dataframe[0].value
    assert int(metrics["Objects"]) == len(table) > 0
    assert float(metrics["Total area (mm²)"].replace(",", "")) == pytest.approx(table["area_mm2"].sum())
    assert len(app.get("image")) == 1
    assert {b.label for b in app.get("download_button")} == {
        "Download mask",
        "Download table",
        "Download report",
    }
    app.radio(key="overlay_mode").set_value("contour")
    app.slider(key="overlay_opacity").set_value(0.8)
    app.run()
    assert not app.exception and len(app.dataframe) == 1  # the result stays while the display changes


def test_corrupt_upload_shows_an_error_and_the_app_stays_usable(app, tmp_path):
    good = _file(pet_case(5)[0], "pet.nii.gz", tmp_path)
    _upload(app, "broken.nii.gz", good[: len(good) // 3])
    assert len(_errors(app)) == 1 and _errors(app)[0].startswith("broken.nii.gz: ")
    assert not app.button  # nothing to segment
    _upload(app, "notes.docx", b"PK\x03\x04 not an image")
    assert "notes.docx: unsupported file type" in _errors(app)[0]
    _upload(app, "pet.nii.gz", good)
    assert not _errors(app)
    _segment(app)
    assert len(app.dataframe) == 1


def test_oversized_upload_shows_the_limit_and_the_app_stays_usable(app, tmp_path):
    big = np.random.default_rng(0).normal(size=(3, 128, 512)).astype(np.float32)  # 768 KiB raw
    _upload(app, "big.nii", _file(Volume(big), "big.nii", tmp_path) + b"\0" * MB)
    assert "more than the upload limit of 1.0 MB" in _errors(app)[0]
    _upload(app, "pet.nii.gz", _file(pet_case(5)[0], "pet.nii.gz", tmp_path))
    assert not _errors(app)
    _segment(app)
    assert len(app.dataframe) == 1


def test_3d_volume_gets_a_slider_per_axis(app, tmp_path):
    stack = np.stack([pet_case(i)[0].array for i in range(3)])
    _upload(app, "stack.nrrd", _file(Volume(stack, (5.0, 4.0, 4.0)), "stack.nrrd", tmp_path))
    _segment(app)
    sliders = [s for s in app.slider if s.key and s.key.startswith("slice_")]
    assert [s.max for s in sliders] == [2, 127, 63]
    assert len(app.get("image")) == 3
    assert any(m.label == "Total volume (mm³)" for m in app.metric)
    sliders[0].set_value(0)
    app.run()
    assert not app.exception and len(app.get("image")) == 3


def test_no_model_is_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.delenv(logic.ENV_MODEL, raising=False)
    monkeypatch.setenv("VOXSEG_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("VOXSEG_CACHE", str(tmp_path / "cache"))
    at = AppTest.from_file(str(APP_PATH), default_timeout=60)
    at.run()
    assert not at.exception
    assert any("No model installed" in w.value for w in at.sidebar.warning)


def test_broken_model_is_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv(logic.ENV_MODEL, str(tmp_path / "missing" / "work"))
    monkeypatch.setenv("VOXSEG_MODELS", str(tmp_path / "models"))
    at = AppTest.from_file(str(APP_PATH), default_timeout=60)
    at.run()
    assert not at.exception
    assert any("no such model" in e.value for e in at.sidebar.error)


def test_one_job_at_a_time_per_session(app, tmp_path):
    import threading

    _upload(app, "pet.nii.gz", _file(pet_case(5)[0], "pet.nii.gz", tmp_path))
    busy = threading.Lock()
    busy.acquire()  # as while a segmentation of this session is still running
    app.session_state["job_lock"] = busy
    _segment(app)
    assert any("already running in this session" in w.value for w in app.warning)
    assert not app.dataframe
    busy.release()
    _segment(app)
    assert len(app.dataframe) == 1 and not app.warning


def test_zipped_dicom_series_is_segmented_in_3d(app, tmp_path):
    import io
    import zipfile

    from tests.io.helpers import write_dicom_series

    stack = np.stack([pet_case(i)[0].array for i in range(2)])
    scaled = np.round(stack / stack.max() * 1000).astype(np.int16)
    files = write_dicom_series(
        tmp_path / "dcm", scaled, spacing=(5.0, 4.0, 4.0), origin=(0.0, 0.0, 0.0), series_uid="1.2.826.0.1.99"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in files:
            zf.write(f, f"PET/{f.name}")
    _upload(app, "pet series.zip", buf.getvalue())
    assert any("pet series.zip: 3D, 2 x 128 x 64" in c.value for c in app.caption)
    _segment(app)
    assert not _errors(app) and len(app.get("image")) == 3 and len(app.dataframe) == 1
