"""End to end in chromium: six extreme points clicked on the slice pictures, then Segment from points.

The real server runs the built-in ``interactive-soft-tissue`` bundle on a soft-tissue phantom it
never saw; the test moves the slice sliders with the keyboard, clicks the pictures (the
streamlit-image-coordinates component, inside an iframe) at the pixels of the tumour's extreme
points, presses Segment from points and checks the downloaded mask against the phantom's label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.apps.web.helpers import running_server
from tests.apps.web.test_browser import browser  # noqa: F401  (the module-scoped fixture)
from voxseg.apps.web.render import AXIS_NAMES
from voxseg.dataset.phantoms import generate_case
from voxseg.interactive import PromptConfig, extreme_points
from voxseg.io import read_image, write_image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def interactive_server(tmp_path_factory):
    pytest.importorskip("streamlit_image_coordinates", reason="needs the [web] extra")
    bundle = Path(__file__).resolve().parents[3] / "src/voxseg/bundle/models/interactive-soft-tissue-v1.zip"
    env = {"VOXSEG_MODELS": str(tmp_path_factory.mktemp("models")), "VOXSEG_CACHE": str(tmp_path_factory.mktemp("c"))}
    with running_server(str(bundle), env) as url:
        yield url


def _set_slider(page, axis: int, value: int, current: int) -> None:
    """Move the slice slider of ``axis`` to ``value`` with the keyboard (as a user without a mouse would)."""
    thumb = page.get_by_role("slider", name=AXIS_NAMES[axis])
    thumb.focus()
    key = "ArrowRight" if value > current else "ArrowLeft"
    for _ in range(abs(value - current)):
        thumb.press(key)
    page.wait_for_function(  # Streamlit's sliders are <input type=range aria-label=LABEL>
        "([name, v]) => [...document.querySelectorAll('input[type=range]')].some("
        "e => e.getAttribute('aria-label') === name && e.value === String(v))",
        arg=[AXIS_NAMES[axis], value],
        timeout=30_000,
    )
    page.wait_for_timeout(1500)  # the rerun redraws the picture


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


def test_six_clicked_points_segment_the_tumour(browser, interactive_server, tmp_path):  # noqa: F811
    case = generate_case("soft-tissue-mri", 0, seed=4242)  # not a training case (seed 0)
    image, target = case.images[0], case.label.array > 0
    upload = write_image(image, tmp_path / "mri.nii.gz")
    points = extreme_points(target, inward=PromptConfig.for_spacing(image.spacing).inward)
    page = browser.new_page(viewport={"width": 1500, "height": 1300}, accept_downloads=True)
    page.goto(interactive_server)
    page.get_by_text("Upload a 2D image").wait_for(timeout=60_000)
    page.locator("input[type=file]").set_input_files(str(upload))
    page.get_by_text("Click the object's six extreme points").wait_for(timeout=60_000)
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
    assert dice >= 0.8, dice
