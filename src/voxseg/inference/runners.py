"""Patch runners: the one part of torch-free prediction that differs between engines.

A *patch runner* is a callable taking a float32 batch of tiles ``(B, C, *patch)`` and returning the
network's raw logits ``(B, K, *patch)`` as float32. The sliding window, mirror TTA, the fold
ensemble and everything around them are shared (:class:`voxseg.bundle.onnx_backend.OnnxPredictor`).

Runners here start from a bundle's ONNX bytes:

- :class:`OrtRunner`: onnxruntime's CPU execution provider.
- :class:`OpenVinoRunner`: OpenVINO's CPU plugin, ``fp32``, ``bf16`` (only where the CPU computes
  bf16 natively: read from its flags, never assumed) or ``int8`` (post-training quantization with
  NNCF, calibrated on tiles the caller gives, e.g. a bundle's golden input).

:data:`RUNNERS` maps backend names to runner classes; :func:`available_runners` says which can run
here. Nothing in this module imports torch; each engine is imported when its runner is built.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from voxseg.errors import ConfigError

__all__ = [
    "PatchRunner",
    "OrtRunner",
    "OpenVinoRunner",
    "RUNNERS",
    "PRECISIONS",
    "available_runners",
    "cpu_flags",
    "cpu_model",
    "native_bf16",
    "make_runner",
]

log = logging.getLogger(__name__)

#: Precisions per backend.
PRECISIONS: dict[str, tuple[str, ...]] = {"onnxruntime": ("fp32",), "openvino": ("fp32", "bf16", "int8")}


class PatchRunner(Protocol):
    """``runner(x)``: float32 tiles ``(B, C, *patch)`` in, float32 logits ``(B, K, *patch)`` out."""

    name: str
    precision: str

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, frozenset()
    named = False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not named:
            model, named = value.strip(), True
        elif key in ("flags", "Features"):
            flags.update(value.split())
    return model, frozenset(flags)


def cpu_model() -> str:
    """This CPU's model name (``/proc/cpuinfo``), e.g. ``"AMD EPYC"``."""
    return _cpuinfo()[0]


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (``/proc/cpuinfo``; empty where it cannot be read)."""
    return _cpuinfo()[1]


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (x86 AVX512-BF16 / AMX-BF16, Arm BF16)."""
    flags = cpu_flags()
    return bool(flags & {"avx512_bf16", "amx_bf16"}) or (platform.machine() in ("aarch64", "arm64") and "bf16" in flags)


class OrtRunner:
    """One ONNX network run by onnxruntime on the CPU.

    Parameters
    ----------
    onnx_bytes
        The serialized ONNX model (e.g. a bundle's ``model_fold_K.onnx``).
    threads
        Intra-op threads (``None``: onnxruntime's default, one per core).
    """

    name = "onnxruntime"
    precision = "fp32"

    def __init__(self, onnx_bytes: bytes, *, threads: int | None = None, precision: str = "fp32"):
        import onnxruntime as ort

        if precision != "fp32":
            raise ConfigError(f"the onnxruntime runner computes fp32 only, not {precision!r}; use --backend openvino")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.threads = threads

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0].astype(np.float32, copy=False)


def _ov_calibration(calibration: Sequence[np.ndarray] | None) -> list[np.ndarray]:
    if not calibration:
        raise ConfigError(
            "OpenVINO int8 needs calibration tiles (e.g. the bundle's golden input); "
            "give calibration=[...] or choose precision fp32"
        )
    return [np.ascontiguousarray(t, dtype=np.float32) for t in calibration]


class OpenVinoRunner:
    """One ONNX network compiled by OpenVINO for the CPU.

    Parameters
    ----------
    onnx_bytes
        The serialized ONNX model.
    threads
        ``INFERENCE_NUM_THREADS`` (``None``: OpenVINO's default).
    precision
        ``fp32`` (the default, bit-for-bit the network's float32 arithmetic up to kernel order),
        ``bf16`` (only on a CPU with native bf16; OpenVINO's hint) or ``int8`` (NNCF post-training
        quantization calibrated on ``calibration``: a few ``(1, C, *patch)`` float32 tiles).
    """

    name = "openvino"

    def __init__(
        self,
        onnx_bytes: bytes,
        *,
        threads: int | None = None,
        precision: str = "fp32",
        calibration: Sequence[np.ndarray] | None = None,
    ):
        import openvino as ov

        if precision not in PRECISIONS["openvino"]:
            raise ConfigError(f"OpenVINO precision {precision!r}: choose fp32, bf16 or int8")
        if precision == "bf16" and not native_bf16():
            raise ConfigError("this CPU has no native bf16 (avx512_bf16 / amx_bf16); use precision fp32 or int8")
        core = ov.Core()
        model = core.read_model(onnx_bytes, b"")
        if precision == "int8":
            import nncf

            tiles = _ov_calibration(calibration)
            model = nncf.quantize(model, nncf.Dataset(tiles), subset_size=len(tiles))
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.precision, self.threads = precision, threads

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.array(out[self.compiled.output(0)], dtype=np.float32, copy=True)


RUNNERS: dict[str, Callable[..., PatchRunner]] = {"onnxruntime": OrtRunner, "openvino": OpenVinoRunner}
_MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
_EXTRAS = {"onnxruntime": "onnx", "openvino": "openvino"}


def available_runners() -> dict[str, str | None]:
    """Backend name -> ``None`` when its engine imports here, else why not."""
    import importlib.util

    out: dict[str, str | None] = {}
    for name, module in _MODULES.items():
        found = importlib.util.find_spec(module) is not None
        out[name] = None if found else f"{module} is not installed (pip install 'voxseg[{_EXTRAS[name]}]')"
    return out


def make_runner(backend: str, onnx_bytes: bytes, *, threads: int | None = None, **options: Any) -> PatchRunner:
    """Build the runner named ``backend`` (a key of :data:`RUNNERS`), explaining a missing engine."""
    if backend not in RUNNERS:
        raise ConfigError(f"unknown backend {backend!r}: choose from {', '.join(RUNNERS)}")
    why = available_runners()[backend]
    if why is not None:
        raise ConfigError(f"--backend {backend}: {why}")
    return RUNNERS[backend](onnx_bytes, threads=threads, **options)
