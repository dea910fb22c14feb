"""Find the parts of an nnU-Net v2 trained-model folder (or the zip of ``nnUNetv2_export_model_to_zip``).

A trained-model folder is ``<Trainer>__<Plans>__<configuration>/`` holding ``plans.json``,
``dataset.json``, ``fold_K/checkpoint_final.pth`` (and/or ``checkpoint_best.pth``) and, after
``nnUNetv2_find_best_configuration``, ``crossval_results_folds_*/postprocessing.pkl``. The zip made
by ``nnUNetv2_export_model_to_zip`` holds one or more of these folders under ``DatasetXXX_Name/``.
No torch here: files are only located and the JSON parsed.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from voxseg.errors import BundleError, ConfigError
from voxseg.io.safe_json import read_json

__all__ = ["ModelFolder", "find_model_folder", "opened_model"]

CHECKPOINTS = {"final": "checkpoint_final.pth", "best": "checkpoint_best.pth"}
_FOLD = re.compile(r"^fold_(\d+)$")
#: Members of an export zip that the import reads; nothing else is extracted.
_WANTED = re.compile(r"(^|/)(plans\.json|dataset\.json|postprocessing\.pkl|fold_\d+/checkpoint_(final|best)\.pth)$")
_MAX_MEMBER = 8 << 30


@dataclass(frozen=True)
class ModelFolder:
    """One nnU-Net trained-model folder, read.

    Attributes
    ----------
    root
        The folder holding ``plans.json``.
    plans, dataset
        The parsed ``plans.json`` and ``dataset.json``.
    trainer, plans_name, configuration
        From the folder name ``Trainer__Plans__configuration`` (empty when the name differs).
    checkpoints
        Fold -> checkpoint file, for the folds chosen.
    postprocessing
        ``postprocessing.pkl`` when the folder (or a ``crossval_results_folds_*`` sub-folder) has one.
    """

    root: Path
    plans: dict[str, Any]
    dataset: dict[str, Any]
    trainer: str
    plans_name: str
    configuration: str
    checkpoints: dict[int, Path]
    postprocessing: Path | None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise BundleError(f"{path}: missing; an nnU-Net v2 trained-model folder holds {what}")
    try:
        data = read_json(path, error=BundleError, fix="copy the file again from the model folder")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{path}: unreadable JSON ({exc}); copy the file again from the model folder") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _candidates(root: Path) -> list[Path]:
    if (root / "plans.json").is_file() or any(root.glob("fold_*")):
        return [root]
    return sorted(p.parent for p in root.rglob("plans.json") if any(p.parent.glob("fold_*")))


def _pick(root: Path, configuration: str | None) -> Path:
    found = _candidates(root)
    if not found:
        raise BundleError(
            f"{root}: no nnU-Net trained-model folder here (no plans.json next to fold_K/ folders); give the "
            "Trainer__Plans__configuration folder or the zip of nnUNetv2_export_model_to_zip"
        )
    if configuration is not None:
        named = [p for p in found if p.name.split("__")[-1] == configuration]
        if not named:
            have = ", ".join(p.name for p in found)
            raise ConfigError(f"{root}: no model folder of configuration {configuration!r} (found: {have})")
        found = named
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ConfigError(f"{root}: holds several models ({names}); choose one with --configuration")
    return found[0]


def _folds(root: Path, folds: Sequence[int] | None, checkpoint: str) -> dict[int, Path]:
    if checkpoint not in CHECKPOINTS:
        raise ConfigError(f"checkpoint must be 'final' or 'best', got {checkpoint!r}")
    name = CHECKPOINTS[checkpoint]
    present = {int(m.group(1)): p for p in root.iterdir() if p.is_dir() and (m := _FOLD.match(p.name))}
    if folds is None:
        chosen = sorted(k for k, p in present.items() if (p / name).is_file())
        if not chosen:
            raise BundleError(f"{root}: no fold_K/{name} (trained folds hold it; try --checkpoint best|final)")
    else:
        chosen = [int(f) for f in folds]
    out = {}
    for fold in chosen:
        path = root / f"fold_{fold}" / name
        if not path.is_file():
            have = ", ".join(str(k) for k in sorted(present)) or "none"
            raise BundleError(f"{path}: missing; fold {fold} has no {name} (folds present: {have})")
        out[fold] = path
    return out


def _postprocessing(root: Path) -> Path | None:
    direct = root / "postprocessing.pkl"
    if direct.is_file():
        return direct
    found = sorted(root.glob("crossval_results_folds_*/postprocessing.pkl"))
    return found[-1] if found else None


def find_model_folder(
    path: str | Path,
    *,
    configuration: str | None = None,
    folds: Sequence[int] | None = None,
    checkpoint: str = "final",
) -> ModelFolder:
    """Locate and read an nnU-Net v2 trained-model folder under ``path`` (a folder, not a zip).

    Raises
    ------
    BundleError
        ``plans.json``/``dataset.json`` or a requested fold's checkpoint is missing or unreadable.
    ConfigError
        Several models and no (matching) ``configuration``.
    """
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root}: not found (give an nnU-Net trained-model folder or its export zip)")
    root = _pick(root, configuration)
    plans = _read_json(root / "plans.json", "plans.json")
    dataset = _read_json(root / "dataset.json", "dataset.json")
    parts = root.name.split("__")
    trainer, plans_name, cfg = parts if len(parts) == 3 else ("", "", "")
    return ModelFolder(
        root=root,
        plans=plans,
        dataset=dataset,
        trainer=trainer,
        plans_name=plans_name or str(plans.get("plans_name", "")),
        configuration=configuration or cfg,
        checkpoints=_folds(root, folds, checkpoint),
        postprocessing=_postprocessing(root),
    )


def _safe_member(name: str, source: Path) -> PurePosixPath:
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or "\\" in name or (pure.parts and ":" in pure.parts[0]):
        raise BundleError(f"{source}: refused member {name!r} (absolute path or '..'); the zip is not a model export")
    return pure


def _extract(source: Path, target: Path) -> None:
    try:
        zf = zipfile.ZipFile(source)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{source}: not a readable zip ({exc})") from None
    with zf:
        for info in zf.infolist():
            if info.is_dir() or not _WANTED.search(info.filename):
                continue
            rel = _safe_member(info.filename, source)
            if info.file_size > _MAX_MEMBER:
                raise BundleError(f"{source}: member {info.filename} is over 8 GiB; refused")
            dest = target.joinpath(*rel.parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)


@contextmanager
def opened_model(
    path: str | Path,
    *,
    configuration: str | None = None,
    folds: Sequence[int] | None = None,
    checkpoint: str = "final",
) -> Iterator[ModelFolder]:
    """:func:`find_model_folder` on a folder, or on a temporary extraction of an export zip."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory(prefix="voxseg-nnunet-") as tmp:
            _extract(path, Path(tmp))
            yield find_model_folder(tmp, configuration=configuration, folds=folds, checkpoint=checkpoint)
        return
    if path.is_file():
        raise BundleError(f"{path}: not a folder or .zip (give the nnU-Net trained-model folder or its export zip)")
    yield find_model_folder(path, configuration=configuration, folds=folds, checkpoint=checkpoint)
