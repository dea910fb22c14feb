"""The Segment widget on a real viewer with a real work folder (plan.json + safetensors weights)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.apps.napari.conftest import ORIGIN, SPACING, spheres_image
from voxseg.apps.napari._layers import volume_layer_kwargs
from voxseg.io import Volume


def _dock(make_napari_viewer, image: Volume | None = None, name: str = "CT"):
    from voxseg.apps.napari.objects import ObjectsWidget
    from voxseg.apps.napari.segment import SegmentWidget

    viewer = make_napari_viewer()
    if image is not None:
        viewer.add_image(image.array, **volume_layer_kwargs(image, name=name))
    segment = SegmentWidget(viewer)
    objects = ObjectsWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment")
    viewer.window.add_dock_widget(objects, name="Objects")
    return viewer, segment, objects


def _notifications():
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records]


class _Latency:
    """Largest gap between ticks of a 10 ms QTimer: how long the GUI event loop was blocked."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def __enter__(self):
        self.ticks.append(time.perf_counter())
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.stop()

    def worst(self, until: float) -> float:
        """The longest gap that ended before ``until`` (the worker's end: later comes drawing the result)."""
        ticks = np.asarray([t for t in self.ticks if t <= until])
        return float(np.max(np.diff(ticks))) if ticks.size > 1 else float("inf")

    def describe(self, until: float) -> str:
        """The three longest gaps: start (s after the first tick) and length, for failure messages."""
        ticks = np.asarray([t for t in self.ticks if t <= until])
        gaps = np.diff(ticks)
        top = np.argsort(gaps)[-3:][::-1]
        return ", ".join(f"{gaps[i] * 1000:.0f} ms at {ticks[i] - ticks[0]:.2f} s" for i in top)


@pytest.mark.slow
def test_segment_adds_a_labels_layer_with_the_image_geometry(make_napari_viewer, bright_work, qtbot):
    image, truth = spheres_image()
    viewer, segment, objects = _dock(make_napari_viewer, image)
    choice = segment.add_model_path(bright_work)
    assert choice is not None and "bright-spheres" in segment.description.text()
    worker = segment.segment()
    assert worker is not None and segment.running
    qtbot.waitUntil(lambda: not segment.running, timeout=120_000)
    assert segment.last_outcome is not None and segment.last_outcome.error is None
    layer = viewer.layers["bright-model"]
    assert type(layer).__name__ == "Labels"
    assert np.allclose(layer.scale, SPACING) and np.allclose(layer.translate, ORIGIN)
    found = np.asarray(layer.data) > 0
    dice = 2 * (found & (truth.array > 0)).sum() / (found.sum() + (truth.array > 0).sum())
    assert dice > 0.98
    assert list(layer.features["index"]) == [1, 2, 3]  # one id per sphere, largest first
    assert (np.diff(layer.features["voxels"]) <= 0).all()
    assert objects.labels_layer is layer and objects.row_count == 3  # the table follows the new layer

    # again with a minimum size: the smallest sphere (3 mm radius) goes, the layer is updated in place
    segment.min_size_spin.setValue(int(np.sort(layer.features["voxels"])[0]) + 1)
    segment.fast_check.setChecked(True)
    segment.segment()
    qtbot.waitUntil(lambda: not segment.running, timeout=120_000)
    assert len(viewer.layers) == 2 and list(layer.features["index"]) == [1, 2]
    assert objects.row_count == 2

    # a mask layer keeps only what lies inside it (here: the first sphere's corner of the image)
    roi = np.zeros(truth.shape, np.uint8)
    roi[:, :30, :30] = 1
    viewer.add_labels(roi, **volume_layer_kwargs(truth.with_array(roi), name="roi"))
    segment.mask_combo.setCurrentText("roi")
    segment.min_size_spin.setValue(0)
    segment.segment()
    qtbot.waitUntil(lambda: not segment.running, timeout=120_000)
    assert list(layer.features["index"]) == [1] and not np.asarray(layer.data)[roi == 0].any()


