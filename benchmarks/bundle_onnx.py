"""ONNX backend vs torch backend: end-to-end prediction speed and agreement, same bundle.

One command, prints a table::

    python benchmarks/bundle_onnx.py             # 128³ mouse-lung-ct phantom, 64³ patches
    python benchmarks/bundle_onnx.py --quick     # 96³ volume, one repeat

A bundle is written with a MONAI UNet (channels 16-128, strides 2, 1 residual unit; random
weights) and its ONNX export; one mouse-lung-ct phantom is then predicted end to end
(preprocessing, sliding window at overlap 0.5, restore, labels, no TTA) by

- ``voxseg.models.load_predictor`` (torch, fp32: the baseline, and bf16 autocast);
- ``voxseg.bundle.onnx_backend.OnnxPredictor`` (onnxruntime CPU, fp32; no torch involved).

Each row is the best of ``--repeats`` runs; ratios are against torch fp32 in the same run, and
Dice is between each row's labels and the torch fp32 labels. Other jobs may share the CPU: the
load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _bundle(folder: Path, patch: int, spacing) -> Path:
    import torch
    from safetensors.torch import save_file

    from voxseg.bundle import BundleManifest
    from voxseg.bundle.export import write_bundle
    from voxseg.bundle.onnx_export import onnx_bytes
    from voxseg.nets import build_network
    from voxseg.planning import ConfigurationPlan, Normalization, Plan

    kwargs = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [16, 32, 64, 128]}
    kwargs.update(strides=[2, 2, 2], num_res_units=1)
    net_spec = {"name": "unet", "kwargs": kwargs}
    cfg = ConfigurationPlan("3d", spacing, (patch,) * 3, 1, net_spec, mirror_axes=(0, 1, 2))
    plan = Plan("bench", {0: "CT"}, {"background": 0, "tumor": 1}, (Normalization("zscore"),), {"3d": cfg}, "3d")
    torch.manual_seed(0)
    weights = folder / "fold_0.safetensors"
    save_file(build_network(net_spec).state_dict(), str(weights))
    files = {"weights/fold_0.safetensors": weights}
    manifest = BundleManifest("bench", "v1", "semantic", plan, "3d", (0,), {"weights/fold_0.safetensors": "0" * 64})
    files["model_fold_0.onnx"] = onnx_bytes(manifest, weights)
    return write_bundle(manifest, files, folder / "bench")


def _best(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


def run(args: argparse.Namespace) -> list[tuple[str, str, float, float]]:
    from voxseg.bundle.onnx_backend import OnnxPredictor
    from voxseg.dataset.phantoms import generate_case
    from voxseg.inference.runtime import configure_allocator, configure_threads
    from voxseg.models import load_predictor

    configure_allocator()
    args.threads_used = configure_threads(args.threads)
    volume = generate_case("mouse-lung-ct", 0, size=args.size).images[0]
    with tempfile.TemporaryDirectory() as tmp:
        bundle = _bundle(Path(tmp), args.patch, volume.spacing)
        opts = dict(tta=False, overlap=args.overlap, cache=tmp, models=tmp)
        torch32 = load_predictor(bundle, precision="fp32", **opts)
        torch16 = load_predictor(bundle, precision="bf16", **opts)
        onnx = OnnxPredictor.from_bundle(bundle, tta=False, overlap=args.overlap, num_threads=args.threads_used)
        torch32.predict(volume)  # warm-up
        onnx.predict(volume)
        rows, ref = [], None
        for name, precision, predictor in (
            ("torch Predictor (load_predictor)", "fp32", torch32),
            ("torch Predictor (load_predictor)", "bf16", torch16),
            ("onnxruntime OnnxPredictor", "fp32", onnx),
        ):
            wall, result = _best(lambda p=predictor: p.predict(volume), args.repeats)
            labels = np.asarray(result.labels.array) > 0
            ref = labels if ref is None else ref
            rows.append((name, precision, wall, _dice(labels, ref)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="96³ volume, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.size, args.repeats = 96, 1
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (other jobs share them)")
    rows = run(args)
    ref = rows[0][2]
    print(
        f"\n{args.size}³ mouse-lung-ct phantom, patch {args.patch}³, overlap {args.overlap}, no TTA, "
        f"MONAI UNet 16-128 (random weights), {args.threads_used} threads, best of {args.repeats}"
    )
    print(f"| {'backend':<34} | {'precision':<9} | {'wall s':>7} | {'vs torch fp32':>13} | {'Dice vs fp32':>12} |")
    print("|" + "|".join("-" * w for w in (36, 11, 9, 15, 14)) + "|")
    for name, precision, wall, dice in rows:
        print(f"| {name:<34} | {precision:<9} | {wall:7.2f} | {ref / wall:12.2f}× | {dice:12.4f} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
