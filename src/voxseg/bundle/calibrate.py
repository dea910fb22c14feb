"""``--backend auto``: time a few tiles per available engine for a model on this machine, once.

The choice is cached in ``CACHE/backend-calibration.json`` keyed by (model sha256, CPU model,
threads), so only the first prediction with a model on a machine pays for the calibration (a few
tiles per engine). Torch-free; :func:`golden_tiles` also gives OpenVINO's int8 quantization its
calibration data (the bundle's own golden input, preprocessed the way prediction does).
"""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.errors import BundleError, ConfigError, JSONFileError
from voxseg.inference.runners import available_runners, cpu_model, make_runner
from voxseg.io.volume import Volume

__all__ = ["choose_backend", "golden_tiles", "calibration_file", "CALIBRATION_FILE"]

log = logging.getLogger(__name__)
CALIBRATION_FILE = "backend-calibration.json"
#: Timed calls per engine after one warm-up call (the fastest counts).
REPEATS = 3


def calibration_file(cache: str | Path | None = None) -> Path:
    """Where the choices are cached (voxseg's cache folder, see :mod:`voxseg.settings`)."""
    from voxseg.settings import resolve_paths

    return resolve_paths(cache=cache).cache / CALIBRATION_FILE


def _read_table(path: Path) -> dict[str, Any]:
    from voxseg.io.safe_json import read_json

    try:
        table = read_json(path, fix="delete it; voxseg calibrates again")
    except (OSError, JSONFileError) as exc:
        if path.exists():
            log.warning("ignoring the backend calibration cache: %s", exc)
        return {}
    return table if isinstance(table, dict) else {}


def _probe_tile(bundle) -> np.ndarray:
    m = bundle.manifest
    cfg = m.plan.configuration(m.configuration)
    channels = len(m.plan.channel_names)
    rng = np.random.default_rng(0)
    return rng.normal(0, 1, (1, channels, *cfg.patch_size)).astype(np.float32)


def _time_runner(runner, x: np.ndarray, repeats: int) -> float:
    runner(x)  # warm-up: first-call allocations and kernel selection
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        runner(x)
        best = min(best, time.perf_counter() - t0)
    return best


def choose_backend(
    bundle, *, threads: int | None = None, cache: str | Path | None = None, repeats: int = REPEATS
) -> dict[str, Any]:
    """The fastest fp32 engine here for ``bundle``'s network: ``{"backend", "seconds_per_tile", ...,
    "cached"}``; computed once per (model sha256, CPU model, threads) and cached."""
    from voxseg.io.atomic import write_json_atomic

    m = bundle.manifest
    key = f"{bundle.sha256}|{cpu_model()}|{threads or 'default'}"
    path = calibration_file(cache)
    table = _read_table(path)
    usable = [name for name, why in available_runners().items() if why is None]
    if not usable:
        raise ConfigError("--backend auto: neither onnxruntime nor openvino is installed (pip install 'voxseg[onnx]')")
    hit = table.get(key)
    if isinstance(hit, dict) and hit.get("backend") in usable:
        return {**hit, "cached": True}
    x, onnx = _probe_tile(bundle), bundle.read(m.onnx_file(m.folds[0]))
    seconds = {name: round(_time_runner(make_runner(name, onnx, threads=threads), x, repeats), 5) for name in usable}
    best = min(seconds, key=seconds.__getitem__)
    entry = {
        "backend": best,
        "seconds_per_tile": seconds,
        "patch_size": list(x.shape[2:]),
        "cpu": cpu_model(),
        "threads": threads,
        "model_sha256": bundle.sha256,
    }
    table[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, table)
    except OSError as exc:  # a read-only cache costs a calibration per run, not the prediction
        log.warning("could not cache the backend calibration in %s: %s", path, exc)
    log.info("backend auto: %s (%s)", best, seconds)
    return {**entry, "cached": False}


def _golden_input(bundle) -> list[Volume]:
    """The golden case's channels (as :func:`voxseg.bundle.golden.read_golden`, which would import
    the predictors back: an import cycle)."""
    from safetensors.numpy import load

    section = bundle.manifest.golden
    if section is None:
        raise BundleError(f"{bundle.source}: no golden input to calibrate int8 on; re-export the bundle")
    data = dict(load(bundle.read(section["input"])))
    spacing = tuple(float(s) for s in data.get("spacing", ()))
    return [Volume(channel, spacing or None) for channel in data["image"]]


def golden_tiles(bundle, *, limit: int = 8) -> list[np.ndarray]:
    """Up to ``limit`` ``(1, C, *patch)`` float32 tiles of the bundle's golden input, preprocessed
    as for prediction (for int8 calibration)."""
    from voxseg.inference.tiling import fit_shape, overlap_slices, tile_grid
    from voxseg.preprocessing import preprocess_case

    m = bundle.manifest
    cfg, plan = m.plan.configuration(m.configuration), m.plan
    case = preprocess_case(
        _golden_input(bundle),
        target_spacing=cfg.target_spacing,
        normalization=plan.normalization,
        anisotropy_threshold=plan.anisotropy_threshold,
    )
    data = case.data
    if data.ndim - 1 != cfg.spatial_dims:  # a 2D configuration on 3D data: its middle slices
        data = data[:, data.shape[1] // 2]
    patch = tuple(cfg.patch_size)
    if cfg.fixed_shape is not None:
        data = fit_shape(data, cfg.fixed_shape)
    tiles = []
    spatial = data.shape[1:]
    for start in itertools.islice(itertools.product(*tile_grid(spatial, patch, 0.5)), limit):
        tile = np.zeros((1, data.shape[0], *patch), np.float32)
        img_sl, tile_sl = overlap_slices(start, patch, spatial)
        tile[(0, slice(None), *tile_sl)] = data[(slice(None), *img_sl)]
        tiles.append(tile)
    return tiles
