"""Which models the Segment widget offers, their one-line descriptions, and loading them.

A model is an installed bundle (``voxseg install NAME``), a bundle folder or ``.zip``, or a
training work folder (``voxseg plan`` + ``voxseg train``). Listing never downloads; loading
goes through the one resolver, :func:`voxseg.models.resolve_model`. No Qt or napari import here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxseg.errors import VoxsegError
from voxseg.io.safe_json import loads_json, read_json

if TYPE_CHECKING:
    from voxseg.inference.predictor import Predictor

__all__ = [
    "ModelChoice",
    "installed_choices",
    "path_choice",
    "load_model",
    "preferred_choice",
    "last_choice",
    "remember_choice",
]

log = logging.getLogger(__name__)

LAST_CHOICE_FILE = "napari-model.json"  # in the cache folder: the model chosen last in a widget


def with_terms(description: str, license: object, intended_use: object) -> str:
    """The description with the model's licence and intended use (shown where the model is chosen)."""
    terms = []
    if isinstance(license, str) and license:
        terms.append(f"Licence: {license}.")
    if isinstance(intended_use, str) and intended_use:
        terms.append(f"Intended use: {intended_use}.")
    return "\n".join(t for t in (description, " ".join(terms)) if t)


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model list.

    Attributes
    ----------
    label
        Text shown in the list.
    ref
        What :func:`load_model` loads: ``NAME@VERSION``, or a folder / ``.zip`` path.
    kind
        ``"installed"``, ``"available"`` (in an index, downloaded on first use), ``"bundle"`` or ``"work"``.
    description
        The one-line description (the model card's summary or the work folder's plan).
    """

    label: str
    ref: str
    kind: str
    description: str = ""
    task: str = ""  # "interactive" for a model prompted with points ("" when unknown)
    data_ndim: int | None = None  # 2 or 3: the images the model segments (None when unknown)
    modality: str = ""  # the bundle's modality, e.g. "CT", "MRI", "SWI, mask" ("" when unknown)

    @property
    def interactive(self) -> bool:
        return self.task == "interactive"


def installed_choices(*, models: str | Path | None = None, cache: str | Path | None = None) -> list[ModelChoice]:
    """Installed models (latest first per name), then those an index offers; never downloads."""
    try:
        from voxseg.bundle import list_models
    except ImportError:  # pragma: no cover - bundles are part of voxseg
        return []
    try:
        rows = list_models(models=models, cache=cache, offline=True)
    except (VoxsegError, OSError) as exc:
        log.warning("cannot list the installed models: %s", exc)
        return []
    out = []
    for row in sorted(rows, key=lambda r: (not r.installed, r.name, not r.latest)):
        if not row.installed and not row.latest:
            continue
        builtin = getattr(row, "builtin", False)  # shipped inside the package: installing reads it, no download
        suffix = "" if row.installed else " (built-in)" if builtin else " (download)"
        manifest = _manifest(row.path if row.installed else Path(row.source) if builtin else None)
        out.append(
            ModelChoice(
                f"{row.name}@{row.version}{suffix}",
                f"{row.name}@{row.version}",
                "installed" if row.installed else "available",
                with_terms(
                    row.description or str(manifest.get("description") or ""),
                    row.license or str(manifest.get("license") or ""),
                    row.intended_use or str(manifest.get("intended_use") or ""),
                ),
                getattr(row, "task", ""),
                **_facts(manifest),
            )
        )
    return out


def _manifest(path: Path | None) -> dict[str, Any]:
    """A bundle folder's or archive's ``bundle.json`` ({} when unknown or unreadable)."""
    if path is None:
        return {}
    if path.is_file():
        return _zip_manifest(path)
    try:
        data = read_json(Path(path) / "bundle.json")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _facts(manifest: dict[str, Any]) -> dict[str, Any]:
    """``data_ndim`` and ``modality`` of a ``bundle.json`` (or a ``plan.json``: data_ndim only)."""
    source = manifest.get("input") if isinstance(manifest.get("input"), dict) else manifest
    ndim = source.get("data_ndim")
    modality = manifest.get("modality")
    return {
        "data_ndim": ndim if ndim in (2, 3) else None,
        "modality": modality if isinstance(modality, str) else "",
    }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        raise VoxsegError(f"{path}: unreadable ({exc}); choose another model") from None
    if not isinstance(data, dict):
        raise VoxsegError(f"{path}: not a JSON object; choose another model")
    return data


def _work_description(root: Path) -> str:
    plan = _read_json(root / "plan.json")
    configuration = plan.get("default_configuration", "?")
    folds = sorted((root / "runs" / str(configuration)).glob("fold_*/checkpoint/model.safetensors"))
    labels = [k for k, v in (plan.get("labels") or {}).items() if v != 0 and k != "ignore"]
    return (
        f"work folder: {plan.get('dataset_name', '?')}, {configuration}, "
        f"{len(folds)} fold(s), classes: {', '.join(labels) or '?'}"
    )


def path_choice(path: str | Path) -> ModelChoice:
    """A model list entry for a bundle folder/``.zip`` or a training work folder.

    Raises
    ------
    VoxsegError
        Neither a work folder (``plan.json``) nor a bundle (``bundle.json`` or ``.zip``).
    """
    root = Path(path).expanduser()
    if root.is_dir() and (root / "plan.json").is_file():
        plan = _read_json(root / "plan.json")
        task = "interactive" if plan.get("interactive") else "semantic"
        description = _work_description(root)
        return ModelChoice(f"{root.name} (work folder)", str(root), "work", description, task, **_facts(plan))
    if root.is_dir() and (root / "bundle.json").is_file():
        data = _read_json(root / "bundle.json")
        name = f"{data.get('name', root.name)}@{data.get('version', '?')}"
        description = with_terms(str(data.get("description") or ""), data.get("license"), data.get("intended_use"))
        task = str(data.get("task") or "")
        return ModelChoice(f"{name} ({root.name})", str(root), "bundle", description, task, **_facts(data))
    if root.is_file() and root.suffix.lower() == ".zip":
        data = _zip_manifest(root)
        task = data.get("task", "")
        return ModelChoice(
            f"{root.name}",
            str(root),
            "bundle",
            with_terms(
                str(data.get("description") or "model bundle archive"), data.get("license"), data.get("intended_use")
            ),
            task if isinstance(task, str) else "",
            **_facts(data),
        )
    raise VoxsegError(
        f"{root}: not a model (no plan.json of a work folder, no bundle.json, not a .zip); "
        "choose a training work folder or a model bundle"
    )


def _zip_manifest(path: Path) -> dict[str, Any]:
    """A bundle archive's ``bundle.json`` ({} when unreadable: loading it will say why)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            data = loads_json(archive.read("bundle.json"), source=path)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}
    return data if isinstance(data, dict) else {}


