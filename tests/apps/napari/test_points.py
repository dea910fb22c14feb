"""Extreme points placed in napari's world coordinates map to the right voxels of an anisotropic image."""

from __future__ import annotations

import numpy as np

from voxseg.apps.napari._layers import volume_layer_kwargs
from voxseg.apps.napari._points import extreme_names, missing_extremes, points_status
from voxseg.dataset.phantoms import generate_case
from voxseg.interactive import extreme_points
from voxseg.io import Volume


def test_missing_extremes_are_named():
    spacing = (3.0, 0.8, 0.8)
    pts = np.array([[2, 30, 30], [20, 30, 30], [10, 5, 30], [10, 60, 30], [10, 30, 4], [10, 30, 58]], float)
    assert missing_extremes(pts, spacing) == []
    assert missing_extremes(pts[:5], spacing) == ["x max"]
    assert missing_extremes(pts[[0, 2, 3]], spacing) == ["z max", "x min", "x max"]
    assert extreme_names(2) == ["y min", "y max", "x min", "x max"]
    image = Volume(np.zeros((24, 64, 64), np.float32), spacing)
    assert "missing: x max" in points_status(pts[:5], image)
    assert "complete" in points_status(pts, image)
    assert "1 outside" in points_status(np.vstack([pts[:5], [[30, 1, 1]]]), image)


def test_points_in_world_coordinates_map_to_the_right_voxels(make_napari_viewer):
    from voxseg.apps.napari.interactive import ExtremePointsWidget

    case = generate_case("soft-tissue-mri", 0)  # one tumour, 3.0 x 0.8 x 0.8 mm voxels
    image = Volume(case.images[0].array, case.images[0].spacing, (12.0, -40.0, 7.5))
    truth = extreme_points(case.label.array > 0)  # six voxel indices
    viewer = make_napari_viewer()
    viewer.add_image(image.array, **volume_layer_kwargs(image, name="MRI"))
    widget = ExtremePointsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Extreme points")

    # a user clicks in world space: mm, array order = origin + index * spacing
    world = np.asarray(image.origin) + truth * np.asarray(image.spacing)
    layer = widget.new_points_layer()
    assert np.allclose(layer.scale, image.spacing) and np.allclose(layer.translate, image.origin)
    layer.data = np.stack([layer.world_to_data(p) for p in world[:5]])
    assert np.allclose(widget.voxel_points(), truth[:5], atol=1e-6)
    assert widget.status.text().startswith("5 of 6 points") and "missing" in widget.status.text()
    layer.add(layer.world_to_data(world[5]))
    assert np.allclose(widget.voxel_points(), truth, atol=1e-6)
    assert "complete" in widget.status.text()
    # the voxels under the points are the tumour's
    idx = np.rint(widget.voxel_points()).astype(int)
    assert (case.label.array[tuple(idx.T)] > 0).all()

    # a Points layer drawn in plain world coordinates (scale 1, no translate) gives the same voxels
    plain = viewer.add_points(world, name="plain", ndim=3)
    widget.use_points_layer(plain)
    assert np.allclose(widget.voxel_points(), truth, atol=1e-6)
