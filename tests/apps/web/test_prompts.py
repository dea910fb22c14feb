"""Interactive prompts on the web page: click geometry, the prompt list, and a real interactive model."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("streamlit", reason='the web app needs Streamlit: pip install "voxseg[web]"')

from streamlit.testing.v1 import AppTest

from tests.apps.web.helpers import pet_case
from tests.bright_model import SPHERES, spheres_image, write_bright_work
from voxseg.apps.web import logic, render
from voxseg.apps.web.prompts import POINT_COLORS, Prompts, click_to_voxel, draw_prompts, refine_clicks, segment_points
from voxseg.apps.web.server import APP_PATH
from voxseg.apps.web.uploads import UploadedImage
from voxseg.errors import ConfigError, InputImageError
from voxseg.interactive import extreme_points
from voxseg.io import write_image


@pytest.fixture(scope="module")
def interactive_work(tmp_path_factory):
    return write_bright_work(tmp_path_factory.mktemp("web-interactive") / "bright-interactive", interactive=True)


def _sphere(index: int, shape) -> np.ndarray:
    grids = np.indices(shape, dtype=np.float64)
    centre, radius = SPHERES[index]
    spacing = spheres_image()[0].spacing
    return sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing, strict=True)) <= radius**2


def _dice(a, b) -> float:
    return float(2 * np.sum(a & b) / (np.sum(a) + np.sum(b)))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_click_on_a_drawn_point_finds_its_voxel(axis):
    image, _ = spheres_image()  # 20 x 56 x 56 voxels of 2 x 0.5 x 0.5 mm: stretched pictures
    rng = np.random.default_rng(axis)
    for _ in range(20):
        voxel = tuple(int(rng.integers(0, n)) for n in image.shape)
        pic = render.render_slice(image, axis=axis, index=voxel[axis], size=400)
        state = Prompts(points=[voxel])
        marked = draw_prompts(pic, image.shape, axis, voxel[axis], state)
        ys, xs = np.nonzero(np.all(marked == POINT_COLORS["point"], axis=-1))
        assert ys.size > 0  # the point is drawn on its own slice...
        h, w = pic.shape[:2]
        assert click_to_voxel(image.shape, axis, voxel[axis], xs.mean(), ys.mean(), w, h) == voxel  # ...where it is
        other = (voxel[axis] + 1) % image.shape[axis]
        assert np.array_equal(draw_prompts(pic, image.shape, axis, other, state), pic)  # not on another slice
    with pytest.raises(ConfigError, match="outside"):
        click_to_voxel(image.shape, 0, 0, 400, 10, 400, 300)
    assert click_to_voxel((10, 20), 0, 0, 39.9, 0.0, 40, 10) == (0, 19)  # 2D pictures


def test_prompts_are_points_then_clicks():
    image, _ = spheres_image()
    up = UploadedImage("s.nii.gz", "nifti", ".nii.gz", (image,))
    state = Prompts()
    assert "Place 6 points" in state.status(up)
    pts = extreme_points(_sphere(1, image.shape), inward=0)
    kinds = [state.add(tuple(p)) for p in pts]
    assert kinds == ["point"] * 6 and state.complete() and "complete" in state.status(up)
    assert state.add((14, 40, 44), positive=False) == "negative" and state.add((1, 2, 3)) == "positive"
    assert "Clicks: 1 positive, 1 negative" in state.status(up)
    state.undo()
    state.undo()
    state.undo()
    assert len(state.points) == 5 and not state.clicks and "missing" in state.status(up)
    state.clear()
    assert not state.points


def test_segment_and_refine_through_the_web_logic(interactive_work):
    model = logic.load_model(str(interactive_work), tta=False)
    assert model.interactive
    image, _ = spheres_image()
    up = UploadedImage("spheres.nii.gz", "nifti", ".nii.gz", (image,))
    target = _sphere(1, image.shape)
    state = Prompts()
    with pytest.raises(ConfigError, match="Six extreme points"):
        segment_points(model, up, state)
    for p in extreme_points(target, inward=0):
        state.add(tuple(int(v) for v in p))
    result = segment_points(model, up, state)
    mask = np.asarray(result.labels.array) > 0
    assert _dice(mask, target) >= 0.9 and result.summary.objects == 1
    assert result.rows[0].volume == pytest.approx(mask.sum() * np.prod(image.spacing))
    with pytest.raises(ConfigError, match="no corrective click"):
        refine_clicks(model, up, state)
    other = SPHERES[2][0]
    state.add(other, positive=True)  # a positive click on another sphere adds it
    grown = np.asarray(refine_clicks(model, up, state).labels.array) > 0
    assert grown[other] and (grown & _sphere(2, image.shape)).sum() > 10 and grown.sum() > mask.sum()
    flat = UploadedImage("pet.png", "png", ".png", (pet_case(0)[0],))
    with pytest.raises(InputImageError, match="3D"):
        segment_points(model, flat, state)


def test_the_page_segments_from_typed_points(interactive_work, tmp_path, monkeypatch):
    monkeypatch.setenv(logic.ENV_MODEL, str(interactive_work))
    monkeypatch.setenv("VOXSEG_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("VOXSEG_CACHE", str(tmp_path / "cache"))
    at = AppTest.from_file(str(APP_PATH), default_timeout=120)
    at.run()
    image, _ = spheres_image()
    data = write_image(image, tmp_path / "spheres.nii.gz").read_bytes()
    at.file_uploader(key="upload_file").set_value(("spheres.nii.gz", data, "application/octet-stream"))
    at.run()
    assert not at.exception
    assert any("six extreme points" in s.value for s in at.subheader)
    assert at.button(key="segment_points").disabled
    target = _sphere(1, image.shape)
    for p in extreme_points(target, inward=0):
        for name, v in zip("zyx", p, strict=True):
            at.number_input(key=f"typed_{name}").set_value(int(v))
        at.button(key="add_point").click()
        at.run()
    assert any("complete" in i.value for i in at.info)
    at.button(key="segment_points").click()
    at.run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Objects"] == "1"
    volume = float(metrics["Total volume (mm³)"].replace(",", ""))
    assert volume == pytest.approx(target.sum() * np.prod(image.spacing), rel=0.15)
    assert {b.label for b in at.get("download_button")} >= {"Download mask", "Download table"}
    # a negative click on the object's rim, then Refine: a smaller object
    at.radio(key="click_kind").set_value("remove (negative)")
    rim = np.argwhere(target)[0]
    for name, v in zip("zyx", rim, strict=True):
        at.number_input(key=f"typed_{name}").set_value(int(v))
    at.button(key="add_point").click()
    at.run()
    at.button(key="refine_clicks").click()
    at.run()
    assert not at.exception and not at.error
    assert float({m.label: m.value for m in at.metric}["Total volume (mm³)"].replace(",", "")) < volume
