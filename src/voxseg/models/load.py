"""``load_predictor``: a ready :class:`~voxseg.inference.predictor.Predictor` from a bundle or a name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxseg.bundle.cache import IndexArg, Progress, resolve_bundle
from voxseg.bundle.notice import terms
from voxseg.errors import BundleError

if TYPE_CHECKING:
    from voxseg.bundle.onnx_backend import OnnxPredictor
    from voxseg.inference.options import PredictOptions
    from voxseg.inference.predictor import Predictor
    from voxseg.postprocessing import PostprocessingSpec

__all__ = ["load_predictor", "load_onnx_predictor"]


def load_predictor(
    bundle_or_name: str | Path,
    options: PredictOptions | None = None,
    *,
    index: IndexArg = None,
    cache: str | Path | None = None,
    models: str | Path | None = None,
    offline: bool = False,
    progress: Progress | None = None,
    postprocessing: PostprocessingSpec | None = None,
    exact: bool = True,
    **changes: Any,
) -> Predictor:
    """A predictor for a bundle folder, a bundle ``.zip`` or an installed/installable ``NAME[@VERSION]``.

    The bundle is verified (every sha256) before its weights are loaded; a name that is not
    installed yet is installed first (see :func:`voxseg.bundle.install`). The plan, configuration
    and postprocessing come from ``bundle.json``.

    Parameters
    ----------
    options, changes
        How to predict (:class:`~voxseg.inference.options.PredictOptions`; ``changes`` are its
        fields, e.g. ``tta=False``, ``folds=[0]``). ``configuration`` must be the bundle's when given.
    index, cache, models, offline, progress
        As for :func:`voxseg.bundle.install`.
    postprocessing
        Replaces the bundle's postprocessing.
    exact
        Bundles imported from nnU-Net (``voxseg import-nnunet``) name ``"arithmetic": "nnunet-exact"``
        in ``bundle.json`` and run with :class:`~voxseg.nnunet.exact.NnunetExactPredictor`;
        ``exact=False`` runs voxseg's arithmetic instead.

    >>> predictor = load_predictor("mouse-lung-nodules")        # doctest: +SKIP
    >>> result = predictor.predict(volume)                        # doctest: +SKIP
    """
    from voxseg.inference.arithmetic import DEFAULT_ARITHMETIC, predictor_class
    from voxseg.inference.options import PredictOptions

    opts = (options or PredictOptions()).replace(**changes)
    bundle = resolve_bundle(bundle_or_name, index=index, cache=cache, models=models, offline=offline, progress=progress)
    m = bundle.manifest
    chosen = _folds(m, opts)
    paths = dict(zip(m.folds, bundle.weight_files(), strict=True))  # resolve_bundle always gives a folder
    files = [paths[f] for f in chosen]
    post = postprocessing or m.postprocessing
    cls = predictor_class(m.arithmetic if exact else DEFAULT_ARITHMETIC)
    predictor = cls.from_weights(
        m.plan, files, configuration=m.configuration, postprocessing=post, **opts.predictor_kwargs()
    )
    predictor.model_id = m.reference
    predictor.model_sha256 = bundle.sha256
    predictor.model_terms = terms(m)
    predictor.model_card = bundle.card
    predictor.folds = chosen
    return predictor


def _folds(m: Any, opts: PredictOptions) -> tuple[int, ...]:
    """The bundle's folds that ``opts`` picks (one-line errors for another configuration or fold)."""
    if opts.configuration not in (None, m.configuration):
        raise BundleError(f"{m.reference} holds configuration {m.configuration!r}, not {opts.configuration!r}")
    chosen = opts.chosen_folds(m.folds)
    missing = [f for f in chosen if f not in m.folds]
    if missing or not chosen:
        raise BundleError(f"{m.reference} has folds {list(m.folds)}; fold(s) {missing or 'none'} requested")
    return chosen


def load_onnx_predictor(
    bundle_or_name: str | Path,
    options: PredictOptions | None = None,
    *,
    index: Any = None,
    cache: str | Path | None = None,
    models: str | Path | None = None,
    offline: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **changes: Any,
) -> OnnxPredictor:
    """:func:`load_predictor` for the onnxruntime backend (torch is not imported): a bundle folder,
    ``.zip`` or ``NAME[@VERSION]`` (installed on first use)."""
    from voxseg.bundle.onnx_backend import OnnxPredictor
    from voxseg.inference.options import PredictOptions

    opts = (options or PredictOptions(backend="onnxruntime")).replace(**changes)
    bundle = resolve_bundle(bundle_or_name, index=index, cache=cache, models=models, offline=offline, progress=progress)
    return OnnxPredictor.from_bundle(bundle, folds=_folds(bundle.manifest, opts), **opts.onnx_kwargs())
