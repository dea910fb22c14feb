"""Peak memory of ``Predictor.predict`` on a 512³ float32 volume, relative to the input's size.

One command, prints a table::

    python benchmarks/memory.py              # 512³ (512 MiB input), ~3-6 min on 2 shared cores
    python benchmarks/memory.py --size 256   # quicker

The volume is a mouse-lung-ct phantom generated at ``size/4`` and scaled up 4× per axis
(``np.repeat``), float32. The network is tiny (two 1×1×1 convolutions, 2 classes), so its
activations are negligible and the measurement is the inference engine's own buffers. Each
setting runs in a fresh process: the input is made resident first, the kernel's peak-RSS mark is
reset (``/proc/self/clear_refs``), then ``Predictor.predict`` runs (no TTA, overlap 0.5, patch
128³). Reported: the peak RSS growth during the call, the model's own peak on one tile, and the
growth beyond the model in multiples of the input's size (the issue's target: about 4× or less).

Settings: the default (probabilities accumulated in float16 above
``voxseg.inference.predictor.FLOAT16_ABOVE_BYTES``), float32 accumulation forced, the default with
``probabilities=True`` (float16 probabilities returned), a resampling plan (target spacing 1.25×
the input's, so the probabilities are restored onto the input grid class by class), and MONAI's
``sliding_window_inference`` on the same network (network only, no preprocessing) for reference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

SETTINGS = {
    "predict (default)": {},
    "predict, float32 accumulation": {"float32": True},
    "predict + probabilities": {"probabilities": True},
    "predict, resampled grid": {"resample": True},
    "MONAI sliding_window_inference": {"monai": True},
}


def _volume(size: int):
    from voxseg.dataset.phantoms import generate_case
    from voxseg.io import Volume

    small = generate_case("mouse-lung-ct", 0, size=max(16, size // 4)).images[0]
    arr = small.array.astype(np.float32)
    for axis in range(3):
        arr = np.repeat(arr, 4, axis=axis)
    return Volume(np.ascontiguousarray(arr[:size, :size, :size]), tuple(s / 4 for s in small.spacing))


class TinyNet:
    """Two 1×1×1 convolutions: a real torch network whose activations stay small."""

    def __new__(cls):
        import torch

        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv3d(1, 4, 1), torch.nn.ReLU(), torch.nn.Conv3d(4, 2, 1)).eval()


def _plan(spacing, patch: int):
    from voxseg.nets import NetworkSpec
    from voxseg.planning import ConfigurationPlan, Normalization, Plan

    spec = NetworkSpec("tiny", {"spatial_dims": 3, "in_channels": 1, "out_channels": 2})
    cfg = ConfigurationPlan("3d", spacing, (patch,) * 3, 1, spec)
    return Plan("bench", {0: "CT"}, {"background": 0, "tumor": 1}, (Normalization("zscore"),), {"3d": cfg}, "3d")


def worker(name: str, args: argparse.Namespace) -> dict:
    import torch
    from monai.inferers import sliding_window_inference

    import voxseg.inference.predictor as predictor_module
    from voxseg.inference import Predictor
    from voxseg.inference.runtime import configure_allocator, current_rss_bytes, peak_rss_bytes, reset_peak_rss

    setting = SETTINGS[name]
    configure_allocator()
    volume = _volume(args.size)
    net = TinyNet()
    patch = (args.patch,) * 3
    if setting.get("float32"):
        predictor_module.FLOAT16_ABOVE_BYTES = 1 << 62
    spacing = tuple(s * 1.25 for s in volume.spacing) if setting.get("resample") else volume.spacing
    predictor = Predictor([net], _plan(spacing, args.patch), tta=False, precision="fp32")
    tile = torch.from_numpy(np.ascontiguousarray(volume.array[: patch[0], : patch[1], : patch[2]]))[None, None]
    reset_peak_rss()
    base = current_rss_bytes()
    with torch.inference_mode():
        net(tile)
    model = peak_rss_bytes() - base
    if setting.get("monai"):
        x = torch.from_numpy(volume.array)[None, None]  # no copy

        def run():
            with torch.inference_mode():
                return sliding_window_inference(x, patch, 1, net, overlap=0.5, mode="gaussian")
    else:

        def run():
            return predictor.predict(volume, probabilities=bool(setting.get("probabilities")))

    reset_peak_rss()
    base = current_rss_bytes()
    t0 = time.perf_counter()
    out = run()
    wall = time.perf_counter() - t0
    peak = peak_rss_bytes()
    del out
    return {"name": name, "wall": wall, "input_bytes": volume.array.nbytes, "growth": peak - base, "model": model}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--only", choices=list(SETTINGS), action="append", help="run only these settings")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (other jobs share them)")
    results = []
    for name in args.only or list(SETTINGS):
        cmd = [sys.executable, os.path.abspath(__file__), "--size", str(args.size), "--patch", str(args.patch)]
        proc = subprocess.run([*cmd, "--worker", name], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"worker {name!r} failed:\n{proc.stderr[-3000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    n = args.size
    print(
        f"\n{n}³ float32 input ({results[0]['input_bytes'] / 2**20:.0f} MiB, resident before the call), tiny 2-class "
        f"network, patch {args.patch}³, overlap 0.5, no TTA, fresh process per row"
    )
    print(
        f"| {'setting':<32} | {'wall s':>7} | {'RSS growth MiB':>14} | {'model, 1 tile':>13} | {'beyond model':>12} |"
    )
    print("|" + "|".join("-" * w for w in (34, 9, 16, 15, 14)) + "|")
    for r in results:
        beyond = (r["growth"] - r["model"]) / r["input_bytes"]
        print(
            f"| {r['name']:<32} | {r['wall']:7.1f} | {r['growth'] / 2**20:14.0f} | {r['model'] / 2**20:13.0f} | "
            f"{beyond:11.2f}× |"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
