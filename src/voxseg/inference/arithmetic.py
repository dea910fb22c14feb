"""Which predictor class computes a bundle's prediction: voxseg's arithmetic or a plug-in's.

``bundle.json`` names it in ``"arithmetic"`` (default ``"voxseg"``: :class:`voxseg.inference.predictor.Predictor`);
plug-ins register theirs (``nnunet-exact`` by :mod:`voxseg.nnunet.plugin`, for models imported
with ``voxseg import-nnunet``, which compute as ``nnUNetv2_predict`` does). Each entry is a
zero-argument callable returning the class, so registering imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable

from voxseg.registry import Registry

__all__ = ["ARITHMETIC", "DEFAULT_ARITHMETIC", "predictor_class"]

ARITHMETIC: Registry[Callable[[], type]] = Registry("prediction arithmetic", plugins="voxseg.arithmetic")
DEFAULT_ARITHMETIC = "voxseg"


def _voxseg() -> type:
    from voxseg.inference.predictor import Predictor

    return Predictor


ARITHMETIC.register(DEFAULT_ARITHMETIC, _voxseg)


def predictor_class(arithmetic: str) -> type:
    """The predictor class registered as ``arithmetic`` (a one-line error naming the known ones)."""
    return ARITHMETIC.get(arithmetic)()
