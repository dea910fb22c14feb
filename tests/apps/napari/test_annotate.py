"""The Annotate & train widget on a real viewer: segment -> paint a correction -> add -> fine-tune ->
new version chosen -> compare; and the sparse start from no model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from voxseg.apps.napari._layers import volume_layer_kwargs
from voxseg.apps.napari._project import AnnotationProject, edited_slices, parse_slices
from voxseg.dataset.phantoms import generate_case
from voxseg.io import Volume, read_image

QUICK = {"iterations_per_epoch": 3, "augmentation": "light"}


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("VOXSEG_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("VOXSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VOXSEG_DATA", str(tmp_path / "data"))
    return tmp_path


def _widget(make_napari_viewer, cases: list):
    from voxseg.apps.napari.annotate import AnnotateTrainWidget

    viewer = make_napari_viewer()
    for k, case in enumerate(cases):
        viewer.add_image(case.images[0].array, **volume_layer_kwargs(case.images[0], name=f"CT{k}"))
    widget = AnnotateTrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Annotate & train")
    widget.overrides = dict(QUICK)
    return viewer, widget


def _wait(qtbot, widget, seconds: float = 240) -> None:
    qtbot.waitUntil(lambda: not widget.running, timeout=int(seconds * 1000))


def _screenshot(viewer, name: str) -> None:
    folder = os.environ.get("VOXSEG_SCREENSHOTS")  # docs/images: `VOXSEG_SCREENSHOTS=docs/images pytest ...`
    if folder:
        from PIL import Image

        Image.fromarray(viewer.screenshot(canvas_only=False)).save(Path(folder) / f"annotate-{name}.png")


def test_project_saves_sparse_cases_with_the_ignore_label(tmp_path):
    image = Volume(np.zeros((6, 8, 8), np.float32), spacing=(2.0, 0.5, 0.5))
    labels = np.zeros((6, 8, 8), np.uint8)
    labels[1, 2:4, 2:4] = 1
    assert edited_slices(labels, None) == [1]
    assert parse_slices("1, 3-4", 6) == [1, 3, 4] and parse_slices(" ", 6) is None
    project = AnnotationProject(tmp_path / "p", labels={"background": 0, "tumor": 1}, channel="CT")
    case = project.add(image, labels, annotated=[1, 3])
    seg = read_image(tmp_path / "p" / "labelsTr" / f"{case}.nii.gz")
    assert seg.spacing == (2.0, 0.5, 0.5)
    assert (seg.array[[0, 2, 4, 5]] == 2).all() and seg.array[1, 2, 2] == 1 and (seg.array[3] == 0).all()
    spec = json.loads((tmp_path / "p" / "dataset.json").read_text())
    assert spec["labels"] == {"background": 0, "tumor": 1, "ignore": 2} and spec["channel_names"] == {"0": "CT"}
    notes = json.loads((tmp_path / "p" / "annotations.json").read_text())
    assert notes[case]["annotated_slices"] == [1, 3]


@pytest.mark.slow
def test_the_whole_loop_segment_correct_add_finetune_compare(make_napari_viewer, qtbot, store):
    cases = [generate_case("mouse-lung-ct", k, seed=11, size=64) for k in range(2)]
    viewer, widget = _widget(make_napari_viewer, cases)
    widget.select_model("mouse-lung-nodules@v2")
    widget.project_edit.setText(str(store / "project"))
    widget.minutes_spin.setValue(0.3)
    for k, case in enumerate(cases):
        widget.image_combo.setCurrentText(f"CT{k}")
        widget.segment()
        _wait(qtbot, widget)
        layer = viewer.layers[f"CT{k} labels"]
        layer.data = case.label.array.astype(layer.data.dtype)  # the user's correction: paint the truth
        _screenshot(viewer, "1-corrected") if k == 0 else None
        assert widget.add() is not None
    assert AnnotationProject(store / "project", labels={"background": 0, "tumor": 1}).cases() == [
        "case_000",
        "case_001",
    ]
    widget.finetune()
    qtbot.waitUntil(lambda: widget.progress.maximum() > 1, timeout=120_000)  # the bar follows the steps
    _wait(qtbot, widget)
    result = widget.last_result
    assert result is not None, widget.status.text()
    assert result.reference == "mouse-lung-nodules@v3" and result.parent == "mouse-lung-nodules@v2"
    assert widget.current_model.ref == "mouse-lung-nodules@v3"  # the new version is listed and chosen
    assert result.held_out == ("case_001",) and result.after_dice is not None
    widget.compare()
    _wait(qtbot, widget)
    assert "CT1 mouse-lung-nodules@v2" in viewer.layers and "CT1 mouse-lung-nodules@v3" in viewer.layers
    _screenshot(viewer, "2-compare")


@pytest.mark.slow
def test_sparse_start_from_no_model_trains_a_first_model(make_napari_viewer, qtbot, store):
    cases = [generate_case("mouse-lung-ct", k, seed=12, size=64) for k in range(2)]
    viewer, widget = _widget(make_napari_viewer, cases)
    widget.select_model("")  # no model yet
    widget.project_edit.setText(str(store / "sparse"))
    widget.name_edit.setText("my-nodules")
    widget.minutes_spin.setValue(0.3)
    widget.sparse_check.setChecked(True)
    for k, case in enumerate(cases):
        painted = np.zeros(case.label.shape, np.uint8)
        rows = [int(z) for z in np.flatnonzero(case.label.array.any(axis=(1, 2)))[:2]] + [0]
        painted[rows] = case.label.array[rows]  # three slices annotated (one of them background only)
        viewer.add_labels(painted, name=f"CT{k} labels", scale=viewer.layers[f"CT{k}"].scale)
        widget.image_combo.setCurrentText(f"CT{k}")
        widget.labels_combo.setCurrentText(f"CT{k} labels")
        widget.slices_edit.setText(", ".join(map(str, rows)))
        assert widget.add() is not None, widget.status.text()
    widget.finetune()
    _wait(qtbot, widget)
    result = widget.last_result
    assert result is not None, widget.status.text()
    assert result.reference == "my-nodules@v1" and result.parent is None
    assert widget.current_model.ref == "my-nodules@v1"
    widget.image_combo.setCurrentText("CT0")
    widget.segment()  # the first model predicts the rest
    _wait(qtbot, widget)
    assert viewer.layers["CT0 labels"].data.shape == cases[0].label.shape
