"""The network's measured speed on this machine, for the pre-flight time estimate.

One call of the real patch runner (the configuration's network with random weights, wrapped as at
prediction: bf16 autocast where used) on ``batch_size`` zero tiles is timed once (after a warm-up
call), times the mirror passes of TTA, and the seconds per call are cached in
``CACHE/preflight-rates.json`` under a key made of the network
(spec, patch, channels), the run options (TTA, batch, precision, device), the machine (host, CPU
model) and the thread count. Never a constant: a new machine, network or thread count is timed
again. Importing this module does not import torch; measuring does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

from voxseg.io import write_json_atomic
from voxseg.io.safe_json import read_json
from voxseg.planning import ConfigurationPlan

__all__ = ["RATE_FILE", "call_seconds", "rate_key", "machine_id"]

log = logging.getLogger(__name__)

RATE_FILE = "preflight-rates.json"
#: Timed calls after one warm-up call (the fastest counts).
TIMED_CALLS = 1


def machine_id() -> str:
    """Host name, architecture and CPU model (Linux: /proc/cpuinfo)."""
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}|{platform.machine()}|{model}"


def rate_key(config: ConfigurationPlan, *, in_channels: int, options: dict[str, Any]) -> str:
    """The cache key: network sha + options + machine + threads."""
    network = {
        "network": config.network.to_json(),
        "patch": list(config.patch_size),
        "in_channels": in_channels,
        "mirror_axes": list(config.mirror_axes),
    }
    text = json.dumps({"model": network, "options": options, "machine": machine_id()}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def call_seconds(
    config: ConfigurationPlan,
    *,
    in_channels: int,
    batch_size: int,
    tta: bool,
    precision: str = "auto",
    device: str = "cpu",
    threads: int | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[float, bool]:
    """Seconds of one network call on ``batch_size`` tiles (one fold, TTA included), and whether
    the value came from the cache.

    ``cache_dir`` None: timed every time (nothing is stored).
    """
    options = {"batch": batch_size, "tta": tta, "precision": precision, "device": device, "threads": threads}
    key = rate_key(config, in_channels=in_channels, options=options)
    path = None if cache_dir is None else Path(cache_dir) / RATE_FILE
    rates = _load(path)
    if key in rates:
        return float(rates[key]["seconds"]), True
    seconds = _measure(config, in_channels, batch_size, tta, precision, device, threads)
    if path is not None:
        rates = _load(path)  # another process may have added its own meanwhile
        rates[key] = {"seconds": seconds, "measured": time.strftime("%Y-%m-%dT%H:%M:%S"), **options}
        try:
            write_json_atomic(path, rates)
        except OSError as exc:
            log.warning("%s: cannot cache the measured speed (%s)", path, exc)
    return seconds, False


def _load(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = read_json(path)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _measure(config, in_channels, batch_size, tta, precision, device, threads) -> float:
    import torch

    from voxseg.inference.predictor import AUTO_PRECISION_BF16, _device, _native_bf16
    from voxseg.inference.runtime import configure_threads
    from voxseg.inference.wrappers import AutocastPredictor, MirrorTTA
    from voxseg.nets import build_network

    if threads is not None:
        configure_threads(threads)
    dev = _device(device)  # an unknown or absent device: the Predictor's one-line ConfigError
    if precision == "auto":
        precision = "bf16" if AUTO_PRECISION_BF16 and _native_bf16(dev) else "fp32"
    torch.manual_seed(0)
    runner = AutocastPredictor(build_network(config.network), precision=precision, device=dev)
    passes = (
        len(MirrorTTA(runner, config.mirror_axes).flips(len(config.patch_size))) if tta and config.mirror_axes else 1
    )
    x = torch.zeros((batch_size, in_channels, *config.patch_size), dtype=torch.float32)
    runner(x[:1])  # warm-up: allocations, kernel selection
    best = float("inf")
    for _ in range(TIMED_CALLS):
        t0 = time.perf_counter()
        runner(x)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        best = min(best, time.perf_counter() - t0)
    log.info("measured %.4f s per call of %d tile(s) on %s (%s threads)", best, batch_size, device, threads)
    return best * passes
