"""The model list shared by the Segment and Interactive widgets (a mixin for their QWidget).

The widget calls :meth:`ModelPicker._build_model_controls` (the combo, Browse and the
description) and provides ``viewer``, ``image_combo`` and ``_notify_error(message)``; it may
narrow the list (:meth:`ModelPicker._listed`) and refuse a Browsed model
(:meth:`ModelPicker._refusal`).

Which model is offered first: until the user picks one, the model that fits the chosen image
(its dimensionality, then its modality when the layer's metadata gives one), else the model
picked last time (remembered in the cache folder), else the first installed one. The widget
calls :meth:`ModelPicker._follow_image` when its image choice changes.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton

from voxseg.apps.napari._layers import METADATA_KEY
from voxseg.apps.napari._models import (
    ModelChoice,
    installed_choices,
    last_choice,
    path_choice,
    preferred_choice,
    remember_choice,
)
from voxseg.errors import VoxsegError

__all__ = ["ModelPicker"]


class ModelPicker:
    """Installed models plus the folders added with Browse, in ``model_combo``."""

    _choices: list[ModelChoice]
    empty_text = "no model installed: Browse..."
    browse_title = "Choose a work folder or a model bundle folder"

    def _build_model_controls(self, browse_tip: str) -> QHBoxLayout:
        """Make ``model_combo``, ``browse_button`` and ``description``; return the combo + Browse row."""
        self.model_combo = QComboBox()
        self.model_combo.currentIndexChanged.connect(self._on_model_choice)
        self.model_combo.activated.connect(self._on_user_choice)  # the user's pick, not ours
        self._user_choice: str | None = None
        self.browse_button = QPushButton("Browse...")
        self.browse_button.setToolTip(browse_tip)
        self.browse_button.clicked.connect(self._browse)
        self.description = QLabel("")
        self.description.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.model_combo, 1)
        row.addWidget(self.browse_button)
        return row

    def _chosen_image_and_model(self, no_model: str) -> tuple[object, ModelChoice] | None:
        """The chosen image layer and model, or None after a notification (``no_model`` when no model)."""
        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            self._notify_error("no image layer: open an image (File > Open) or load a sample first")
            return None
        choice = self.current_model
        if choice is None:
            self._notify_error(no_model)
            return None
        return self.viewer.layers[name], choice

    def _listed(self, choices: list[ModelChoice]) -> list[ModelChoice]:
        """The installed models this widget offers (all of them by default)."""
        return choices

    def _refusal(self, choice: ModelChoice) -> str | None:
        """Why a Browsed model cannot be used here (None: it can)."""
        return None

    def refresh_models(self) -> None:
        """List the installed models again (plus the folders added with Browse)."""
        added = [c for c in getattr(self, "_choices", []) if c.kind in ("work", "bundle")]
        self._set_choices(self._listed(installed_choices()) + added)

    def _image_facts(self) -> tuple[int | None, str]:
        """Dimensionality and modality ("" when unknown) of the chosen image layer."""
        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            return None, ""
        layer = self.viewer.layers[name]
        modality = ((layer.metadata or {}).get(METADATA_KEY) or {}).get("modality") or ""
        return int(layer.ndim), str(modality)

    def _default_choice(self, choices: list[ModelChoice]) -> ModelChoice | None:
        """The user's pick while listed, else the one that fits the image (see the module docstring)."""
        picked = next((c for c in choices if c.ref == self._user_choice), None)
        if picked is not None:
            return picked
        ndim, modality = self._image_facts()
        plain = [c for c in choices if not c.interactive] or choices  # points-prompted models: by choice only
        return preferred_choice(plain, image_ndim=ndim, image_modality=modality, last=last_choice())

    def _follow_image(self, *_: object) -> None:
        """The image choice changed: offer the model that fits it (unless the user picked one)."""
        choices = getattr(self, "_choices", [])
        best = self._default_choice(choices)
        if best is not None and best is not self.current_model:
            self.model_combo.setCurrentIndex(choices.index(best))

    def _on_user_choice(self, index: int) -> None:
        if 0 <= index < len(self._choices):
            self._user_choice = self._choices[index].ref
            remember_choice(self._user_choice)

    def _set_choices(self, choices: list[ModelChoice], current: ModelChoice | None = None) -> None:
        if current is None:
            current = self._default_choice(choices)
        self._choices = choices
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItems([c.label for c in choices])
        if current is not None:
            self.model_combo.setCurrentIndex(choices.index(current))
        self.model_combo.blockSignals(False)
        if not choices:
            self.model_combo.setPlaceholderText(self.empty_text)
        self._on_model_choice()

    def add_model_path(self, path: str | Path) -> ModelChoice | None:
        """Add a work folder or bundle to the model list and choose it (None and a notification if unusable)."""
        try:
            choice = path_choice(path)
        except VoxsegError as exc:
            self._notify_error(str(exc))
            return None
        refusal = self._refusal(choice)
        if refusal is not None:
            self._notify_error(refusal)
            return None
        kept = [c for c in self._choices if c.ref != choice.ref]
        self._user_choice = choice.ref  # chosen on purpose: the image choice no longer changes it
        self._set_choices([*kept, choice], current=choice)
        return choice

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.browse_title)
        if folder:
            self.add_model_path(folder)

    def _on_model_choice(self, index: int | None = None) -> None:
        choice = self.current_model
        self.description.setText(choice.description if choice is not None else "")

    @property
    def current_model(self) -> ModelChoice | None:
        index = self.model_combo.currentIndex()
        return self._choices[index] if 0 <= index < len(self._choices) else None
