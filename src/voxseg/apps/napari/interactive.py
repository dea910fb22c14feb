"""Extreme points in napari (the first half of interactive segmentation).

:class:`ExtremePointsWidget` adds a Points layer on an image's grid (same scale and translate),
says after every edit which of the six extremes (z/y/x min/max) are still missing, and maps the
points to the image's voxel indices (:meth:`ExtremePointsWidget.voxel_points`). Segmenting from
the points needs an interactive model, which voxseg does not ship yet: this widget is not in the
plugin manifest until it does (no dead "Segment from points" button).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image, Points
from qtpy.QtWidgets import QComboBox, QFormLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from voxseg.apps.napari._layers import layer_volume
from voxseg.apps.napari._points import points_status, world_to_voxels
from voxseg.errors import VoxsegError
from voxseg.io import Volume

__all__ = ["ExtremePointsWidget"]


class ExtremePointsWidget(QWidget):
    """Place six extreme points on an image layer and read them as voxel indices."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.points_layer: Points | None = None
        self.image_combo = QComboBox()
        self.new_button = QPushButton("New extreme points")
        self.new_button.clicked.connect(self.new_points_layer)
        self.status = QLabel("Choose an image and press New extreme points.")
        self.status.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.new_button)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.viewer.layers.events.inserted.connect(self._refresh)
        self.viewer.layers.events.removed.connect(self._refresh)
        self._refresh()

    def _refresh(self, event: Any = None) -> None:
        for layer in self.viewer.layers:  # a renamed layer renames its entry (connecting twice is a no-op)
            layer.events.name.connect(self._refresh)
        keep = self.image_combo.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if keep in names:
            self.image_combo.setCurrentText(keep)
        self.image_combo.blockSignals(False)
        if self.points_layer is not None and self.points_layer not in self.viewer.layers:
            self.use_points_layer(None)

    def image(self) -> Volume | None:
        """The chosen image layer as a Volume (None without one)."""
        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            return None
        return layer_volume(self.viewer.layers[name])

    def new_points_layer(self) -> Points | None:
        """Add a Points layer on the chosen image's grid and follow it."""
        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            self.status.setText("Open an image first.")
            return None
        image_layer = self.viewer.layers[name]
        layer = self.viewer.add_points(
            np.empty((0, image_layer.ndim)),
            name=f"{name} extreme points",
            scale=image_layer.scale,
            translate=image_layer.translate,
            size=3,
            face_color="yellow",
            ndim=image_layer.ndim,
        )
        layer.mode = "add"
        self.use_points_layer(layer)
        return layer

    def use_points_layer(self, layer: Points | None) -> None:
        """Follow ``layer`` (any Points layer, whatever its scale) for the status line."""
        if self.points_layer is not None:
            self.points_layer.events.data.disconnect(self._update)
        self.points_layer = layer
        if layer is not None:
            layer.events.data.connect(self._update)
        self._update()

    def voxel_points(self) -> np.ndarray:
        """The points as continuous voxel indices ``(N, ndim)`` of the chosen image."""
        image = self.image()
        if image is None or self.points_layer is None or len(self.points_layer.data) == 0:
            return np.empty((0, image.ndim if image is not None else 3))
        world = np.asarray([self.points_layer.data_to_world(p) for p in self.points_layer.data], dtype=np.float64)
        return world_to_voxels(world[:, -image.ndim :], image)

    def _update(self, event: Any = None) -> None:
        try:
            image = self.image()
            if image is None or self.points_layer is None:
                return
            self.status.setText(points_status(self.voxel_points(), image))
        except VoxsegError as exc:
            self.status.setText(str(exc))
