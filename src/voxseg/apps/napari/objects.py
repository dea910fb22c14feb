"""The "Objects" widget: a sortable table of a Labels layer's objects; a click focuses the viewer.

The table shows the layer's ``features`` (written by the Segment widget, or by "Measure" here:
:func:`voxseg.postprocessing.object_table` of the layer, with mean intensities from an image
layer) and follows them when they change. Clicking a row (or moving to it with the arrow keys)
centres the camera on the object's centroid, moves the sliders to its slice and selects its label.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from voxseg.apps.napari._features import DISPLAY_COLUMNS, feature_rows, object_features, write_features_csv
from voxseg.apps.napari._layers import layer_volume
from voxseg.errors import VoxsegError

__all__ = ["ObjectsWidget"]

log = logging.getLogger(__name__)

_NONE = "(none)"
_ID_ROLE = Qt.ItemDataRole.UserRole


class ObjectsWidget(QWidget):
    """Table of the objects of a Labels layer, in sync with the layer's ``features``.

    Parameters
    ----------
    napari_viewer
        The viewer (napari passes it when the widget is opened from the Plugins menu).
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._layer: Labels | None = None
        self._ids: list[int] = []
        self.labels_combo = QComboBox()
        self.image_combo = QComboBox()
        self.measure_button = QPushButton("Measure")
        self.measure_button.setToolTip("Compute the object table of the labels layer (ids, volumes, centroids...)")
        self.export_button = QPushButton("Export CSV...")
        self.table = QTableWidget(0, 0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self._build_layout()
        self.labels_combo.currentIndexChanged.connect(self._on_labels_choice)
        self.measure_button.clicked.connect(self.measure)
        self.export_button.clicked.connect(self._export_dialog)
        self.table.currentCellChanged.connect(self._on_current_cell)
        self.table.cellClicked.connect(lambda row, _col: self.focus_row(row))
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self.viewer.layers.events.reordered.connect(self._refresh_layers)
        self.viewer.layers.selection.events.active.connect(self._follow_active)
        self._refresh_layers()

    # ---- layout ------------------------------------------------------------------------------
    def _build_layout(self) -> None:
        form = QFormLayout()
        form.addRow("Labels", self.labels_combo)
        form.addRow("Intensities", self.image_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.measure_button)
        buttons.addWidget(self.export_button)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(200)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.table)
        layout.addWidget(self.status)

    # ---- layers ------------------------------------------------------------------------------
    def _refresh_layers(self, event: Any = None) -> None:
        for layer in self.viewer.layers:  # a renamed layer renames its entry (connecting twice is a no-op)
            layer.events.name.connect(self._refresh_layers)
        current = self.labels_combo.currentText()
        current_image = self.image_combo.currentText()
        labels = [layer.name for layer in self.viewer.layers if isinstance(layer, Labels)]
        images = [_NONE] + [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        for combo, names, keep in (
            (self.labels_combo, labels, current),
            (self.image_combo, images, current_image),
        ):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if keep in names:
                combo.setCurrentText(keep)
            combo.blockSignals(False)
        if current_image not in images and len(images) > 1:
            self.image_combo.setCurrentIndex(1)
        self._on_labels_choice()

    def _follow_active(self, event: Any = None) -> None:
        active = self.viewer.layers.selection.active
        if isinstance(active, Labels) and active.name != self.labels_combo.currentText():
            self.labels_combo.setCurrentText(active.name)

    def _on_labels_choice(self, index: int | None = None) -> None:
        name = self.labels_combo.currentText()
        layer = self.viewer.layers[name] if name and name in self.viewer.layers else None
        if layer is self._layer:
            return
        if self._layer is not None:
            self._layer.events.features.disconnect(self._on_features)
        self._layer = layer
        if layer is not None:
            layer.events.features.connect(self._on_features)
        self._on_features()

    @property
    def labels_layer(self) -> Labels | None:
        """The Labels layer the table shows."""
        return self._layer

    def set_labels_layer(self, layer: Labels | str) -> None:
        """Show the objects of ``layer`` (a Labels layer or its name)."""
        self.labels_combo.setCurrentText(layer if isinstance(layer, str) else layer.name)

    def _image_layer(self) -> Image | None:
        name = self.image_combo.currentText()
        if name == _NONE or name not in self.viewer.layers:
            return None
        return self.viewer.layers[name]

    # ---- table -------------------------------------------------------------------------------
    def measure(self) -> None:
        """Compute the object table of the labels layer and store it as the layer's ``features``."""
        layer = self._layer
        if layer is None:
            show_info("Objects: add or open a Labels layer first")
            return
        try:
            labels = layer_volume(layer)
            image_layer = self._image_layer()
            image = layer_volume(image_layer) if image_layer is not None else None
            if image is not None and image.shape != labels.shape:
                image = None
                show_info(f"Objects: {image_layer.name!r} has another shape than {layer.name!r}; no intensities")
            layer.features = object_features(labels, image)
        except VoxsegError as exc:
            show_error(f"Objects: {exc}")

    def _on_features(self, event: Any = None) -> None:
        layer = self._layer
        features = getattr(layer, "features", None)
        rows = [r for r in feature_rows(features) if _int(r.get("id", r.get("index"))) > 0] if layer else []
        ndim = 2 if layer is not None and layer.ndim == 2 else 3
        columns = [c for c in DISPLAY_COLUMNS[ndim] if rows and all(k in rows[0] for k in c[1])]
        self.table.setSortingEnabled(False)
        self.table.blockSignals(True)
        self.table.clear()
        self.table.setColumnCount(len(columns))
        self.table.setHorizontalHeaderLabels([c[0] for c in columns])
        self.table.setRowCount(len(rows))
        self._ids = []
        for i, row in enumerate(rows):
            obj_id = _int(row.get("id", row.get("index")))
            self._ids.append(obj_id)
            for j, (_header, keys) in enumerate(columns):
                item = _item(row, keys)
                item.setData(_ID_ROLE, obj_id)
                self.table.setItem(i, j, item)
        self.table.blockSignals(False)
        self.table.setSortingEnabled(True)
        if layer is None:
            self.status.setText("No Labels layer.")
        elif not rows:
            self.status.setText(f"{layer.name}: no object table yet; press Measure.")
        else:
            self.status.setText(f"{layer.name}: {len(rows)} objects. Click a row to go to the object.")

    @property
    def row_count(self) -> int:
        return self.table.rowCount()

    def row_id(self, row: int) -> int:
        """The object id shown in table row ``row`` (after sorting)."""
        item = self.table.item(row, 0)
        return _int(item.data(_ID_ROLE)) if item is not None else 0

    def _on_current_cell(self, row: int, column: int, previous_row: int, previous_column: int) -> None:
        if row >= 0 and row != previous_row:
            self.focus_row(row)

    def focus_row(self, row: int) -> None:
        """Focus the viewer on the object of table row ``row``."""
        obj_id = self.row_id(row)
        if obj_id > 0:
            self.focus_object(obj_id)

    def focus_object(self, obj_id: int) -> None:
        """Centre the camera on object ``obj_id``, move the sliders to its centroid, select its label."""
        layer = self._layer
        if layer is None:
            return
        row = next((r for r in feature_rows(layer.features) if _int(r.get("id", r.get("index"))) == obj_id), None)
        if row is None:
            show_info(f"Objects: {layer.name!r} has no object {obj_id}")
            return
        axes = ("z", "y", "x")[-layer.ndim :]
        centroid = [float(row[f"centroid_{a}"]) for a in axes]
        world = np.asarray(layer.data_to_world(centroid), dtype=float)
        dims = self.viewer.dims
        offset = dims.ndim - world.size
        for k, value in enumerate(world):
            dims.set_point(offset + k, float(value))
        full = np.asarray(dims.point, dtype=float)
        full[offset:] = world
        self.viewer.camera.center = tuple(float(full[d]) for d in dims.displayed)
        layer.selected_label = obj_id
        self.status.setText(f"{layer.name}: object {obj_id} at voxel ({', '.join(f'{c:.0f}' for c in centroid)})")

    def export_csv(self, path: str | Path) -> Path:
        """Write the labels layer's object table (its ``features``) as CSV; return the path."""
        if self._layer is None or not feature_rows(self._layer.features):
            raise VoxsegError("no object table to export: choose a Labels layer and press Measure")
        return write_features_csv(self._layer.features, path)

    def _export_dialog(self) -> None:
        name = self._layer.name if self._layer is not None else "objects"
        path, _ = QFileDialog.getSaveFileName(self, "Export objects", f"{name}_objects.csv", "CSV (*.csv)")
        if not path:
            return
        try:
            written = self.export_csv(path)
            show_info(f"Objects: wrote {written}")
        except (VoxsegError, OSError) as exc:
            show_error(f"Objects: {exc}")


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class _RangeItem(QTableWidgetItem):
    """A "lo-hi" cell that sorts by (lo, hi) numerically, not as text."""

    def __init__(self, lo: int, hi: int):
        super().__init__(f"{lo}-{hi}")
        self.key = (lo, hi)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, _RangeItem):
            return self.key < other.key
        return super().__lt__(other)


def _item(row: dict[str, Any], keys: tuple[str, ...]) -> QTableWidgetItem:
    if len(keys) == 2:  # a range: shown "lo-hi", sorted by lo
        return _RangeItem(_int(row.get(keys[0])), _int(row.get(keys[1])))
    item = QTableWidgetItem()
    value = row.get(keys[0])
    if isinstance(value, (float, np.floating)):
        value = float(value)
        digits = 1 if keys[0].startswith("centroid") else 2
        item.setData(Qt.ItemDataRole.DisplayRole, round(value, digits) if math.isfinite(value) else "")
    elif isinstance(value, (int, np.integer)):
        item.setData(Qt.ItemDataRole.DisplayRole, int(value))
    else:
        item.setData(Qt.ItemDataRole.DisplayRole, "" if value is None else str(value))
    return item
