"""Inference speed: voxseg's sliding window and end-to-end ``Predictor.predict`` vs MONAI, same network.

One command, prints a table::

    python benchmarks/inference.py              # 128³ mouse-lung-ct phantom, 64³ patches (~3-6 min on 2 cores)
    python benchmarks/inference.py --quick      # 96³ volume, 2 repeats skipped for TTA rows

A MONAI UNet (channels 16-128, strides 2, 1 residual unit; random weights, eval mode) runs over one
3D mouse-lung-ct phantom at overlap 0.5 with Gaussian blending, batch 1, in one process after
``configure_allocator()`` and ``configure_threads()`` (what ``voxseg predict`` does at start-up):

- MONAI ``sliding_window_inference`` (network only; the baseline, fp32 and bf16 autocast);
- voxseg ``sliding_window`` (network only);
- ``Predictor.predict`` end to end (preprocessing, sliding window, restore to the input grid,
  labels), without and with mirror TTA (8 passes), fp32 and bf16.

Each row is the best of ``--repeats`` runs (TTA rows: one run); ratios are against MONAI fp32 in the
same run. Other jobs may share the CPU: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _network(seed: int = 0):
    import torch
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    return UNet(3, 1, 2, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=1).eval()


def _plan(patch: int, spacing):
    from voxseg.nets import NetworkSpec
    from voxseg.planning import ConfigurationPlan, Normalization, Plan

    kwargs = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [16, 32, 64, 128]}
    kwargs.update(strides=[2, 2, 2], num_res_units=1)
    cfg = ConfigurationPlan("3d", spacing, (patch,) * 3, 1, NetworkSpec("unet", kwargs), mirror_axes=(0, 1, 2))
    return Plan("bench", {0: "CT"}, {"background": 0, "tumor": 1}, (Normalization("zscore"),), {"3d": cfg}, "3d")


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run(args: argparse.Namespace) -> list[tuple[str, str, str, float]]:
    import torch
    from monai.inferers import sliding_window_inference

    from voxseg.dataset.phantoms import generate_case
    from voxseg.inference import AutocastPredictor, Predictor, sliding_window
    from voxseg.inference.runtime import configure_allocator, configure_threads

    configure_allocator()
    args.threads_used = configure_threads(args.threads)
    volume = generate_case("mouse-lung-ct", 0, size=args.size).images[0]
    net = _network()
    patch = (args.patch,) * 3
    image = volume.array.astype(np.float32)
    image = (image - image.mean()) / image.std()
    x = torch.from_numpy(image)[None, None]
    plan = _plan(args.patch, volume.spacing)

    def monai(precision):
        def call():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                return sliding_window_inference(x, patch, 1, net, overlap=args.overlap, mode="gaussian")

        return call

    def voxseg_sw(precision):
        predictor = AutocastPredictor(net, precision=precision)
        return lambda: sliding_window(image[None], predictor, patch, overlap=args.overlap)

    def end_to_end(precision, tta):
        predictor = Predictor([net], plan, precision=precision, tta=tta, overlap=args.overlap)
        return lambda: predictor.predict(volume)

    for precision in ("fp32", "bf16"):  # warm-up: kernels, allocator
        monai(precision)()
    rows = []
    for precision in ("fp32", "bf16"):
        rows.append(("MONAI sliding_window_inference", precision, "off", _best(monai(precision), args.repeats)[0]))
        rows.append(("voxseg sliding_window", precision, "off", _best(voxseg_sw(precision), args.repeats)[0]))
        rows.append(
            ("voxseg Predictor.predict", precision, "off", _best(end_to_end(precision, False), args.repeats)[0])
        )
    if not args.skip_tta:
        for precision in ("fp32", "bf16"):
            rows.append(("voxseg Predictor.predict", precision, "8×", _best(end_to_end(precision, True), 1)[0]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-tta", action="store_true")
    parser.add_argument("--quick", action="store_true", help="96³ volume, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.size, args.repeats = 96, 1
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (other jobs share them)")
    rows = run(args)
    voxels = args.size**3
    ref = next(r[3] for r in rows if r[0].startswith("MONAI") and r[1] == "fp32")
    print(
        f"\n{args.size}³ mouse-lung-ct phantom, patch {args.patch}³, overlap {args.overlap}, Gaussian, batch 1, "
        f"MONAI UNet 16-128 (random weights), {args.threads_used} threads, best of {args.repeats} (TTA rows: 1 run)"
    )
    print(f"| {'method':<32} | {'precision':<9} | {'TTA':<3} | {'wall s':>7} | {'Mvox/s':>7} | {'vs MONAI fp32':>13} |")
    print("|" + "|".join("-" * w for w in (34, 11, 5, 9, 9, 15)) + "|")
    for name, precision, tta, wall in rows:
        print(
            f"| {name:<32} | {precision:<9} | {tta:<3} | {wall:7.2f} | {voxels / wall / 1e6:7.3f} | "
            f"{ref / wall:12.2f}× |"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
