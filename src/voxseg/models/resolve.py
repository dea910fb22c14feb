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
    from voxseg.inference.options import PredictOptions
    from voxseg.inference.pipeline import Pipeline
    from voxseg.inference.preflight import ModelFacts
    from voxseg.postprocessing import PostprocessingSpec

__all__ = ["resolve_model", "describe_model"]


def _options(options: PredictOptions | None, changes: dict[str, Any]) -> PredictOptions:
    """``options`` (default :class:`PredictOptions`) with ``changes`` (field names only)."""
    from voxseg.inference.options import PredictOptions

    base = options if options is not None else PredictOptions()
    return base.replace(**changes) if changes else base


def resolve_model(
    model: str | Path | Pipeline,
    options: PredictOptions | None = None,
    *,
    offline: bool = False,
    postprocessing: PostprocessingSpec | None = None,
    **changes: Any,
) -> Pipeline:
    """A ready predictor (:class:`~voxseg.inference.pipeline.Pipeline`) for ``model``.

    Parameters
    ----------
    model
        A training work folder (holds ``plan.json``; its finished folds are used), a bundle
        folder or ``.zip``, an installed/installable model name ``NAME[@VERSION]``, or a
        predictor (returned unchanged; no options may then be given).
    options
        How to predict (:class:`~voxseg.inference.options.PredictOptions`: TTA, overlap, precision,
        device, folds, ``max_folds``, configuration, backend...).
    offline
        Never download (a name must be installed).
    postprocessing
        Replaces the model's own postprocessing.
    **changes
        :class:`~voxseg.inference.options.PredictOptions` fields changed from ``options``
        (``tta=False``, ``folds=[0]``...); a name that is not a field is a one-line error.

    Raises
    ------
    VoxsegError
        Nothing called ``model`` was found; the message lists what was tried.
    """
    from voxseg.inference.pipeline import Pipeline

    if isinstance(model, Pipeline):
        if options is not None or changes or postprocessing is not None:
            raise VoxsegError("options cannot change an existing Predictor; build a new one with those options")
        return model
    opts = _options(options, changes)
    if not isinstance(model, (str, Path)) or not str(model).strip():
        raise VoxsegError(f"model must be a path or a name, got {model!r}")
    path = Path(model).expanduser()
    tried = []
    if path.is_dir() and (path / "plan.json").is_file():
        return _from_work(path, opts, postprocessing)
    tried.append(f"a work folder at {path.resolve()} ({_why_not_work(path)})")
    from voxseg.bundle.cache import looks_like_path

    if (path / "bundle.json").is_file() or path.suffix.lower() == ".zip" or not looks_like_path(str(model)):
        from voxseg.models.load import load_onnx_predictor, load_predictor

        index = os.environ.get("VOXSEG_INDEX") or None
        if opts.backend != "torch":  # onnxruntime, openvino, auto: the bundle's ONNX networks
            return load_onnx_predictor(str(model), options=opts, index=index, offline=offline)
        return load_predictor(str(model), options=opts, index=index, offline=offline, postprocessing=postprocessing)
    raise VoxsegError(
        f"model {str(model)!r} not found: tried {'; '.join(tried)}; pass a training work folder "
        "(`voxseg plan` + `voxseg train`) or a model bundle"
    )


def _from_work(path: Path, opts: PredictOptions, postprocessing: PostprocessingSpec | None) -> Pipeline:
    from voxseg.inference.predictor import Predictor

    if opts.backend != "torch":
        raise VoxsegError(f"{path}: a work folder runs with the torch backend; export a bundle with --onnx first")
    predictor = Predictor.from_work(
        path,
        configuration=opts.configuration,
        folds=opts.folds,
        postprocessing=postprocessing,
        **opts.predictor_kwargs(),
    )
    return predictor.first_folds(opts.max_folds) if opts.max_folds and opts.folds is None else predictor


def _why_not_work(path: Path) -> str:
    if not path.exists():
        return "no such folder"
    if not path.is_dir():
        return "it is a file"
    return "no plan.json"


def describe_model(
    model: str | Path | Pipeline, options: PredictOptions | None = None, *, probabilities: bool = False, **changes: Any
) -> ModelFacts:
    """What the pre-flight check needs of ``model``, without loading its weights or torch.

    ``model`` and ``options``/``changes`` as for :func:`resolve_model` (a bundle is verified and, for
    a name, installed); ``max_folds`` keeps the first folds only (``--fast``); ``probabilities``:
    whether the class probabilities will be kept (they cost memory).
    """
    from voxseg.fingerprint.domain import TrainingDomain
    from voxseg.inference.preflight import ModelFacts

    if not isinstance(model, (str, Path)):
        return ModelFacts.from_predictor(model)
    opts = _options(options, changes)
    configuration = opts.configuration
    path = Path(model).expanduser()
    domain = None
    if path.is_dir() and (path / "plan.json").is_file():
        from voxseg.fingerprint import Fingerprint
        from voxseg.planning.work import work_plan
        from voxseg.workdir.layout import WorkDir

        wd = WorkDir(path)
        plan = work_plan(wd, configuration)
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
    count = len(opts.folds) if opts.folds is not None else max(1, len(available))
    if opts.max_folds is not None and opts.folds is None:
        count = min(count, opts.max_folds)
    picked = {
        "tta": opts.tta,
        "overlap": opts.overlap,
        "batch_size": opts.batch_size,
        "precision": opts.precision,
        "device": opts.device,
        "probabilities": probabilities,
    }
    return ModelFacts(reference, plan, cfg, count, threads=opts.num_threads, domain=domain, **picked)