def load_model(choice: ModelChoice, **options: Any) -> Predictor:
    """A :class:`~voxseg.inference.predictor.Predictor` for ``choice`` (options go to the predictor).

    Raises
    ------
    VoxsegError
        The model cannot be found, verified or loaded (one line, naming the model).
    """
    from voxseg.models import resolve_model

    return resolve_model(choice.ref, **options)


def _modality_words(text: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if w}


def preferred_choice(
    choices: Sequence[ModelChoice], *, image_ndim: int | None = None, image_modality: str = "", last: str | None = None
) -> ModelChoice | None:
    """The model to offer first for an image: one of its dimensionality, then of its modality, then
    the one chosen last time (``last``, a ref), then the list's order (installed models first)."""
    if not choices:
        return None
    want = _modality_words(image_modality)

    def rank(item: tuple[int, ModelChoice]) -> tuple[int, int, int, int]:
        index, choice = item
        dims = 0 if image_ndim is None or choice.data_ndim == image_ndim else 1 if choice.data_ndim is None else 2
        modality = 0 if want and want & _modality_words(choice.modality) else 1
        return (dims, modality, 0 if last is not None and choice.ref == last else 1, index)

    return min(enumerate(choices), key=rank)[1]


def _last_choice_file() -> Path:
    from voxseg.settings import resolve_paths

    return resolve_paths().cache / LAST_CHOICE_FILE


def last_choice() -> str | None:
    """The model ref chosen last in a widget (None when none was, or the file is unreadable)."""
    try:
        data = read_json(_last_choice_file())
    except (OSError, ValueError, VoxsegError):
        return None
    ref = data.get("model") if isinstance(data, dict) else None
    return ref if isinstance(ref, str) and ref else None


def remember_choice(ref: str) -> None:
    """Remember ``ref`` as the model chosen last (a small JSON file in the cache folder)."""
    from voxseg.io import write_json_atomic

    try:
        path = _last_choice_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"model": ref})
    except (OSError, VoxsegError) as exc:  # a read-only cache must not break the widget
        log.warning("cannot remember the chosen model: %s", exc)
