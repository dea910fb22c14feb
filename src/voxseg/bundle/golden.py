"""The golden test inside a bundle: a small real input with the full pipeline's expected output.

``golden/input.safetensors`` holds the input channels (``image``, ``(C, *shape)`` in their own dtype, and
``spacing``); ``golden/expected.safetensors`` the expected ``labels`` (after the bundle's postprocessing)
and ``probabilities`` (float16, ``(K, *shape)``, before postprocessing), as the torch fp32 pipeline
computed them when the bundle was made (preprocessing, sliding window, TTA and fold ensemble as
recorded in ``settings``). ``bundle.json``'s ``golden`` section records the settings, statistics of
the preprocessed input (so a changed normalization is named as such) and the tolerances of each
backend; the two files' sha256 are in its ``files``.

:func:`run_golden` runs the case with every backend available here (torch fp32, torch bf16 where
the CPU has native bf16, onnxruntime and OpenVINO when installed and the bundle has ONNX models)
and compares. No torch is imported unless a torch backend is asked for.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from voxseg.errors import BundleError
from voxseg.io.volume import Volume
from voxseg.registry import Registry

__all__ = [
    "GOLDEN_INPUT",
    "GOLDEN_EXPECTED",
    "DEFAULT_TOLERANCES",
    "BACKENDS",
    "BackendResult",
    "crop_case",
    "make_golden",
    "run_golden",
    "available_backends",
]

log = logging.getLogger(__name__)

GOLDEN_INPUT = "golden/input.safetensors"
GOLDEN_EXPECTED = "golden/expected.safetensors"
BACKENDS = ("torch-fp32", "torch-bf16", "onnxruntime", "openvino")
#: Largest golden input (voxels): keeps the test at a second or two and the files small.
MAX_GOLDEN_VOXELS = 48**3
#: Per backend: label voxels allowed to differ (per million) and the largest probability error.
#: fp32, onnxruntime and OpenVINO (fp32) compute the same float32 arithmetic (errors ~1e-6; the expected
#: probabilities are float16, 5e-4 of rounding; a label flips only at P = 0.5). bf16 autocast
#: measured on four built-in golden cases: up to 258 label voxels per million and P errors up to
#: 0.018; the bounds leave room for other CPUs' bf16 kernels.
DEFAULT_TOLERANCES: dict[str, dict[str, float]] = {
    "torch-fp32": {"labels_per_million": 200.0, "probability_max_error": 0.002},
    "onnxruntime": {"labels_per_million": 200.0, "probability_max_error": 0.002},
    "openvino": {"labels_per_million": 200.0, "probability_max_error": 0.002},
    "torch-bf16": {"labels_per_million": 10000.0, "probability_max_error": 0.15},
}
_STATS_ATOL = 1e-3


def crop_case(
    images: Sequence[Volume], label: np.ndarray | None, *, extent: Sequence[int], max_voxels: int = MAX_GOLDEN_VOXELS
) -> list[Volume]:
    """A crop of at most ``extent`` voxels per axis (and ``max_voxels`` in all) centred on the
    label's foreground (on the image centre without one); spacing kept, origin 0."""
    shape = images[0].shape
    size = [max(1, min(int(e), s)) for e, s in zip(extent, shape, strict=True)]
    while math.prod(size) > max_voxels:
        size = [max(8, math.ceil(s * 0.9)) if s > 8 else s for s in size]
    found = label is not None and np.any(label > 0)
    centre = np.argwhere(label > 0).mean(axis=0) if found else np.asarray(shape) / 2.0
    starts = [int(min(max(0, round(c - n / 2)), s - n)) for c, n, s in zip(centre, size, shape, strict=True)]
    sl = tuple(slice(a, a + n) for a, n in zip(starts, size, strict=True))
    return [Volume(np.ascontiguousarray(v.array[sl]), v.spacing) for v in images]


def _pack(**arrays: np.ndarray) -> bytes:
    """Arrays as safetensors bytes (no pickles; bundles refuse pickle-based files)."""
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in arrays.items()})


