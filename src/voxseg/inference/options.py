"""How to predict, as one frozen value: :class:`PredictOptions` (the model aside).

The CLI, the Python API, napari, the web app and the Ray engine build one ``PredictOptions`` at
their edge and hand it down whole (to :func:`voxseg.models.resolve_model`, the pre-flight check
and the batch engine) instead of passing keyword arguments through every layer. The ``--fast``
profile is one preset, :meth:`PredictOptions.fast`, so every front end means the same by it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from voxseg.errors import ConfigError

__all__ = ["PredictOptions", "FAST_OVERLAP", "BACKENDS"]

#: The ``--fast`` profile's sliding-window overlap (docs/inference.md: ~2.4x fewer tiles than 0.5).
FAST_OVERLAP = 0.25
#: Prediction backends: torch, or torch-free onnxruntime / OpenVINO (a bundle exported with ``--onnx``),
#: or ``auto``: the faster of those two here, from a short cached calibration (voxseg.bundle.calibrate).
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "openvino", "auto")
_PRECISIONS = ("auto", "bf16", "fp32", "int8")


@dataclass(frozen=True)
class PredictOptions:
    """Everything that shapes a prediction besides the model and the inputs.

    Attributes
    ----------
    tta
        Mirror test-time augmentation over the configuration's mirror axes.
    overlap
        Sliding-window overlap in ``[0, 1)``.
    precision
        ``auto`` (bf16 where the hardware has it natively), ``bf16`` or ``fp32`` (torch and openvino
        backends; onnxruntime computes fp32), ``int8`` (openvino only: NNCF quantization calibrated on
        the bundle's golden input).
    device
        ``cpu`` or ``cuda[:N]`` (torch backend).
    threshold
        Binary models: foreground where ``P(fg) > threshold`` (None: 0.5, the argmax).
    batch_size
        Tiles per network call, or ``"auto"``.
    num_threads
        Intra-op threads (None: as configured).
    folds
        The folds to ensemble (None: every fold of the model).
    max_folds
        Keep only the first N folds when ``folds`` is None (the ``--fast`` profile keeps 1).
    configuration
        The plan configuration (work folders; a bundle holds one).
    backend
        ``torch``, ``onnxruntime``, ``openvino`` or ``auto`` (see :data:`BACKENDS`).
    tta_confident
        Confident-tile mirror TTA: a tile whose un-flipped pass is confident everywhere skips its
        other mirrorings (:data:`voxseg.inference.tiling.CONFIDENT_PROBABILITY`). Off by default;
        agreement with full TTA in ``benchmarks/README.md``. Needs ``tta``.
    skip_background
        Tiles of pure background (CT air, constant outside the body) are not run
        (:mod:`voxseg.inference.skip`). Off by default; agreement in ``benchmarks/README.md``.
    """

    tta: bool = True
    overlap: float = 0.5
    precision: str = "auto"
    device: str = "cpu"
    threshold: float | None = None
    batch_size: int | str = "auto"
    num_threads: int | None = None
    folds: tuple[int, ...] | None = None
    max_folds: int | None = None
    configuration: str | None = None
    backend: str = "torch"
    tta_confident: bool = False
    skip_background: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.overlap, (int, float)) or isinstance(self.overlap, bool) or not 0 <= self.overlap < 1:
            raise ConfigError(f"overlap must be in [0, 1), got {self.overlap!r}")
        if self.precision not in _PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r} (choose from {', '.join(_PRECISIONS)})")
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend {self.backend!r}: choose {', '.join(BACKENDS)}")
        if self.precision == "int8" and self.backend != "openvino":
            raise ConfigError("precision int8 needs the openvino backend (--backend openvino)")
        if self.tta_confident and not self.tta:
            raise ConfigError("--tta-confident needs mirror TTA on (not --no-tta; with --fast add --tta)")
        if self.folds is not None:
            object.__setattr__(self, "folds", tuple(int(f) for f in self.folds))
        if self.max_folds is not None and (not isinstance(self.max_folds, int) or self.max_folds < 1):
            raise ConfigError(f"max_folds must be a positive integer, got {self.max_folds!r}")

    @classmethod
    def fast(cls, **changes: Any) -> PredictOptions:
        """The ``--fast`` profile: no TTA, overlap :data:`FAST_OVERLAP`, the first fold only (unless
        ``folds`` are given); ``changes`` override it (e.g. an explicit ``tta=True``)."""
        base = {"tta": False, "overlap": FAST_OVERLAP, "max_folds": 1}
        if changes.get("folds") is not None:
            base["max_folds"] = None
        return cls(**{**base, **{k: v for k, v in changes.items() if v is not None or k == "threshold"}})

    def replace(self, **changes: Any) -> PredictOptions:
        """A copy with ``changes`` (field names only; a misspelt one is a one-line error)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown prediction option(s) {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def chosen_folds(self, available: Sequence[int]) -> tuple[int, ...]:
        """The folds to use out of ``available`` (``folds``, else the first ``max_folds``, else all)."""
        if self.folds is not None:
            return self.folds
        return tuple(available)[: self.max_folds] if self.max_folds is not None else tuple(available)

    def predictor_kwargs(self) -> dict[str, Any]:
        """The torch :class:`~voxseg.inference.predictor.Predictor`'s keyword arguments."""
        return {
            "tta": self.tta,
            "tta_confident": self.tta_confident,
            "skip_background": self.skip_background,
            "overlap": self.overlap,
            "precision": self.precision,
            "device": self.device,
            "threshold": self.threshold,
            "batch_size": self.batch_size,
            "num_threads": self.num_threads,
        }

    def onnx_kwargs(self) -> dict[str, Any]:
        """The ONNX predictor's keyword arguments (backend and engine precision; no device there)."""
        precision = "fp32" if self.backend != "openvino" or self.precision == "auto" else self.precision
        if self.backend == "openvino" and self.precision == "auto":
            from voxseg.inference.runners import native_bf16

            precision = "bf16" if native_bf16() else "fp32"
        return {
            "backend": "onnxruntime" if self.backend == "torch" else self.backend,
            "precision": precision,
            "tta": self.tta,
            "tta_confident": self.tta_confident,
            "skip_background": self.skip_background,
            "overlap": self.overlap,
            "threshold": self.threshold,
            "batch_size": self.batch_size,
            "num_threads": self.num_threads,
        }
