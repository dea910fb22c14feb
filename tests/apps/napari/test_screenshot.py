"""A screenshot of the viewer with the Segment and Objects widgets docked (the picture in docs/napari.md).

Saved to ``docs/images/napari-segment.png`` when ``VOXSEG_DOCS_SCREENSHOTS=1``. The model is a
fixed threshold (SUV > 3, the classic PET rule) packaged as a real work folder: it shows the
widgets at work, not a trained network's quality.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.apps.napari.conftest import write_bright_work

DOCS_IMAGE = Path(__file__).resolve().parents[3] / "docs" / "images" / "napari-segment.png"


@pytest.mark.slow
def test_screenshot_with_docked_widgets(make_napari_viewer, voxseg_plugin, qtbot, tmp_path):
    from PIL import Image as PILImage

    from voxseg.apps.napari.objects import ObjectsWidget
    from voxseg.apps.napari.segment import SegmentWidget

    model = write_bright_work(
        tmp_path / "pet-suv3",
        ndim=2,
        level=3.0,
        spacing=(4.0, 4.0),
        dataset_name="PET MIP, SUV > 3",
        labels={"background": 0, "lesion": 1},
        channel="PET",
    )
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 900)
    layers = viewer.open_sample("voxseg", "pet_mip")
    image = layers[0]
    image.colormap = "gray_r"
    image.contrast_limits = (0.0, 12.0)
    viewer.layers.remove(layers[-1])  # the ground truth
    segment = SegmentWidget(viewer)
    objects = ObjectsWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment (voxseg)", area="right")
    viewer.window.add_dock_widget(objects, name="Objects (voxseg)", area="right")
    segment.add_model_path(model)
    segment.min_size_spin.setValue(4)
    segment.segment()
    qtbot.waitUntil(lambda: not segment.running, timeout=120_000)
    assert segment.last_outcome.error is None
    result = viewer.layers["pet-suv3"]
    assert objects.labels_layer is result and objects.row_count >= 5
    objects.table.selectRow(2)
    viewer.reset_view()
    qtbot.wait(300)

    shot = viewer.screenshot(canvas_only=False, flash=False)
    path = tmp_path / "napari-segment.png"
    PILImage.fromarray(np.asarray(shot)).save(path)
    pixels = np.asarray(shot)[..., :3]
    assert pixels.shape[0] > 400 and pixels.shape[1] > 800
    assert pixels.std() > 20  # not a blank window
    if os.environ.get("VOXSEG_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(path, DOCS_IMAGE)


INTERACTIVE_IMAGE = DOCS_IMAGE.with_name("napari-interactive.png")


@pytest.mark.slow
def test_screenshot_of_the_interactive_widget(make_napari_viewer, voxseg_plugin, qtbot, tmp_path, monkeypatch):
    """The built-in interactive model on the soft-tissue sample (a training case: a picture, not a score)."""
    from PIL import Image as PILImage

    from voxseg.apps.napari.interactive import InteractiveWidget
    from voxseg.interactive import PromptConfig, extreme_points

    monkeypatch.setenv("VOXSEG_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("VOXSEG_CACHE", str(tmp_path / "cache"))
    bundle = Path(__file__).resolve().parents[3] / "src/voxseg/bundle/models/interactive-soft-tissue-v1.zip"
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 900)
    layers = viewer.open_sample("voxseg", "soft_tissue_mri")
    image, truth_layer = layers[0], layers[-1]
    truth = np.asarray(truth_layer.data) > 0
    viewer.layers.remove(truth_layer)
    widget = InteractiveWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Interactive (voxseg)", area="right")
    assert widget.add_model_path(bundle) is not None
    points = widget.new_points_layer()
    voxels = extreme_points(truth, inward=PromptConfig.for_spacing(tuple(image.scale)).inward)
    world = np.asarray(image.translate) + voxels * np.asarray(image.scale)
    points.data = np.stack([points.world_to_data(p) for p in world])
    widget.segment()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert widget.last_outcome.error is None, widget.last_outcome.error
    mask = np.asarray(viewer.layers[f"{image.name} object"].data) > 0
    assert 2 * np.sum(mask & truth) / (mask.sum() + truth.sum()) >= 0.8
    widget.new_click_layers()
    assert widget.clicks() == []  # the two click layers are ready, empty
    viewer.dims.set_point(0, float(world[:, 0].mean()))
    viewer.layers.selection.active = image
    viewer.reset_view()
    qtbot.wait(300)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    path = tmp_path / "napari-interactive.png"
    PILImage.fromarray(np.asarray(shot)).save(path)
    assert np.asarray(shot)[..., :3].std() > 20
    if os.environ.get("VOXSEG_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(path, INTERACTIVE_IMAGE)
