"""Which models the Segment widget offers, their one-line descriptions, and loading them.

A model is an installed bundle (``voxseg install NAME``), a bundle folder or ``.zip``, or a
training work folder (``voxseg plan`` + ``voxseg train``). Listing never downloads; loading
goes through :func:`voxseg.bundle.load_predictor` or
:func:`voxseg.inference.models.resolve_model`. No Qt or napari import here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxseg.errors import VoxsegError
from voxseg.io.safe_json import loads_json, read_json

if TYPE_CHECKING:
    from voxseg.inference.predictor import Predictor

__all__ = ["ModelChoice", "installed_choices", "path_choice", "load_model"]

log = logging.getLogger(__name__)


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
        suffix = "" if row.installed else " (download)"
        out.append(
            ModelChoice(
                f"{row.name}@{row.version}{suffix}",
                f"{row.name}@{row.version}",
                "installed" if row.installed else "available",
                row.description or _manifest_description(row.path),
                getattr(row, "task", ""),
            )
        )
    return out


def _manifest_description(path: Path | None) -> str:
    """The ``description`` of an installed bundle's ``bundle.json`` ("" when unreadable)."""
    if path is None:
        return ""
    try:
        data = read_json(Path(path) / "bundle.json")
    except (OSError, ValueError):
        return ""
    return str(data.get("description") or "") if isinstance(data, dict) else ""


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
        task = "interactive" if _read_json(root / "plan.json").get("interactive") else "semantic"
        return ModelChoice(f"{root.name} (work folder)", str(root), "work", _work_description(root), task)
    if root.is_dir() and (root / "bundle.json").is_file():
        data = _read_json(root / "bundle.json")
        name = f"{data.get('name', root.name)}@{data.get('version', '?')}"
        description = str(data.get("description") or "")
        return ModelChoice(f"{name} ({root.name})", str(root), "bundle", description, str(data.get("task") or ""))
    if root.is_file() and root.suffix.lower() == ".zip":
        data = _zip_manifest(root)
        task = data.get("task", "")
        return ModelChoice(
            f"{root.name}",
            str(root),
            "bundle",
            str(data.get("description") or "model bundle archive"),
            task if isinstance(task, str) else "",
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
    if choice.kind == "work":
        from voxseg.inference.models import resolve_model

        return resolve_model(choice.ref, **options)
    from voxseg.bundle import load_predictor

    return load_predictor(choice.ref, **options)