def _unpack(data: bytes, name: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    try:
        return dict(load(data))
    except Exception as exc:  # safetensors raises its own error types
        raise BundleError(f"{name}: unreadable ({' '.join(str(exc).split())[:200]})") from None


def _preprocessed_stats(manifest, images: Sequence[Volume]) -> dict[str, Any]:
    from voxseg.preprocessing import preprocess_case

    cfg = manifest.config
    case = preprocess_case(
        list(images),
        target_spacing=cfg.target_spacing,
        normalization=manifest.plan.normalization,
        anisotropy_threshold=manifest.plan.anisotropy_threshold,
    )
    data = case.data.astype(np.float64)
    axes = tuple(range(1, data.ndim))
    return {
        "shape": list(data.shape),
        "mean": [round(float(v), 6) for v in data.mean(axis=axes)],
        "std": [round(float(v), 6) for v in data.std(axis=axes)],
    }


def make_golden(
    manifest,
    predictor,
    images: Sequence[Volume],
    *,
    source: str,
    tolerances: Mapping[str, Any] | None = None,
    points: np.ndarray | None = None,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The ``golden`` section of ``bundle.json`` and its two files, from a torch fp32 predictor.

    ``predictor`` must be a :class:`voxseg.inference.predictor.Predictor` of the bundle's networks
    with ``precision="fp32"``, its TTA and overlap as the bundle is meant to run, and the bundle's
    postprocessing. ``source`` says where the input comes from (for people). Interactive models
    need the six ``points`` (voxel indices of the input), stored with it.
    """
    if getattr(predictor, "precision", "fp32") != "fp32":
        raise BundleError("the golden test's expected output must be made with fp32 arithmetic")
    labels, probs = _outputs(predictor, list(images), points)
    image = np.stack([np.asarray(v.array) for v in images])
    inputs = {"image": image, "spacing": np.asarray(images[0].spacing, dtype=np.float64)}
    if points is not None:
        inputs["points"] = np.asarray(points, dtype=np.int64)
    files = {
        GOLDEN_INPUT: _pack(**inputs),
        GOLDEN_EXPECTED: _pack(labels=labels, probabilities=probs.astype(np.float16)),
    }
    section = {
        "input": GOLDEN_INPUT,
        "expected": GOLDEN_EXPECTED,
        "source": source,
        "shape": list(image.shape[1:]),
        "made_with": "torch-fp32",
        "settings": {"tta": bool(predictor.tta), "overlap": float(predictor.overlap)},
        "preprocessed": _preprocessed_stats(manifest, images),
        "foreground_voxels": int(np.count_nonzero(labels)),
        "tolerances": {k: dict(v) for k, v in (tolerances or DEFAULT_TOLERANCES).items()},
    }
    return section, files


class PromptedGolden(Protocol):
    """How a prompted model kind makes and runs its golden case (registered by its plug-in)."""

    def crop(
        self, manifest: Any, images: Sequence[Volume], label: np.ndarray | None
    ) -> tuple[list[Volume], np.ndarray]:
        """A crop of a validation case around one object, and the prompt (points) in it."""

    def outputs(self, predictor: Any, images: list[Volume], points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels, probabilities ``(K, *shape)``) of the prompted prediction."""


#: Prompted model kinds by ``bundle.json`` task (``interactive``: :mod:`voxseg.interactive.plugin`).
PROMPTED: Registry[PromptedGolden] = Registry("prompted model kind", plugins="voxseg.prompted")


def _outputs(predictor, images: list[Volume], points: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of the full pipeline; for interactive models, of the six points."""
    if points is None:
        result = predictor.predict(images, probabilities=True)
        return np.asarray(result.labels.array), np.asarray(result.probabilities)
    return PROMPTED.get("interactive").outputs(predictor, images, np.asarray(points, dtype=np.int64))


@dataclass
class BackendResult:
    """One backend's run of the golden case."""

    backend: str
    ok: bool
    seconds: float = 0.0
    labels_per_million: float | None = None
    probability_max_error: float | None = None
    dice: float | None = None
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}

    def line(self) -> str:
        if self.skipped:
            return f"{self.backend}: skipped ({self.skipped})"
        figures = (
            f"{self.labels_per_million:.0f} label voxels per million differ, probability max error "
            f"{self.probability_max_error:.2e}, Dice {self.dice:.4f}, {self.seconds:.1f} s"
            if self.labels_per_million is not None
            else ""
        )
        verdict = "ok" if self.ok else "FAILED: " + "; ".join(self.problems)
        return f"{self.backend}: {verdict}" + (f" ({figures})" if figures else "")


def available_backends(bundle) -> dict[str, str | None]:
    """Backend -> None when it can run here, else why not."""
    out: dict[str, str | None] = {}
    try:
        import torch  # noqa: F401

        from voxseg.inference.runtime import cpu_supports_bf16

        out["torch-fp32"] = None
        out["torch-bf16"] = None if cpu_supports_bf16() else "this CPU has no native bf16"
    except ImportError:
        out["torch-fp32"] = out["torch-bf16"] = "torch is not installed"
    from voxseg.inference.runners import available_runners

    m = bundle.manifest
    for name, why in available_runners().items():
        if not all(m.onnx_file(f) in m.files for f in m.folds):
            out[name] = "the bundle has no ONNX models"
        else:
            out[name] = why
    return out


def _predictor(bundle, backend: str, settings: Mapping[str, Any]):
    m = bundle.manifest
    options = {"tta": bool(settings.get("tta", True)), "overlap": float(settings.get("overlap", 0.5))}
    if backend in ("onnxruntime", "openvino"):
        from voxseg.bundle.onnx_backend import OnnxPredictor

        return OnnxPredictor.from_bundle(bundle, backend=backend, **options)
    from voxseg.inference.predictor import Predictor

    networks = [bundle.network(f) for f in m.folds]
    precision = "bf16" if backend == "torch-bf16" else "fp32"
    return Predictor(
        networks,
        m.plan,
        configuration=m.configuration,
        postprocessing=m.postprocessing,
        precision=precision,
        **options,
    )


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def _compare(result: BackendResult, got_labels, got_probs, expected: Mapping[str, np.ndarray], tol) -> None:
    labels, probs = expected["labels"], expected["probabilities"].astype(np.float32)
    if got_labels.shape != labels.shape or got_probs.shape != probs.shape:
        result.problems.append(
            f"output shape {list(got_probs.shape)} differs from the expected {list(probs.shape)} (label map changed?)"
        )
        return
    result.labels_per_million = float(np.count_nonzero(got_labels != labels)) / labels.size * 1e6
    result.probability_max_error = float(np.abs(got_probs.astype(np.float32) - probs).max(initial=0.0))
    result.dice = _dice(got_labels, labels)
    if result.probability_max_error > float(tol["probability_max_error"]):
        result.problems.append(
            f"probabilities differ by up to {result.probability_max_error:.3g} "
            f"(tolerance {float(tol['probability_max_error']):.3g}): the network or its weights changed "
            "(or the recorded probabilities)"
        )
    if result.labels_per_million > float(tol["labels_per_million"]):
        stage = (
            ""
            if result.problems
            else " with matching probabilities: the postprocessing, threshold or label values changed"
        )
        result.problems.append(
            f"{result.labels_per_million:.0f} label voxels per million differ "
            f"(tolerance {float(tol['labels_per_million']):.0f}){stage}"
        )


def _check_preprocessing(bundle, images: Sequence[Volume], section: Mapping[str, Any]) -> str | None:
    recorded = section.get("preprocessed")
    if not isinstance(recorded, Mapping):
        return None
    now = _preprocessed_stats(bundle.manifest, images)
    if list(now["shape"]) != list(recorded.get("shape", [])):
        return f"the preprocessed input has shape {now['shape']}, expected {recorded.get('shape')} (spacing changed?)"
    for key in ("mean", "std"):
        a, b = np.asarray(now[key]), np.asarray(recorded.get(key, []), dtype=float)
        if a.shape != b.shape or not np.allclose(a, b, atol=_STATS_ATOL, rtol=_STATS_ATOL):
            return (
                f"the preprocessed input's per-channel {key} is {now[key]}, expected {list(b)}: "
                "the normalization (or the preprocessing code) changed"
            )
    return None


def read_golden(bundle) -> tuple[Mapping[str, Any], list[Volume], dict[str, np.ndarray]]:
    """The ``golden`` section, the input channels and the expected arrays of a bundle (with the
    input's ``points`` for interactive models)."""
    m = bundle.manifest
    section = m.golden
    if section is None:
        raise BundleError(
            f"{bundle.source}: the bundle has no golden test (made by an older voxseg); "
            "re-export it with `voxseg export`"
        )
    data = _unpack(bundle.read(section["input"]), section["input"])
    expected = _unpack(bundle.read(section["expected"]), section["expected"])
    if "image" not in data or {"labels", "probabilities"} - set(expected):
        raise BundleError(f"{bundle.source}: golden files lack image, labels or probabilities")
    spacing = tuple(float(s) for s in data.get("spacing", ()))
    images = [Volume(channel, spacing or None) for channel in data["image"]]
    if "points" in data:
        expected = {**expected, "points": data["points"]}
    return section, images, expected


def run_golden(bundle, *, backends: Sequence[str] | None = None) -> list[BackendResult]:
    """Run the bundle's golden case with ``backends`` (default: every one available here)."""
    section, images, expected = read_golden(bundle)
    available = available_backends(bundle)
    wanted = list(BACKENDS if backends is None else backends)
    unknown = [b for b in wanted if b not in BACKENDS]
    if unknown:
        raise BundleError(f"unknown backend {unknown[0]!r} (choose from {', '.join(BACKENDS)})")
    pre_problem = _check_preprocessing(bundle, images, section)
    results = []
    for backend in wanted:
        result = BackendResult(backend, ok=False)
        results.append(result)
        if available.get(backend) is not None:
            result.ok, result.skipped = True, available[backend]
            continue
        tol = section["tolerances"].get(backend) or DEFAULT_TOLERANCES[backend]
        t0 = time.perf_counter()
        try:
            labels, probs = _outputs(_predictor(bundle, backend, section["settings"]), images, expected.get("points"))
        except Exception as exc:  # a backend that fails to run is a finding, not a crash
            result.problems.append(f"does not run ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})")
            continue
        result.seconds = round(time.perf_counter() - t0, 3)
        if pre_problem:
            result.problems.append(pre_problem)
        _compare(result, labels, probs, expected, tol)
        result.ok = not result.problems
        log.info("golden test %s: %s", bundle.manifest.reference, result.line())
    return results
