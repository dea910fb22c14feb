"""``load_predictor``: a ready :class:`~voxseg.inference.predictor.Predictor` from a bundle or a name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxseg.bundle.cache import IndexArg, Progress, resolve_bundle
from voxseg.bundle.notice import terms
from voxseg.errors import BundleError

if TYPE_CHECKING:
    from voxseg.bundle.onnx_backend import OnnxPredictor
    from voxseg.inference.predictor import Predictor

__all__ = ["load_predictor", "load_onnx_predictor"]


def load_predictor(
    bundle_or_name: str | Path,
    *,
    folds: Sequence[int] | None = None,
    configuration: str | None = None,
    index: IndexArg = None,
    cache: str | Path | None = None,
    models: str | Path | None = None,
    offline: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> Predictor:
    """A predictor for a bundle folder, a bundle ``.zip`` or an installed/installable ``NAME[@VERSION]``.

    The bundle is verified (every sha256) before its weights are loaded; a name that is not
    installed yet is installed first (see :func:`voxseg.bundle.install`). The plan, configuration
    and postprocessing come from ``bundle.json``.

    Parameters
    ----------
    folds
        A subset of the bundle's folds to ensemble (default: all of them).
    configuration
        Must be the bundle's configuration when given (a bundle holds one).
    index, cache, models, offline, progress
        As for :func:`voxseg.bundle.install`.
    **options
        Predictor options (``tta``, ``overlap``, ``precision``, ``device``, ``threshold``,
        ``batch_size``, ``num_threads``; ``postprocessing`` replaces the bundle's). Bundles imported
        from nnU-Net (``voxseg import-nnunet``) name ``"arithmetic": "nnunet-exact"`` in ``bundle.json``
        and run with :class:`~voxseg.nnunet.exact.NnunetExactPredictor` unless ``exact=False``.

    >>> predictor = load_predictor("mouse-lung-nodules")        # doctest: +SKIP
    >>> result = predictor.predict(volume)                        # doctest: +SKIP
    """
    from voxseg.inference.arithmetic import DEFAULT_ARITHMETIC, predictor_class

    bundle = resolve_bundle(bundle_or_name, index=index, cache=cache, models=models, offline=offline, progress=progress)
    m = bundle.manifest
    if configuration not in (None, m.configuration):
        raise BundleError(f"{m.reference} holds configuration {m.configuration!r}, not {configuration!r}")
    chosen = m.folds if folds is None else tuple(int(f) for f in folds)
    missing = [f for f in chosen if f not in m.folds]
    if missing or not chosen:
        raise BundleError(f"{m.reference} has folds {list(m.folds)}; fold(s) {missing or 'none'} requested")
    paths = dict(zip(m.folds, bundle.weight_files(), strict=True))  # resolve_bundle always gives a folder
    files = [paths[f] for f in chosen]
    post = options.pop("postprocessing", None) or m.postprocessing
    # bundle.json names the arithmetic (an imported nnU-Net model: nnU-Net's own, the labels of
    # nnUNetv2_predict); exact=False runs voxseg's instead
    cls = predictor_class(m.arithmetic if options.pop("exact", True) else DEFAULT_ARITHMETIC)
    predictor = cls.from_weights(m.plan, files, configuration=m.configuration, postprocessing=post, **options)
    predictor.model_id = m.reference
    predictor.model_sha256 = bundle.sha256
    predictor.model_terms = terms(m)
    predictor.model_card = bundle.card
    predictor.folds = chosen
    return predictor


def load_onnx_predictor(
    bundle_or_name: str | Path,
    *,
    folds: Sequence[int] | None = None,
    index: Any = None,
    cache: str | Path | None = None,
    models: str | Path | None = None,
    offline: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> OnnxPredictor:
    """:func:`voxseg.models.load_predictor` for the onnxruntime backend: a bundle folder, ``.zip``
    or ``NAME[@VERSION]`` (installed on first use); ``options`` go to :class:`OnnxPredictor`
    (``tta``, ``overlap``, ``threshold``, ``batch_size``, ``num_threads``)."""
    from voxseg.bundle.onnx_backend import OnnxPredictor

    bundle = resolve_bundle(bundle_or_name, index=index, cache=cache, models=models, offline=offline, progress=progress)
    return OnnxPredictor.from_bundle(bundle, folds=folds, **options)
