"""The "Segment" widget: run a voxseg model on an image layer, off the GUI thread.

Thin over the library: the model is loaded with :func:`voxseg.models.load_predictor` or
:func:`voxseg.models.resolve.resolve_model`, the image is predicted by
:meth:`voxseg.inference.Predictor.predict`, objects are split with
:func:`voxseg.postprocessing.instances` and measured with :func:`voxseg.postprocessing.object_table`.
The result is a Labels layer with the image's scale and translate, named after the model, whose
``features`` are the object table (shown by the Objects widget).

Loading and predicting run in a worker thread (napari's ``create_worker``); progress comes back
through a Qt signal and "Cancel" stops the prediction at the next tile. Errors (no image, a 2D
image for a 3D model, a model that does not load) become one-line napari notifications.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from voxseg.apps.napari._features import object_features
from voxseg.apps.napari._layers import METADATA_KEY, layer_volume
from voxseg.apps.napari._models import ModelChoice, load_model
from voxseg.apps.napari._picker import ModelPicker
from voxseg.errors import VoxsegError
from voxseg.inference.options import PredictOptions
from voxseg.io import Volume

__all__ = ["SegmentWidget", "SegmentOptions"]

log = logging.getLogger(__name__)

_NONE = "(none)"


@dataclass(frozen=True)
class SegmentOptions:
    """What the widget's option controls say.

    Attributes
    ----------
    fast
        ``voxseg predict --fast``'s profile (:meth:`voxseg.inference.options.PredictOptions.fast`):
        no mirror test-time augmentation, less tile overlap, the first fold only.
    threshold
        Probability threshold of binary models (0.5 = argmax); ignored by multi-class models.
    min_size
        Objects with fewer voxels are dropped (0 keeps all).
    split_objects
        Give every connected object its own id (instances; the class is kept in the table).
    force
        Run even when the pre-flight check estimates more time or memory than its limits.
    """

    fast: bool = False
    threshold: float = 0.5
    min_size: int = 0
    split_objects: bool = True
    force: bool = False

    def predict_options(self, **changes: Any) -> PredictOptions:
        """The prediction options these controls mean (``changes``: PredictOptions fields)."""
        return PredictOptions.fast(**changes) if self.fast else PredictOptions(**changes)


class _Cancelled(Exception):
    pass


@dataclass
class _Outcome:
    labels: Volume | None = None
    features: dict[str, list[Any]] = field(default_factory=dict)
    error: str | None = None
    cancelled: bool = False
    seconds: float = 0.0
    finished_at: float = field(default_factory=time.perf_counter)  # perf_counter when the worker was done


class _Bridge(QObject):
    """Carries progress from the worker thread to the GUI thread (queued signals)."""

    progress = Signal(int, int)
    phase = Signal(str)
    warning = Signal(str)


class SegmentWidget(ModelPicker, QWidget):
    """Segment an image layer with a voxseg model (see the module docstring).

    Parameters
    ----------
    napari_viewer
        The viewer (napari passes it when the widget is opened from the Plugins menu).
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        _preload()
        self.viewer = napari_viewer
        self._choices: list[ModelChoice] = []
        self._loaded: dict[str, Any] = {}  # model ref -> base Predictor (weights loaded once)
        self._cancel = threading.Event()
        self.worker: Any = None
        self.last_outcome: _Outcome | None = None
        self._bridge = _Bridge()
        self._bridge.progress.connect(self._on_progress)
        self._bridge.phase.connect(self._on_phase)
        self._bridge.warning.connect(lambda text: show_warning(f"Segment: {text}"))
        self._build_controls()
        self._build_layout()
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_layers)
        self._refresh_layers()
        self.refresh_models()

    # ---- layout ------------------------------------------------------------------------------
    def _build_controls(self) -> None:
        self.image_combo = QComboBox()
        self.image_combo.currentTextChanged.connect(self._follow_image)  # a 2D image gets a 2D model
        self.mask_combo = QComboBox()
        self.model_row = self._build_model_controls("A training work folder or a model bundle folder")
        self.fast_check = QCheckBox("Fast mode (no mirroring, less tile overlap, first fold only)")
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setRange(0.01, 0.99)
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setValue(0.5)
        self.threshold_spin.setToolTip("Binary models: foreground where P(foreground) > threshold")
        self.min_size_spin = QSpinBox()
        self.min_size_spin.setRange(0, 10_000_000)
        self.min_size_spin.setSuffix(" voxels")
        self.min_size_spin.setToolTip("Objects smaller than this are removed (0 keeps all)")
        self.split_check = QCheckBox("One id per object (instances)")
        self.split_check.setChecked(True)
        self.force_check = QCheckBox("Run beyond the time/memory limits")
        self.force_check.setToolTip("The pre-flight check refuses images estimated over 30 min or over the free memory")
        self.segment_button = QPushButton("Segment")
        self.segment_button.clicked.connect(self.segment)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)

    def _build_layout(self) -> None:
        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Mask", self.mask_combo)
        form.addRow("Model", self.model_row)
        form.addRow("", self.description)
        form.addRow("", self.fast_check)
        form.addRow("Threshold", self.threshold_spin)
        form.addRow("Min. object size", self.min_size_spin)
        form.addRow("", self.split_check)
        form.addRow("", self.force_check)
        buttons = QHBoxLayout()
        buttons.addWidget(self.segment_button, 1)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)

    # ---- layers and models -------------------------------------------------------------------
    def _refresh_layers(self, event: Any = None) -> None:
        for layer in self.viewer.layers:  # a renamed layer renames its entry (connecting twice is a no-op)
            layer.events.name.connect(self._refresh_layers)
        images = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        masks = [_NONE] + [layer.name for layer in self.viewer.layers if isinstance(layer, (Labels, Image))]
        for combo, names in ((self.image_combo, images), (self.mask_combo, masks)):
            keep = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if keep in names:
                combo.setCurrentText(keep)
            combo.blockSignals(False)
        self._follow_image()

    def options(self) -> SegmentOptions:
        """The options the controls show."""
        return SegmentOptions(
            fast=self.fast_check.isChecked(),
            threshold=float(self.threshold_spin.value()),
            min_size=int(self.min_size_spin.value()),
            split_objects=self.split_check.isChecked(),
            force=self.force_check.isChecked(),
        )

    # ---- running -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None

    def segment(self) -> Any:
        """Start segmenting the chosen image with the chosen model; return the worker (None on bad input)."""
        if self.running:
            return self.worker
        inputs = self._inputs()
        if inputs is None:
            return None
        layer, image, mask, choice = inputs
        self._cancel.clear()
        self.worker = create_worker(self._run, choice, image, mask, self.options(), layer.name, _start_thread=False)
        self.worker.returned.connect(lambda outcome: self._on_done(outcome, layer, choice))
        self.worker.finished.connect(self._on_finished)
        self.segment_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)  # busy until the first tile
        self.status.setText(f"Loading {choice.label}...")
        self.worker.start()
        return self.worker

    def cancel(self) -> None:
        """Stop the running prediction at its next tile."""
        if self.running:
            self._cancel.set()
            self.status.setText("Cancelling...")

    def _inputs(self) -> tuple[Image, Volume, Volume | None, ModelChoice] | None:
        chosen = self._chosen_image_and_model("no model chosen: voxseg install NAME, or Browse to a work folder")
        if chosen is None:
            return None
        layer, choice = chosen
        try:
            image = layer_volume(layer)
            mask = None
            mask_name = self.mask_combo.currentText()
            if mask_name not in ("", _NONE) and mask_name in self.viewer.layers:
                mask_volume = layer_volume(self.viewer.layers[mask_name])
                mask = mask_volume.with_array((np.asarray(mask_volume.array) > 0).astype(np.uint8))
        except VoxsegError as exc:
            self._notify_error(str(exc))
            return None
        return layer, image, mask, choice

    def _predictor(self, choice: ModelChoice, options: SegmentOptions) -> Any:
        base = self._loaded.get(choice.ref)
        if base is None:
            base = load_model(choice, tta=False)
            self._loaded[choice.ref] = base
        binary = base.plan.num_classes <= 2
        threshold = options.threshold if binary and abs(options.threshold - 0.5) > 1e-9 else None
        return base.with_options(options.predict_options(threshold=threshold))

    def _preflight(
        self, choice: ModelChoice, image: Volume, mask: Volume | None, options: SegmentOptions, name: str
    ) -> None:
        """Worker thread, before the model loads: warnings become notifications, a refusal an error."""
        from voxseg.inference.preflight import PreflightLimits
        from voxseg.models.api import preflight_volumes

        self._bridge.phase.emit("Pre-flight check...")
        limits = PreflightLimits(
            force=options.force,
            force_hint="tick 'Run beyond the time/memory limits'",
            time_limit_hint="30 min per image",
            memory_limit_hint="the free memory",
        )
        report = preflight_volumes(
            [image], choice.ref, options.predict_options(), mask_given=mask is not None, limits=limits, name=name
        )
        for warning in report.warnings:
            self._bridge.warning.emit(warning)
        report.check()
        self._bridge.phase.emit(f"Pre-flight: {report.summary()}")

    def _tick(self, done: int, total: int) -> None:
        if self._cancel.is_set():
            raise _Cancelled
        self._bridge.progress.emit(int(done), int(total))

    def _run(
        self, choice: ModelChoice, image: Volume, mask: Volume | None, options: SegmentOptions, name: str = "image"
    ) -> _Outcome:
        """Worker thread: load, predict, split objects, measure. Never raises."""
        start = time.perf_counter()
        try:
            self._preflight(choice, image, mask, options, name)
            if self._cancel.is_set():
                raise _Cancelled
            predictor = self._predictor(choice, options)
            if self._cancel.is_set():
                raise _Cancelled
            self._bridge.phase.emit(f"Segmenting with {choice.label}...")
            prediction = predictor.predict(image, mask=mask, progress=self._tick)
            self._bridge.phase.emit("Measuring objects...")
            labels, features = _objects(prediction.labels, image, options)
            return _Outcome(labels, features, seconds=time.perf_counter() - start)
        except _Cancelled:
            return _Outcome(cancelled=True)
        except VoxsegError as exc:
            return _Outcome(error=str(exc))
        except Exception as exc:  # a bug or an environment problem: one line here, the traceback in the log
            log.exception("segmentation with %s failed", choice.ref)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return _Outcome(error=f"segmentation with {choice.label} failed: {type(exc).__name__}: {first[:300]}")

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _on_phase(self, text: str) -> None:
        self.status.setText(text)

    def _on_done(self, outcome: _Outcome, layer: Image, choice: ModelChoice) -> None:
        self.last_outcome = outcome
        if outcome.cancelled:
            self.status.setText("Cancelled.")
            show_info("Segment: cancelled")
            return
        if outcome.error is not None:
            self._notify_error(outcome.error)
            return
        try:
            result = self._show(outcome, layer, choice)
        except Exception as exc:  # never a traceback dialog: one line here, the traceback in the log
            log.exception("showing the result of %s failed", choice.ref)
            self._notify_error(f"cannot show the result: {type(exc).__name__}: {exc}")
            return
        n = len(outcome.features.get("index", []))
        self.status.setText(f"{result.name}: {n} object(s) in {outcome.seconds:.1f} s.")

    def _show(self, outcome: _Outcome, layer: Image, choice: ModelChoice) -> Labels:
        meta = {METADATA_KEY: dict((layer.metadata or {}).get(METADATA_KEY) or {}, model=choice.ref)}
        return show_labels(self.viewer, _model_name(choice), outcome.labels, layer, meta, outcome.features, 0.6)

    def _on_finished(self) -> None:
        self.worker = None
        self.segment_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0 if self.last_outcome is None or self.last_outcome.error else 1)

    def _notify_error(self, message: str) -> None:
        self.status.setText(message)
        show_error(f"Segment: {message}")


