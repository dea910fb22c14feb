"""Model resolution: what ``-m MODEL`` / ``model=`` may name, turned into a :class:`Predictor`.

A model is a training work folder (``voxseg plan`` + ``voxseg train``), a model bundle (a folder
with ``bundle.json`` or a ``.zip``), or the name of an installed or installable model
(``NAME[@VERSION]``, see :mod:`voxseg.bundle`). Every kind that is tried is listed in the error
when nothing matches.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxseg.errors import VoxsegError

if TYPE_CHECKING:
    from voxseg.inference.predictor import Predictor
    from voxseg.inference.preflight import ModelFacts

__all__ = ["resolve_model", "describe_model"]


def resolve_model(
    model: str | Path | Predictor,
    *,
    folds: list[int] | tuple[int, ...] | None = None,
    configuration: str | None = None,
    **options: Any,
) -> Predictor:
    """A ready :class:`~voxseg.inference.predictor.Predictor` for ``model``.

    Parameters
    ----------
    model
        A training work folder (holds ``plan.json``; its finished folds are used), a bundle
        folder or ``.zip``, an installed/installable model name ``NAME[@VERSION]``, or a
        Predictor (returned unchanged; ``folds``/``configuration``/``options`` must then be empty).
    folds
        Folds to ensemble (default: every trained fold).
    configuration
        Plan configuration (default: the plan's default).
    **options
        Predictor options: ``tta``, ``overlap``, ``precision``, ``device``, ``threshold``,
        ``batch_size``, ``num_threads``, ``postprocessing``.

    Raises
    ------
    VoxsegError
        Nothing called ``model`` was found; the message lists what was tried.
    """
    from voxseg.inference.predictor import Predictor

    if isinstance(model, Predictor):
        if folds is not None or configuration is not None or options:
            raise VoxsegError("options cannot change an existing Predictor; build a new one with those options")
        return model
    if not isinstance(model, (str, Path)) or not str(model).strip():
        raise VoxsegError(f"model must be a path or a name, got {model!r}")
    path = Path(model).expanduser()
    tried = []
    if path.is_dir() and (path / "plan.json").is_file():
        return Predictor.from_work(path, configuration=configuration, folds=folds, **options)
    tried.append(f"a work folder at {path.resolve()} ({_why_not_work(path)})")
    from voxseg.bundle.cache import looks_like_path

    if (path / "bundle.json").is_file() or path.suffix.lower() == ".zip" or not looks_like_path(str(model)):
        from voxseg.bundle import load_predictor

        index = os.environ.get("VOXSEG_INDEX") or None
        return load_predictor(str(model), folds=folds, configuration=configuration, index=index, **options)
    raise VoxsegError(
        f"model {str(model)!r} not found: tried {'; '.join(tried)}; pass a training work folder "
        "(`voxseg plan` + `voxseg train`) or a model bundle"
    )


def _why_not_work(path: Path) -> str:
    if not path.exists():
        return "no such folder"
    if not path.is_dir():
        return "it is a file"
    return "no plan.json"


def describe_model(
    model: str | Path | Predictor,
    *,
    folds: list[int] | tuple[int, ...] | None = None,
    configuration: str | None = None,
    max_folds: int | None = None,
    **options: Any,
) -> ModelFacts:
    """What the pre-flight check needs of ``model``, without loading its weights or torch.

    ``model`` as for :func:`resolve_model` (a bundle is verified and, for a name, installed);
    ``max_folds`` keeps the first folds only (``--fast``); ``options`` are the Predictor options
    (``tta``, ``overlap``, ``batch_size``, ``precision``, ``device``, ``num_threads``, ``probabilities``:
    whether they are kept; others are ignored).
    """
    from voxseg.fingerprint.domain import TrainingDomain
    from voxseg.inference.preflight import ModelFacts
    from voxseg.planning import Plan

    if not isinstance(model, (str, Path)):
        return ModelFacts.from_predictor(model)
    path = Path(model).expanduser()
    domain = None
    if path.is_dir() and (path / "plan.json").is_file():
        from voxseg.experiment.layout import WorkDir
        from voxseg.fingerprint import Fingerprint

        wd = WorkDir(path)
        plan = Plan.load(wd.require_plan())
        cfg = plan.configuration(configuration).name
        available = wd.trained_folds(cfg)
        reference = f"work:{wd.root.resolve()}#{cfg}"
        if wd.fingerprint_path.is_file():
            domain = TrainingDomain.from_fingerprint(Fingerprint.load(wd.fingerprint_path))
    else:
        from voxseg.bundle.cache import looks_like_path, resolve_bundle

        if not ((path / "bundle.json").is_file() or path.suffix.lower() == ".zip" or not looks_like_path(str(model))):
            resolve_model(model)  # neither a work folder nor a bundle: its error lists what was tried

        manifest = resolve_bundle(str(model), index=os.environ.get("VOXSEG_INDEX") or None).manifest
        plan, cfg, available = manifest.plan, manifest.configuration, list(manifest.folds)
        reference, domain = manifest.reference, manifest.domain()
    count = len(folds) if folds is not None else max(1, len(available))
    if max_folds is not None and folds is None:
        count = min(count, max_folds)
    picked = {
        k: options[k]
        for k in ("tta", "overlap", "batch_size", "precision", "device", "probabilities")
        if options.get(k) is not None
    }
    return ModelFacts(reference, plan, cfg, count, threads=options.get("num_threads"), domain=domain, **picked)
