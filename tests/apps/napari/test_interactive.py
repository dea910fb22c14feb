"""The Interactive widget: six extreme points placed in world coordinates -> a mask; clicks refine it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.apps.napari.conftest import ORIGIN, SPACING, SPHERES, spheres_image
from tests.apps.napari.test_segment import _Latency
from voxseg.apps.napari._layers import volume_layer_kwargs
from voxseg.interactive import extreme_points


def _sphere(index: int, shape) -> np.ndarray:
    grids = np.indices(shape, dtype=np.float64)
    centre, radius = SPHERES[index]
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, SPACING, strict=True))
    return d2 <= radius**2


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.sum(a & b) / (np.sum(a) + np.sum(b)))


def _widget(make_napari_viewer, work):
    from voxseg.apps.napari.interactive import InteractiveWidget

    image, _ = spheres_image()
    viewer = make_napari_viewer()
    viewer.add_image(image.array, **volume_layer_kwargs(image, name="MRI"))
    widget = InteractiveWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Interactive")
    if work is not None:
        assert widget.add_model_path(work) is not None
    return viewer, widget, image


def _to_world(layer, voxels, image):
    world = np.asarray(image.origin) + np.asarray(voxels, dtype=float) * np.asarray(image.spacing)
    return np.stack([layer.world_to_data(p) for p in world])


def _notifications():
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records]


@pytest.mark.slow
def test_points_then_clicks_segment_the_pointed_object(make_napari_viewer, bright_interactive_work, qtbot):
    viewer, widget, image = _widget(make_napari_viewer, bright_interactive_work)
    assert widget.current_model is not None and widget.current_model.interactive
    target = _sphere(1, image.shape)  # the middle sphere of three
    layer = widget.new_points_layer()
    points = extreme_points(target, inward=0)
    layer.data = _to_world(layer, points, image)
    assert "complete" in widget.status.text()
    assert widget.segment() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert widget.last_outcome.error is None, widget.last_outcome.error
    labels = viewer.layers["MRI object"]
    assert np.allclose(labels.scale, SPACING) and np.allclose(labels.translate, ORIGIN)
    mask = np.asarray(labels.data) > 0
    assert _dice(mask, target) >= 0.9  # the pointed sphere...
    assert not (mask & (_sphere(0, image.shape) | _sphere(2, image.shape))).any()  # ...and not the others
    assert labels.features["volume_mm3"][0] == pytest.approx(mask.sum() * np.prod(SPACING))
    assert "Segmented" in widget.status.text()

    # a negative click inside the object removes the part nearer to it than to any point
    positive, negative = widget.new_click_layers()
    inside = np.argwhere(target)
    mm = lambda v: np.asarray(v) * np.asarray(SPACING)  # noqa: E731
    to_points = np.min(np.linalg.norm(mm(inside)[:, None] - mm(points)[None], axis=2), axis=1)
    far = inside[np.argmax(to_points)]  # a rim voxel between the extremes
    negative.data = _to_world(negative, [far], image)
    assert widget.refine() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert widget.last_outcome.error is None, widget.last_outcome.error
    refined = np.asarray(viewer.layers["MRI object"].data) > 0
    assert refined.sum() < mask.sum() and not refined[tuple(far)]
    assert len([layer for layer in viewer.layers if type(layer).__name__ == "Labels"]) == 1  # updated in place

    # a positive click on another sphere adds it
    negative.data = np.empty((0, 3))
    other = np.asarray(SPHERES[2][0])
    positive.data = _to_world(positive, [other], image)
    widget.refine()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    grown = np.asarray(viewer.layers["MRI object"].data) > 0
    assert grown[tuple(other)] and (grown & _sphere(2, image.shape)).sum() > 10


def test_bad_input_is_a_notification_not_a_crash(make_napari_viewer, bright_interactive_work, bright_work, qtbot):
    viewer, widget, image = _widget(make_napari_viewer, None)
    labels = [c.label for c in widget._choices]
    assert any(label.startswith("interactive-soft-tissue@") for label in labels)  # the built-in model is offered
    assert not any(label.startswith("mouse-lung-nodules") for label in labels)  # automatic ones are not
    widget._set_choices([])  # a machine without any interactive model
    assert widget.segment() is None and "no interactive model" in widget.status.text()
    widget.add_model_path(bright_interactive_work)
    assert widget.segment() is None and "Place six extreme points" in widget.status.text()  # no points yet
    layer = widget.new_points_layer()
    layer.data = _to_world(layer, extreme_points(_sphere(1, image.shape), inward=0)[:4], image)
    assert widget.segment() is None and "missing" in widget.status.text()
    assert widget.refine() is None
    assert widget.add_model_path(bright_work) is None  # an automatic model is refused
    assert any("not an interactive model" in m for m in _notifications())
    viewer.add_image(np.zeros((32, 32), np.float32), name="flat")
    widget.image_combo.setCurrentText("flat")
    assert widget.segment() is None and "is not 3D" in widget.status.text()
    viewer.layers.remove("MRI")
    viewer.layers.remove("flat")
    assert widget.segment() is None and "no image layer" in widget.status.text()


@pytest.mark.slow
def test_the_builtin_interactive_model_segments_a_fresh_phantom(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """The shipped interactive-soft-tissue bundle, from the widget, on a phantom it never saw."""
    from pathlib import Path

    from voxseg.apps.napari.interactive import InteractiveWidget
    from voxseg.dataset.phantoms import generate_case
    from voxseg.interactive import PromptConfig

    monkeypatch.setenv("VOXSEG_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("VOXSEG_CACHE", str(tmp_path / "cache"))
    bundle = Path(__file__).resolve().parents[3] / "src/voxseg/bundle/models/interactive-soft-tissue-v1.zip"
    case = generate_case("soft-tissue-mri", 0, seed=4242)  # not a training case (seed 0)
    image, truth = case.images[0], case.label.array > 0
    viewer = make_napari_viewer()
    viewer.add_image(image.array, **volume_layer_kwargs(image, name="MRI"))
    widget = InteractiveWidget(viewer)
    assert widget.add_model_path(bundle) is not None and widget.current_model.interactive
    layer = widget.new_points_layer()
    layer.data = _to_world(layer, extreme_points(truth, inward=PromptConfig.for_spacing(image.spacing).inward), image)
    with _Latency() as gui:  # the GUI event loop keeps running while the bundle loads and the model runs
        widget.segment()
        qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert widget.last_outcome.error is None, widget.last_outcome.error
    assert gui.worst(widget.last_outcome.finished_at) < 0.2, gui.describe(widget.last_outcome.finished_at)
    mask = np.asarray(viewer.layers["MRI object"].data) > 0
    assert _dice(mask, truth) >= 0.8
