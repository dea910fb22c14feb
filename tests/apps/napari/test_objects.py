"""The Objects widget on a real viewer: table in sync with features, a click focuses the object."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from voxseg.apps.napari._layers import volume_layer_kwargs
from voxseg.dataset.phantoms import generate_case
from voxseg.io import Volume
from voxseg.postprocessing import instances


@pytest.fixture
def nodules():
    """Mouse-lung phantom CT and its nodule instances, with anisotropic spacing and an origin."""
    case = generate_case("mouse-lung-ct", 1)  # 4 separate nodules
    image = case.images[0]
    spacing, origin = (0.2, 0.1, 0.1), (5.0, -3.0, 2.0)
    image = Volume(image.array, spacing, origin)
    inst = instances(Volume(case.label.array, spacing, origin))
    assert int(inst.array.max()) >= 2, "the phantom case must hold several nodules"
    return image, inst


def _viewer_with(make_napari_viewer, image, inst):
    from voxseg.apps.napari.objects import ObjectsWidget

    viewer = make_napari_viewer()
    viewer.add_image(image.array, **volume_layer_kwargs(image, name="ct"))
    labels = viewer.add_labels(inst.array, **volume_layer_kwargs(inst, name="nodules"))
    widget = ObjectsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Objects")
    return viewer, labels, widget


def test_measure_fills_the_table_and_the_layer_features(make_napari_viewer, nodules):
    image, inst = nodules
    _viewer, labels, widget = _viewer_with(make_napari_viewer, image, inst)
    assert widget.labels_layer is labels
    assert widget.row_count == 0
    labels.name = "renamed nodules"  # the choice follows a rename
    assert widget.labels_combo.currentText() == "renamed nodules" and widget.labels_layer is labels
    widget.measure()
    n = int(inst.array.max())
    assert widget.row_count == n
    assert list(labels.features["index"]) == list(range(1, n + 1))
    voxels = np.bincount(inst.array.ravel())[1:]
    assert list(labels.features["voxels"]) == list(voxels)
    assert np.allclose(labels.features["volume_mm3"], voxels * 0.2 * 0.1 * 0.1)
    assert np.isfinite(labels.features["mean_intensity"]).all()  # intensities from the "ct" layer
    # sorting by a bounding-box range is numeric: 9-12 before 10-20
    widget.table.sortItems(6)
    starts = [int(widget.table.item(r, 6).text().split("-")[0]) for r in range(widget.row_count)]
    assert starts == sorted(starts)
    # replacing the features (as the Segment widget does) updates the table
    labels.features = {k: v[:1] for k, v in labels.features.to_dict(orient="list").items()}
    assert widget.row_count == 1


def test_clicking_a_row_centres_camera_and_slice_and_selects_the_label(make_napari_viewer, nodules, qtbot):
    image, inst = nodules
    viewer, labels, widget = _viewer_with(make_napari_viewer, image, inst)
    widget.measure()
    widget.table.sortItems(1)  # by voxels, ascending: row 0 is the smallest object
    obj = widget.row_id(0)
    assert obj == int(inst.array.max())
    zz, yy, xx = np.nonzero(inst.array == obj)
    centroid = np.array([zz.mean(), yy.mean(), xx.mean()])
    world = np.asarray(inst.origin) + centroid * np.asarray(inst.spacing)

    rect = widget.table.visualItemRect(widget.table.item(0, 2))
    from qtpy.QtCore import Qt

    qtbot.mouseClick(widget.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())

    assert labels.selected_label == obj
    assert viewer.dims.current_step[0] == round(centroid[0])  # the slice through the centroid
    assert np.allclose(viewer.dims.point[0], world[0], atol=0.2 / 2 + 1e-6)
    assert np.allclose(viewer.camera.center[-2:], world[1:], atol=1e-6)  # camera on the object (y, x)
    # the data under the focused point is the object itself
    assert inst.array[tuple(np.round(labels.world_to_data(viewer.dims.point)).astype(int))] in (obj, 0)


def test_export_csv_writes_every_object(make_napari_viewer, nodules, tmp_path):
    image, inst = nodules
    _viewer, _labels, widget = _viewer_with(make_napari_viewer, image, inst)
    widget.measure()
    out = widget.export_csv(tmp_path / "objects.csv")
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["id"]) for r in rows] == list(range(1, int(inst.array.max()) + 1))
    assert "index" not in rows[0] and "volume_mm3" in rows[0]
