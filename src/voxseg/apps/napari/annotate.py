"""The "Annotate & train" widget: segment, correct, add to a training set, fine-tune, compare.

Thin over the library: **Segment** predicts the image with the chosen model
(:func:`voxseg.apps.napari._models.load_model`) into an editable Labels layer; the user corrects it
with napari's own tools (or paints a few slices); **Add to training set** saves image + mask (+ the
annotated slices: the others become the ignore label) into a project folder in the nnU-Net layout
(:class:`~voxseg.apps.napari._project.AnnotationProject`); **Fine-tune** runs
:func:`voxseg.experiment.finetune.finetune` (or, with "no model yet",
:func:`~voxseg.experiment.finetune.train_first`) in a worker thread with a progress bar, a time
budget and Cancel; the new version is listed and chosen; **Compare** adds the old and the new
model's masks as two layers. A cancelled or interrupted run (napari closed) resumes when
Fine-tune is pressed again with the same cases and settings.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from voxseg.apps.napari._layers import layer_volume
from voxseg.apps.napari._models import ModelChoice, load_model
from voxseg.apps.napari._picker import ModelPicker
from voxseg.apps.napari._project import AnnotationProject, edited_slices, parse_slices
from voxseg.apps.napari.segment import _preload
from voxseg.errors import VoxsegError

__all__ = ["AnnotateTrainWidget"]

log = logging.getLogger(__name__)

NEW_MODEL = ModelChoice(
    "(no model yet: train a first one)",
    "",
    "new",
    "Annotate a few slices of a few images, add them, then Fine-tune trains a first model from them.",
)


class _Cancelled(Exception):
    pass


class _Bridge(QObject):
    """Progress from the worker thread to the GUI thread (queued signals)."""

    progress = Signal(int, int)


def _default_project() -> Path:
    from voxseg.settings import resolve_paths

    return resolve_paths().data / "annotate-project"


class AnnotateTrainWidget(ModelPicker, QWidget):
    """Annotate & train (see the module docstring)."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        _preload()  # torch and the model code imported now, not in a worker holding the GIL
        self.viewer = napari_viewer
        self._choices: list[ModelChoice] = []
        self._cancel = threading.Event()
        self._references: dict[str, np.ndarray] = {}  # labels layer -> the model's mask it started from
        self.worker: Any = None
        self.last_result: Any = None  # the FinetuneResult of the last Fine-tune
        self.compare_pair: tuple[str, str] | None = None  # (old, new) model references
        self.overrides: dict[str, Any] = {}  # more training options (e.g. iterations_per_epoch)
        self._bridge = _Bridge()
        self._bridge.progress.connect(self._on_progress)
        self._build()
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_layers)
        self._refresh_layers()
        self.refresh_models()

    # ---- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        self.image_combo = QComboBox()
        self.labels_combo = QComboBox()
        model_row = self._build_model_controls("A model bundle folder")
        self.name_edit = QLineEdit("my-model")
        self.name_edit.setToolTip("Name of the first model (no model yet)")
        self.project_edit = QLineEdit(str(_default_project()))
        self.sparse_check = QCheckBox("Only some slices are annotated (the rest is ignored)")
        self.slices_edit = QLineEdit("")
        self.slices_edit.setPlaceholderText("e.g. 3, 10-12 (empty: the slices you edited)")
        self.minutes_spin = QDoubleSpinBox()
        self.minutes_spin.setRange(0.05, 600)
        self.minutes_spin.setValue(5.0)
        self.minutes_spin.setSuffix(" min")
        self.freeze_check = QCheckBox("Freeze the encoder")
        buttons = {}
        for key, text in (("segment", "Segment"), ("add", "Add to training set"), ("finetune", "Fine-tune"),
                          ("cancel", "Cancel"), ("compare", "Compare")):  # fmt: skip
            buttons[key] = QPushButton(text)
            buttons[key].clicked.connect(getattr(self, key))
        self.segment_button, self.add_button = buttons["segment"], buttons["add"]
        self.finetune_button, self.cancel_button = buttons["finetune"], buttons["cancel"]
        self.compare_button = buttons["compare"]
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        form = QFormLayout()
        for label, widget in (("Image", self.image_combo), ("Model", model_row), ("", self.description),
                              ("New model name", self.name_edit), ("Labels", self.labels_combo),
                              ("Project folder", self.project_edit), ("", self.sparse_check),
                              ("Annotated slices", self.slices_edit), ("Time budget", self.minutes_spin),
                              ("", self.freeze_check)):  # fmt: skip
            form.addRow(label, widget)
        grid = QGridLayout()
        for k, key in enumerate(("segment", "add", "finetune", "cancel", "compare")):
            grid.addWidget(buttons[key], k // 3, k % 3)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(grid)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)

    def _refresh_layers(self, event: Any = None) -> None:
        for combo, kind in ((self.image_combo, Image), (self.labels_combo, Labels)):
            keep = combo.currentText()
            names = [layer.name for layer in self.viewer.layers if isinstance(layer, kind)]
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if keep in names:
                combo.setCurrentText(keep)
            combo.blockSignals(False)
        self._follow_image()

    def _listed(self, choices: list[ModelChoice]) -> list[ModelChoice]:
        return [c for c in choices if not c.interactive] + [NEW_MODEL]

    def select_model(self, ref: str) -> None:
        """Choose the model ``ref`` (``""``: no model yet) as if the user had picked it."""
        index = next(i for i, c in enumerate(self._choices) if c.ref == ref)
        self.model_combo.setCurrentIndex(index)
        self._on_user_choice(index)

    @property
    def running(self) -> bool:
        return self.worker is not None

    # ---- segment -----------------------------------------------------------------------------
    def segment(self) -> Any:
        """Predict the chosen image with the chosen model into the Labels layer "IMAGE labels"."""
        chosen = self._chosen_image_and_model("no model chosen")
        if chosen is None or self.running:
            return None
        layer, choice = chosen
        if choice.kind == "new":
            return self._notify_error("no model yet: paint a Labels layer, then Add to training set")
        try:
            image = layer_volume(layer)
        except VoxsegError as exc:
            return self._notify_error(str(exc))
        return self._start(self._predict, (choice.ref, image, choice.kind), self._show_segmentation, layer)

    @staticmethod
    def _predict(ref: str, image: Any, kind: str = "installed") -> np.ndarray:
        choice = ModelChoice(ref, ref, kind)
        return np.asarray(load_model(choice, tta=False).predict([image]).labels.array)

    def _show_segmentation(self, labels: np.ndarray, layer: Image) -> None:
        name = f"{layer.name} labels"
        self._add_labels(name, labels, layer)
        self._references[name] = labels.copy()
        self.labels_combo.setCurrentText(name)
        self.status.setText(f"{name}: correct it with napari's label tools, then Add to training set")

    def _add_labels(self, name: str, labels: np.ndarray, layer: Image) -> Labels:
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        return self.viewer.add_labels(labels, name=name, scale=layer.scale, translate=layer.translate)

    # ---- add to training set -----------------------------------------------------------------
    def project(self) -> AnnotationProject:
        """The project folder with the chosen model's labels and channel name."""
        choice = self.current_model
        labels, channel = {"background": 0, "foreground": 1}, "image"
        if choice is not None and choice.kind != "new":
            from voxseg.bundle.cache import resolve_bundle

            plan = resolve_bundle(choice.ref).manifest.plan
            labels, channel = plan.labels, plan.channel_names[0]
        return AnnotationProject(self.project_edit.text(), labels=labels, channel=channel)

    def add(self) -> str | None:
        """Save the chosen image and Labels layer as a training case; return its case id."""
        image_name, labels_name = self.image_combo.currentText(), self.labels_combo.currentText()
        if image_name not in self.viewer.layers or labels_name not in self.viewer.layers:
            return self._notify_error("choose an image and a Labels layer (Segment makes one; or add one and paint)")
        try:
            image = layer_volume(self.viewer.layers[image_name])
            labels = np.asarray(self.viewer.layers[labels_name].data)
            annotated = None
            if self.sparse_check.isChecked():
                annotated = parse_slices(self.slices_edit.text(), labels.shape[0])
                if annotated is None:
                    annotated = edited_slices(labels, self._references.get(labels_name))
                if not annotated:
                    return self._notify_error("no annotated slice: paint some slices or list them")
            project = self.project()
            case = project.add(image, labels, annotated=annotated, source=image_name)
        except (VoxsegError, OSError) as exc:
            return self._notify_error(str(exc))
        what = "every slice" if annotated is None else f"slices {', '.join(map(str, annotated))}"
        self.status.setText(f"added {case} ({what}) to {project.root}: {len(project.cases())} case(s)")
        return case

    # ---- fine-tune ---------------------------------------------------------------------------
    def finetune(self) -> Any:
        """Fine-tune the chosen model (or train a first one) on the project, in a worker thread."""
        choice = self.current_model
        if choice is None or self.running:
            return None
        root = Path(self.project_edit.text())
        if not (root / "dataset.json").is_file():
            return self._notify_error(f"{root}: no training case yet: Add to training set first")
        self._cancel.clear()
        args = (choice, root, float(self.minutes_spin.value()), self.freeze_check.isChecked(),
                self.name_edit.text().strip(), dict(self.overrides))  # fmt: skip
        self.progress.setRange(0, 0)
        return self._start(self._train, args, self._on_trained, choice)

    def _train(self, choice: ModelChoice, root: Path, minutes: float, freeze: bool, name: str, overrides: dict):
        from voxseg.experiment.finetune import finetune, train_first

        def progress(info: Any) -> None:
            if self._cancel.is_set():
                raise _Cancelled
            self._bridge.progress.emit(info.epoch * info.iterations + info.iteration, info.epochs * info.iterations)

        common = {"minutes": minutes, "overrides": overrides, "progress": progress}
        if choice.kind == "new":
            return train_first(root, name=name, **common)
        return finetune(root, model=choice.ref, freeze_encoder=freeze, **common)

    def _on_trained(self, result: Any, choice: ModelChoice) -> None:
        self.last_result = result
        self.refresh_models()
        self.select_model(result.reference)
        if result.parent is not None:
            self.compare_pair = (result.parent, result.reference)
        if result.before_dice is not None and result.after_dice is not None:
            dice = f"held-out Dice {result.before_dice:.3f} -> {result.after_dice:.3f}"
        else:
            dice = "no held-out case (add two cases or more to score it)"
        self.status.setText(f"{result.reference} is ready and chosen ({result.epochs} epochs; {dice})")
        show_info(f"Annotate & train: {result.reference} is ready")

    # ---- compare -----------------------------------------------------------------------------
    def compare(self) -> Any:
        """Add the old and the new model's masks of the chosen image as two Labels layers."""
        name = self.image_combo.currentText()
        if self.compare_pair is None or name not in self.viewer.layers or self.running:
            return self._notify_error("Compare needs a fine-tuned model and an image: Fine-tune first")
        layer = self.viewer.layers[name]
        image = layer_volume(layer)
        old, new = self.compare_pair
        return self._start(lambda: [self._predict(r, image) for r in (old, new)], (), self._show_pair, layer)

    def _show_pair(self, masks: list[np.ndarray], layer: Image) -> None:
        for ref, mask in zip(self.compare_pair or (), masks, strict=False):
            self._add_labels(f"{layer.name} {ref}", mask, layer)
        self.status.setText(f"compare: {' vs '.join(self.compare_pair or ())} on {layer.name}")

    # ---- workers -----------------------------------------------------------------------------
    def _start(self, fn, args: tuple, done, context: Any) -> Any:
        self.worker = create_worker(fn, *args, _start_thread=False)
        self.worker.returned.connect(lambda value: self._safely(done, value, context))
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_finished)
        for button in (self.segment_button, self.add_button, self.finetune_button, self.compare_button):
            button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        if self.progress.maximum() != 0:
            self.progress.setRange(0, 0)
        self.worker.start()
        return self.worker

    def _safely(self, done, value: Any, context: Any) -> None:
        try:
            done(value, context)
        except (VoxsegError, OSError, StopIteration) as exc:
            self._notify_error(str(exc))

    def cancel(self) -> None:
        """Stop the running fine-tuning after its current step (it resumes when run again)."""
        if self.running:
            self._cancel.set()
            self.status.setText("Cancelling (the run resumes when you Fine-tune again)...")

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, _Cancelled):
            self.status.setText("cancelled: Fine-tune again resumes the run")
        else:
            self._notify_error(" ".join(str(exc).split()) or type(exc).__name__)

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(min(done, total))

    def _on_finished(self) -> None:
        self.worker = None
        for button in (self.segment_button, self.add_button, self.finetune_button, self.compare_button):
            button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1)

    def _notify_error(self, message: str) -> None:
        self.status.setText(message)
        show_error(f"Annotate & train: {message}")
