"""Interactive segmentation in napari: six extreme points, then corrective clicks.

:class:`ExtremePointsWidget` adds a Points layer on an image's grid (same scale and translate),
says after every edit which of the six extremes (z/y/x min/max) are still missing, and maps the
points to the image's voxel indices (:meth:`ExtremePointsWidget.voxel_points`).

:class:`InteractiveWidget` (the plugin's "Interactive" widget) adds an interactive model (an
installed bundle such as ``interactive-soft-tissue``, a bundle or a work folder planned with
``--interactive``), a "Segment from points" button (:func:`voxseg.interactive.pipeline.segment_from_points`)
and click refinement: "Add clicks" makes a green Points layer of positive clicks (add what is
missing) and a magenta one of negative clicks (remove what is wrong), "Refine with clicks" runs
:func:`voxseg.interactive.pipeline.refine`. Both run in a worker thread; the result is one Labels
layer per image (``<image> object``) with the object table as its ``features``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from napari.layers import Image, Points
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from voxseg.apps.napari._layers import METADATA_KEY, layer_volume
from voxseg.apps.napari._picker import ModelPicker
from voxseg.apps.napari._points import points_status, world_to_voxels
from voxseg.errors import VoxsegError
from voxseg.io import Volume

__all__ = ["ExtremePointsWidget", "InteractiveWidget"]

log = logging.getLogger(__name__)


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
        self.form = QFormLayout()
        self.form.addRow("Image", self.image_combo)
        self.main_layout = QVBoxLayout(self)
        self.main_layout.addLayout(self.form)
        self.main_layout.addWidget(self.new_button)
        self.main_layout.addWidget(self.status)
        self.main_layout.addStretch(1)
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


@dataclass
class _Outcome:
    mask: Volume | None = None
    features: dict[str, list[Any]] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    finished_at: float = field(default_factory=time.perf_counter)


class InteractiveWidget(ModelPicker, ExtremePointsWidget):
    """Segment one object from six extreme points and refine it with clicks (see the module docstring)."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        from voxseg.apps.napari.segment import _preload

        _preload()
        self._choices: list = []
        self._loaded: dict[str, Any] = {}  # model ref -> interactive Predictor (weights loaded once)
        self.worker: Any = None
        self.last_outcome: _Outcome | None = None
        self.positive_layer: Points | None = None
        self.negative_layer: Points | None = None
        model_row = self._build_model_controls("An interactive bundle, or a work folder planned with --interactive")
        self.segment_button = QPushButton("Segment from points")
        self.segment_button.clicked.connect(self.segment)
        self.clicks_button = QPushButton("Add clicks")
        self.clicks_button.setToolTip("Green layer: positive clicks (add); magenta layer: negative clicks (remove)")
        self.clicks_button.clicked.connect(self.new_click_layers)
        self.refine_button = QPushButton("Refine with clicks")
        self.refine_button.clicked.connect(self.refine)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        super().__init__(napari_viewer, parent)
        self.form.addRow("Model", model_row)
        self.form.addRow("", self.description)
        index = self.main_layout.indexOf(self.status)
        for offset, widget in enumerate((self.segment_button, self.clicks_button, self.refine_button, self.progress)):
            self.main_layout.insertWidget(index + offset, widget)
        self.refresh_models()

    # ---- models (the list is ModelPicker's) -----------------------------------------------------
    empty_text = "no interactive model: voxseg install interactive-soft-tissue"
    browse_title = "Choose an interactive bundle or work folder"

    def _listed(self, choices: list) -> list:
        return [c for c in choices if c.interactive]

    def _refusal(self, choice: Any) -> str | None:
        if choice.task and not choice.interactive:
            return f"{choice.label} is not an interactive model; use the Segment widget for it"
        return None

    def _predictor(self, choice: Any) -> Any:
        from voxseg.apps.napari._models import load_model
        from voxseg.interactive.pipeline import load_interactive_model

        predictor = self._loaded.get(choice.ref)
        if predictor is None:
            predictor = load_interactive_model(load_model(choice, tta=False))
            self._loaded[choice.ref] = predictor
        return predictor

    # ---- clicks ------------------------------------------------------------------------------
    def new_click_layers(self) -> tuple[Points, Points] | None:
        """Add the positive (green) and negative (magenta) click layers on the chosen image's grid."""
        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            self._notify_error("no image layer: open an image first")
            return None
        image_layer = self.viewer.layers[name]
        made = []
        for kind, colour in (("positive", "lime"), ("negative", "magenta")):
            layer_name = f"{name} {kind} clicks"
            if layer_name in self.viewer.layers:
                made.append(self.viewer.layers[layer_name])
                continue
            made.append(
                self.viewer.add_points(
                    np.empty((0, image_layer.ndim)),
                    name=layer_name,
                    scale=image_layer.scale,
                    translate=image_layer.translate,
                    size=3,
                    face_color=colour,
                    ndim=image_layer.ndim,
                )
            )
        self.positive_layer, self.negative_layer = made
        self.positive_layer.mode = "add"
        self.viewer.layers.selection.active = self.positive_layer
        self.status.setText("Click where the mask misses the object (green layer) or where it is wrong (magenta).")
        return self.positive_layer, self.negative_layer

    def _layer_voxels(self, layer: Points | None, image: Volume) -> np.ndarray:
        if layer is None or layer not in self.viewer.layers or len(layer.data) == 0:
            return np.empty((0, image.ndim))
        world = np.asarray([layer.data_to_world(p) for p in layer.data], dtype=np.float64)
        return world_to_voxels(world[:, -image.ndim :], image)

    def clicks(self) -> list:
        """The click layers' points as :class:`voxseg.interactive.Click` objects (voxel indices)."""
        from voxseg.interactive import Click

        image = self.image()
        if image is None:
            return []
        out = []
        for layer, positive in ((self.positive_layer, True), (self.negative_layer, False)):
            for p in np.rint(self._layer_voxels(layer, image)).astype(int):
                out.append(Click(tuple(int(v) for v in p), positive))
        return out

    # ---- running -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None

    def segment(self) -> Any:
        """Segment the object marked by the six points (worker thread); return the worker or None."""
        return self._start("segment")

    def refine(self) -> Any:
        """Correct the current mask with the click layers (worker thread); return the worker or None."""
        return self._start("refine")

    def _start(self, action: str) -> Any:
        if self.running:
            return self.worker
        chosen = self._chosen_image_and_model("no interactive model: voxseg install interactive-soft-tissue, or Browse")
        if chosen is None:
            return None
        layer, choice = chosen
        name = layer.name
        try:
            image = self.image()
            if image is None or image.ndim != 3:
                raise VoxsegError(f"layer {name!r} is not 3D; interactive models segment 3D images")
            points = self.voxel_points()
            if len(points) != 6:
                raise VoxsegError(f"{points_status(points, image)} Place six extreme points first")
            clicks = self.clicks() if action == "refine" else []
            if action == "refine" and not clicks:
                raise VoxsegError("no clicks: press Add clicks and click in the green or magenta layer first")
        except VoxsegError as exc:
            self._notify_error(str(exc))
            return None
        from napari.qt.threading import create_worker

        self.worker = create_worker(self._run, action, choice, image, points, clicks, _start_thread=False)
        self.worker.returned.connect(lambda outcome: self._on_done(outcome, layer, action))
        self.worker.finished.connect(self._on_finished)
        for button in (self.segment_button, self.refine_button):
            button.setEnabled(False)
        self.progress.setRange(0, 0)  # busy
        self.status.setText(f"{'Segmenting' if action == 'segment' else 'Refining'} with {choice.label}...")
        self.worker.start()
        return self.worker

    def _run(self, action: str, choice: Any, image: Volume, points: np.ndarray, clicks: list) -> _Outcome:
        """Worker thread: load the model once, segment or refine, measure. Never raises."""
        from voxseg.apps.napari._features import object_features
        from voxseg.interactive.pipeline import refine, segment_from_points

        start = time.perf_counter()
        try:
            predictor = self._predictor(choice)
            voxels = np.rint(points).astype(np.int64)
            if action == "segment":
                mask = segment_from_points(image, voxels, model=predictor, space="voxel")
            else:
                mask = refine(image, None, clicks, model=predictor, points=voxels, space="voxel")
            features = object_features(mask, image)
            return _Outcome(mask, features, seconds=time.perf_counter() - start)
        except VoxsegError as exc:
            return _Outcome(error=str(exc))
        except Exception as exc:  # a bug or an environment problem: one line here, the traceback in the log
            log.exception("interactive %s with %s failed", action, choice.ref)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return _Outcome(error=f"{action} with {choice.label} failed: {type(exc).__name__}: {first[:300]}")

    def _on_done(self, outcome: _Outcome, layer: Image, action: str) -> None:
        self.last_outcome = outcome
        if outcome.error is not None:
            self._notify_error(outcome.error)
            return
        from voxseg.apps.napari.segment import show_labels

        name = f"{layer.name} object"
        meta = {METADATA_KEY: dict((layer.metadata or {}).get(METADATA_KEY) or {})}
        show_labels(self.viewer, name, outcome.mask, layer, meta, outcome.features, 0.5)
        volume = outcome.features.get("volume_mm3", [0.0])
        size = f"{float(volume[0]):.1f} mm³" if volume else "empty"
        verb = "Segmented" if action == "segment" else "Refined"
        self.status.setText(f"{verb} in {outcome.seconds:.1f} s: {name}, {size}. Add clicks to correct it.")

    def _on_finished(self) -> None:
        self.worker = None
        for button in (self.segment_button, self.refine_button):
            button.setEnabled(True)
        self.progress.setRange(0, 1)
        self.progress.setValue(0 if self.last_outcome is None or self.last_outcome.error else 1)

    def _notify_error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.status.setText(message)
        show_error(f"Interactive: {message}")