def show_labels(viewer: Any, name: str, labels: Volume, layer: Image, meta: dict, features: dict, opacity: float):
    """Update the Labels layer ``name`` in place (same shape) or add it, on ``layer``'s grid; return it."""
    existing = viewer.layers[name] if name in viewer.layers else None  # noqa: SIM401 (no .get)
    if isinstance(existing, Labels) and existing.data.shape == labels.shape:
        existing.data = labels.array
        existing.scale, existing.translate, existing.metadata = layer.scale, layer.translate, meta
        existing.features = features
        viewer.layers.selection.active = existing
        return existing
    return viewer.add_labels(
        labels.array,
        name=name,
        scale=layer.scale,
        translate=layer.translate,
        metadata=meta,
        features=features,
        opacity=opacity,
    )


def _preload() -> None:
    """Import torch, MONAI, the predictor and pandas (napari's layer features) while the widget opens.

    Imports hold the GIL for long stretches: done in the worker they would freeze the GUI while
    the first model runs, so they happen here, once, when napari opens the widget.
    """
    import monai.networks.nets  # noqa: F401  (every voxseg network is a MONAI one)
    import pandas  # noqa: F401
    import safetensors.torch  # noqa: F401

    import voxseg.bundle
    import voxseg.inference
    import voxseg.models.resolve
    import voxseg.nets  # noqa: F401


def _model_name(choice: ModelChoice) -> str:
    if choice.kind == "work":
        return Path(choice.ref).name
    if choice.kind == "bundle" and choice.ref.lower().endswith(".zip"):
        return Path(choice.ref).stem
    return choice.label.split(" (")[0].split("@")[0]


def _objects(labels: Volume, image: Volume, options: SegmentOptions) -> tuple[Volume, dict[str, list[Any]]]:
    """Split into objects (or only drop small ones) and measure them against the image."""
    from voxseg.postprocessing import instances, remove_small_objects

    classes = labels
    if options.split_objects:
        labels = instances(labels, min_size=options.min_size)
        classes = classes.with_array(np.where(labels.array > 0, classes.array, 0))
    elif options.min_size > 0:
        labels = remove_small_objects(labels, min_size=options.min_size)
        classes = labels
    features = object_features(labels, image, class_map=classes if options.split_objects else None)
    return labels, features
