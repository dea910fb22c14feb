"""``load_predictor``: a ready :class:`~voxseg.inference.predictor.Predictor` from a bundle or a name."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxseg.bundle.cache import IndexArg, Progress, resolve_bundle

if TYPE_CHECKING:
    from voxseg.inference.predictor import Predictor

__all__ = ["load_predictor"]


def load_predictor(
    bundle_or_name: str | Path,
    *,
    index: IndexArg = None,
    cache: str | Path | None = None,
    models: str | Path | None = None,
    offline: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> Predictor:
    """A predictor for a bundle folder, a bundle ``.zip`` or an installed/installable ``NAME[@VERSION]``.

    The bundle is verified (every sha256) before its weights are loaded; a name that is not
    installed yet is installed first (see :func:`voxseg.bundle.install`). The plan, configuration,
    folds and postprocessing come from ``bundle.json``; ``options`` go to the predictor
    (``tta``, ``overlap``, ``precision``, ``device``, ...).

    >>> predictor = load_predictor("mouse-lung-nodules")        # doctest: +SKIP
    >>> result = predictor.predict(volume)                        # doctest: +SKIP
    """
    from voxseg.inference.predictor import Predictor

    bundle = resolve_bundle(bundle_or_name, index=index, cache=cache, models=models, offline=offline, progress=progress)
    m = bundle.manifest
    return Predictor.from_weights(
        m.plan, bundle.weight_files(), configuration=m.configuration, postprocessing=m.postprocessing, **options
    )
