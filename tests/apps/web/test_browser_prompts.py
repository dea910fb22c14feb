"""End to end in chromium: six extreme points clicked on the slice pictures, then Segment from points.

The real server runs an interactive work folder (a threshold network with an extreme-point plan,
tests/bright_model.py) on three bright spheres; the test moves the slice sliders with the
keyboard, clicks the pictures (the streamlit-image-coordinates component, inside an iframe) at the
pixels of the middle sphere's extremes, and checks that the downloaded mask is that sphere.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest

from tests.apps.web.test_browser import browser  # noqa: F401  (the module-scoped fixture)
from tests.bright_model import SPHERES, spheres_image, write_bright_work
from voxseg.apps.web.logic import WebConfig
from voxseg.apps.web.server import start_server, url_for, wait_ready
from voxseg.interactive import extreme_points
from voxseg.io import read_image, write_image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def interactive_server(tmp_path_factory):
    pytest.importorskip("streamlit_image_coordinates", reason="needs the [web] extra")
    work = write_bright_work(tmp_path_factory.mktemp("web-int") / "bright-interactive", interactive=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"VOXSEG_MODELS": str(tmp_path_factory.mktemp("models"))}
    proc = start_server(WebConfig(model=str(work)), port=port, env=env, quiet=True)
    url = url_for("127.0.0.1", port)
    try:
        wait_ready(proc, url, timeout=90)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _set_slider(page, axis: int, value: int, current: int) -> None:
    thumb = page.get_by_role("slider").nth(axis)
    thumb.focus()
    key = "ArrowRight" if value > current else "ArrowLeft"
    for _ in range(abs(value - current)):
        thumb.press(key)
    page.wait_for_timeout(800)


def _click_voxel(page, axis: int, voxel, shape) -> None:
    """Click the pixel of ``voxel`` on the picture of ``axis`` (its slider already at the voxel's slice)."""
    frame = page.frame_locator("iframe[title*='streamlit_image_coordinates']").nth(axis)
    img = frame.locator("img")
    img.wait_for(timeout=30_000)
    box = img.bounding_box()
    plane = [n for a, n in enumerate(shape) if a != axis]
    rc = [v for a, v in enumerate(voxel) if a != axis]
    row = rc[0] if axis == 0 else plane[0] - 1 - rc[0]
    x = (rc[1] + 0.5) / plane[1] * box["width"]
    y = (row + 0.5) / plane[0] * box["height"]
    img.click(position={"x": x, "y": y})


def test_six_clicked_points_segment_the_sphere(browser, interactive_server, tmp_path):  # noqa: F811
    image, _ = spheres_image()
    upload = write_image(image, tmp_path / "spheres.nii.gz")
    grids = np.indices(image.shape, dtype=np.float64)
    centre, radius = SPHERES[1]
    target = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, image.spacing, strict=True)) <= radius**2
    points = extreme_points(target, inward=0)
    page = browser.new_page(viewport={"width": 1500, "height": 1300}, accept_downloads=True)
    page.goto(interactive_server)
    page.get_by_text("Upload a 2D image").wait_for(timeout=60_000)
    page.locator("input[type=file]").set_input_files(str(upload))
    page.get_by_text("six extreme points").first.wait_for(timeout=60_000)
    sliders = [n // 2 for n in image.shape]
    for k, p in enumerate(points):
        axis = 0 if k >= 2 else 1  # z ends on the coronal view, the others on the axial view
        if sliders[axis] != p[axis]:
            _set_slider(page, axis, int(p[axis]), sliders[axis])
            sliders[axis] = int(p[axis])
        _click_voxel(page, axis, p, image.shape)
        page.get_by_text(f"{k + 1} of 6 points").wait_for(timeout=30_000)
    page.get_by_text("complete").wait_for(timeout=30_000)
    page.get_by_role("button", name="Segment from points").click()
    page.get_by_text("Total volume").wait_for(timeout=120_000)
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name="Download mask").click()
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(str(path))
    page.screenshot(path=str(tmp_path / "interactive.png"))
    page.close()
    mask = read_image(path).array > 0
    dice = 2 * np.sum(mask & target) / (mask.sum() + target.sum())
    assert dice >= 0.9, dice