@pytest.mark.slow
def test_gui_stays_responsive_while_the_model_runs_and_cancel_stops_it(make_napari_viewer, bright_work, qtbot):
    image, _ = spheres_image()
    viewer, segment, _ = _dock(make_napari_viewer, image)
    big = Volume(np.zeros((96, 224, 224), np.float32), SPACING, ORIGIN)  # many tiles: runs long enough to watch
    viewer.add_image(big.array, **volume_layer_kwargs(big, name="big"))
    segment.add_model_path(bright_work)
    segment.image_combo.setCurrentText("CT")
    segment.segment()  # the session's first run pays one-time start-up costs (thread pools)
    qtbot.waitUntil(lambda: not segment.running, timeout=120_000)

    segment.image_combo.setCurrentText("big")
    with _Latency() as latency:
        segment.segment()
        qtbot.waitUntil(lambda: segment.progress.value() > segment.progress.maximum() // 3, timeout=120_000)
        segment.cancel()
        qtbot.waitUntil(lambda: not segment.running, timeout=60_000)
    outcome = segment.last_outcome
    assert outcome.cancelled
    worst = latency.worst(until=outcome.finished_at)
    assert len(latency.ticks) > 20, "the event loop did not run while the model ran"
    where = latency.describe(until=outcome.finished_at)
    assert worst < 0.2, f"the GUI froze for {worst:.3f} s while the model ran (gaps: {where})"
    print(f"segment: {len(latency.ticks)} timer ticks, worst event-loop gap {worst * 1000:.0f} ms")
    assert [layer.name for layer in viewer.layers] == ["CT", "big", "bright-model"]  # nothing added for "big"
    assert segment.segment_button.isEnabled() and "Cancelled" in segment.status.text()


def test_bad_inputs_give_one_line_notifications(make_napari_viewer, bright_work, qtbot, tmp_path):
    viewer, segment, _ = _dock(make_napari_viewer)
    segment.add_model_path(bright_work)
    assert segment.segment() is None  # no image layer
    assert "no image layer" in _notifications()[-1]

    viewer.add_image(np.zeros((40, 40), np.float32), name="slice")  # a 2D image for a 3D model
    segment.segment()
    qtbot.waitUntil(lambda: not segment.running, timeout=60_000)
    message = _notifications()[-1]
    assert "2D" in message and "3D" in message and "\n" not in message
    assert "slice" not in [layer.name for layer in viewer.layers if type(layer).__name__ == "Labels"]

    broken = tmp_path / "broken"  # a work folder whose weights are damaged
    import shutil

    shutil.copytree(bright_work, broken)
    next(broken.rglob("model.safetensors")).write_bytes(b"not safetensors")
    image, _ = spheres_image()
    viewer.add_image(image.array, **volume_layer_kwargs(image, name="CT"))
    segment.image_combo.setCurrentText("CT")
    segment.add_model_path(broken)
    segment.segment()
    qtbot.waitUntil(lambda: not segment.running, timeout=60_000)
    message = _notifications()[-1]
    assert "broken" in message and "\n" not in message  # names the model, one line, no traceback dialog
    assert segment.status.text() in message
    assert not [layer for layer in viewer.layers if layer.name == "broken"]

    assert segment.add_model_path(tmp_path) is None  # not a model at all
    assert "not a model" in _notifications()[-1]


@pytest.mark.slow
def test_installed_bundle_is_listed_with_its_description(make_napari_viewer, bright_work, qtbot, tmp_path, monkeypatch):
    from voxseg.bundle import export_bundle, install

    monkeypatch.setenv("VOXSEG_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("VOXSEG_CACHE", str(tmp_path / "cache"))
    archive = export_bundle(
        bright_work, tmp_path / "bright.zip", name="bright-nodules", version="v1", description="Bright blobs (test)"
    )
    install(archive)
    image, truth = spheres_image()
    viewer, segment, objects = _dock(make_napari_viewer, image)
    assert segment.model_combo.currentText() == "bright-nodules@v1"
    assert segment.description.text() == "Bright blobs (test)"
    segment.fast_check.setChecked(True)
    segment.segment()
    qtbot.waitUntil(lambda: not segment.running, timeout=120_000)
    assert segment.last_outcome.error is None, segment.last_outcome.error
    layer = viewer.layers["bright-nodules"]
    assert np.array_equal(np.asarray(layer.data) > 0, truth.array > 0)
    assert objects.row_count == 3


def test_offered_model_fits_the_image_and_builtins_are_no_downloads(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from voxseg.apps.napari._models import last_choice
    from voxseg.apps.napari._sample import phantom_layers

    monkeypatch.setenv("VOXSEG_MODELS", str(tmp_path / "models"))  # nothing installed: the built-in models only
    monkeypatch.setenv("VOXSEG_CACHE", str(tmp_path / "cache"))
    viewer, segment, _ = _dock(make_napari_viewer)
    labels = [segment.model_combo.itemText(i) for i in range(segment.model_combo.count())]
    assert "pet-mip-tumors@v1 (built-in)" in labels and "mouse-lung-nodules@v2 (built-in)" in labels
    assert not [label for label in labels if "(download)" in label]

    def add_sample(name: str) -> str:
        data, kwargs, _ = phantom_layers(name)[0]
        viewer.add_image(data, **kwargs)
        segment.image_combo.setCurrentText(kwargs["name"])
        return kwargs["name"]

    add_sample("pet-mip")  # 2D PET: the 2D model, not the alphabetically first one
    assert segment.model_combo.currentText() == "pet-mip-tumors@v1 (built-in)"
    ct = add_sample("mouse-lung-ct")  # 3D CT: the 3D CT model
    assert segment.model_combo.currentText() == "mouse-lung-nodules@v2 (built-in)"
    add_sample("brain-swi-cmb")  # 3D SWI: the model whose modality says SWI
    assert segment.model_combo.currentText() == "brain-microbleeds@v1 (built-in)"

    # the user's pick is kept while images change, and remembered for the next widget
    spinal = labels.index("mouse-spinal-cord-gmwm@v1 (built-in)")
    segment.model_combo.setCurrentIndex(spinal)
    segment.model_combo.activated.emit(spinal)
    segment.image_combo.setCurrentText(ct)
    assert segment.model_combo.currentText() == "mouse-spinal-cord-gmwm@v1 (built-in)"
    assert last_choice() == "mouse-spinal-cord-gmwm@v1"
    from voxseg.apps.napari.segment import SegmentWidget

    fresh = SegmentWidget(make_napari_viewer())  # no image: the model picked last time
    assert fresh.model_combo.currentText() == "mouse-spinal-cord-gmwm@v1 (built-in)"


@pytest.mark.slow
def test_preflight_refuses_a_human_ct_for_the_mouse_model_before_loading(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """A 12x128x128 CT at 5x0.66x0.66 mm for the 0.2 mm mouse model: warned and refused, no layer, then forced."""
    monkeypatch.setenv("VOXSEG_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("VOXSEG_CACHE", str(tmp_path / "cache"))
    image = Volume(np.zeros((12, 128, 128), np.float32), spacing=(5.0, 0.66, 0.66))
    viewer, segment, _ = _dock(make_napari_viewer, image, name="human CT")
    choice = next(
        i for i in range(segment.model_combo.count()) if "mouse-lung-nodules" in segment.model_combo.itemText(i)
    )
    segment.model_combo.setCurrentIndex(choice)
    segment.segment()
    qtbot.waitUntil(lambda: not segment.running, timeout=300_000)
    error = segment.last_outcome.error
    assert error is not None and "tiles" in error and "Run beyond the time/memory limits" in error, error
    assert "\n" not in error
    notes = _notifications()
    assert any("spacing" in n and "far from the model" in n for n in notes), notes
    assert not [layer for layer in viewer.layers if type(layer).__name__ == "Labels"]
    assert not segment._loaded  # refused before the model was loaded


def test_the_model_picker_shows_licence_and_intended_use(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("VOXSEG_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("VOXSEG_CACHE", str(tmp_path / "cache"))
    _, segment, _ = _dock(make_napari_viewer)
    pet = next(i for i in range(segment.model_combo.count()) if "pet-mip-tumors" in segment.model_combo.itemText(i))
    segment.model_combo.setCurrentIndex(pet)
    text = segment.description.text()
    assert "Licence: CC-BY-4.0." in text and "Intended use: demonstration" in text, text
