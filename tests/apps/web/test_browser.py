"""End to end: the real server on 127.0.0.1, Debian's chromium driven headless by Playwright.

Uploads a phantom, waits for the overlay, downloads the mask and compares it voxel for voxel with
``Predictor.predict`` on the same file (and the object table with the library's, byte for byte).
The screenshot goes to the test's folder, and to ``docs/images/web-app.png`` when
``VOXSEG_DOCS_SCREENSHOTS=1`` (how the docs picture is made).
Skipped with the reason when chromium or Playwright is missing (``tools/install-browser-test-deps.sh``
installs chromium; never ``playwright install``).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.apps.web.helpers import pet_case, running_server
from voxseg.inference import Predictor
from voxseg.io import read_image, write_image
from voxseg.postprocessing import connected_components, object_table, write_object_table

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS_IMAGE = Path(__file__).resolve().parents[3] / "docs" / "images" / "web-app.png"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("streamlit", reason='the web app needs Streamlit: pip install "voxseg[web]"')
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    if not (Path(CHROMIUM).is_file() or shutil.which("chromium")):
        pytest.skip("chromium is not installed (run tools/install-browser-test-deps.sh as root)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(work_2d, tmp_path_factory):
    with running_server(str(work_2d), {"VOXSEG_MODELS": str(tmp_path_factory.mktemp("models"))}) as url:
        yield url


def test_upload_segment_download_equals_the_library(browser, server, work_2d, tmp_path):
    image, _ = pet_case(5)
    upload = write_image(image, tmp_path / "pet_case.nii.gz")
    page = browser.new_page(viewport={"width": 1400, "height": 1120}, accept_downloads=True)
    page.goto(server)
    page.get_by_text("Upload a 2D image").wait_for(timeout=60_000)
    page.locator("input[type=file]").set_input_files(str(upload))
    page.get_by_text("pet_case.nii.gz: 2D, 128 x 64").wait_for(timeout=60_000)
    page.get_by_role("button", name="Segment").click()
    page.get_by_text("Overlay: pet_case.nii.gz").wait_for(timeout=120_000)
    page.locator("[data-testid=stImage] img").first.wait_for(timeout=30_000)
    page.locator("[data-testid=stDataFrame]").first.wait_for(timeout=30_000)
    page.wait_for_timeout(1500)  # let the table and image finish painting
    shot = tmp_path / "web-app.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("VOXSEG_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(shot, DOCS_IMAGE)
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name="Download mask").click()
    download = info.value
    assert download.suggested_filename == "pet_case_mask.nii.gz"
    mask_path = tmp_path / download.suggested_filename
    download.save_as(str(mask_path))
    files = {}
    for button in ("Download table", "Download report"):
        with page.expect_download(timeout=60_000) as info:
            page.get_by_role("button", name=button).click()
        files[button] = tmp_path / info.value.suggested_filename
        info.value.save_as(str(files[button]))
    page.close()
    mask = read_image(mask_path)
    expected = Predictor.from_work(work_2d).predict(read_image(upload)).labels
    np.testing.assert_array_equal(mask.array, expected.array)
    assert mask.same_geometry(read_image(upload))
    assert expected.array.any()
    rows = object_table(expected.with_array(connected_components(expected)), image=image, class_map=expected)
    assert files["Download table"].name == "pet_case_objects.csv"
    got = list(csv.DictReader(io.StringIO(files["Download table"].read_text())))
    want = list(csv.DictReader(io.StringIO(write_object_table(rows, tmp_path / "t.csv").read_text())))
    names = Predictor.from_work(work_2d).plan.label_names  # the app names each object's class
    assert len(got) == len(want) > 0
    for g, w in zip(got, want, strict=True):
        assert g["class"] == names[int(w["class"])] and {**g, "class": w["class"]} == w
    assert files["Download report"].name == "pet_case_report.png"
    assert files["Download report"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
