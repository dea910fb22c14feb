"""Sliding-window inference speed and memory: voxseg vs MONAI's sliding_window_inference.

One command, prints two tables::

    python benchmarks/inference_sliding_window.py            # 160³ volume, 96³ patches, ~5 min on 2 cores
    python benchmarks/inference_sliding_window.py --quick    # 96³ volume, 64³ patches, 256³ memory test

Speed: a MONAI UNet (channels 16-128, strides 2, 2 residual units; random weights, eval) on a
``1×S×S×S`` float32 volume at overlap 0.5, Gaussian blending, batch 1: MONAI and voxseg in the same
process, interleaved, fp32 and bf16 autocast, once with glibc's default allocator and once after
``voxseg.inference.runtime.configure_allocator()`` (each allocator in its own fresh process; mallopt
is process-wide). Reports the best of ``--repeats`` wall times, voxels/second, the speed-up over
MONAI fp32 with the default allocator, page faults and peak RSS growth during the call.

Memory: a ``512³`` float32 volume through a tiny 2-class network (two 1×1×1 convolutions, so its
activations are small), each method in a fresh process: peak RSS growth during the call, the
model's own peak on one tile, and the growth beyond the model in multiples of the input's size
(the input itself is already resident before the call).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def _rusage() -> tuple[float, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_minflt


def _speed_worker(args: argparse.Namespace) -> dict:
    import torch
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import UNet

    from voxseg.inference import AutocastPredictor, sliding_window
    from voxseg.inference.runtime import (
        configure_allocator,
        configure_threads,
        current_rss_bytes,
        peak_rss_bytes,
        reset_peak_rss,
    )

    applied = configure_allocator() if args.allocator == "mallopt" else False
    threads = configure_threads(args.threads)
    torch.manual_seed(0)
    net = UNet(3, 1, 2, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2).eval()
    image = _phantom(args.size)
    patch = (args.patch,) * 3
    predictors = {p: AutocastPredictor(net, precision=p) for p in ("fp32", "bf16")}

    def run(method: str, precision: str):
        if method == "voxseg":
            return sliding_window(image, predictors[precision], patch, overlap=args.overlap, batch_size=1)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = sliding_window_inference(image[None], patch, 1, net, overlap=args.overlap, mode="gaussian")
        return out[0].float()

    for precision in ("fp32", "bf16"):  # warm up kernels and the allocator
        predictors[precision](image[None, :, : args.patch, : args.patch, : args.patch])
    rows: dict[str, dict] = {}
    outputs = {}
    for _ in range(args.repeats):
        for method in ("monai", "voxseg"):
            for precision in ("fp32", "bf16"):
                reset_peak_rss()
                base = current_rss_bytes()
                cpu0, faults0 = _rusage()
                start = time.perf_counter()
                outputs[method, precision] = run(method, precision)
                wall = time.perf_counter() - start
                cpu1, faults1 = _rusage()
                row = rows.setdefault(f"{method} {precision}", {"wall": [], "cpu": [], "faults": [], "peak": []})
                row["wall"].append(wall)
                row["cpu"].append(cpu1 - cpu0)
                row["faults"].append(faults1 - faults0)
                row["peak"].append(peak_rss_bytes() - base)
    agreement = _agreement(outputs)
    return {"allocator": args.allocator, "applied": applied, "threads": threads, "rows": rows, **agreement}


def _phantom(size: int):
    """A smooth bright sphere in noise, float32 (1, S, S, S): structured enough for non-trivial outputs."""
    import torch

    zz, yy, xx = np.ogrid[:size, :size, :size]
    c = size / 2
    sphere = ((zz - c) ** 2 + (yy - c * 0.8) ** 2 + (xx - c * 1.1) ** 2) < (size / 4) ** 2
    rng = np.random.default_rng(0)
    image = rng.standard_normal((size, size, size), dtype=np.float32) * 0.3 + sphere.astype(np.float32)
    return torch.from_numpy(image[None])


def _agreement(outputs: dict) -> dict:
    ref = outputs["voxseg", "fp32"]
    labels = ref.argmax(0)
    result = {}
    for key, name in ((("voxseg", "bf16"), "bf16"), (("monai", "fp32"), "monai_fp32")):
        other = outputs[key]
        result[f"{name}_label_agreement"] = float((other.argmax(0) == labels).float().mean())
        result[f"{name}_max_abs_diff"] = float((other - ref).abs().max())
        result[f"{name}_mean_abs_diff"] = float((other - ref).abs().mean())
    return result


def _memory_worker(args: argparse.Namespace) -> dict:
    import torch
    from monai.inferers import sliding_window_inference

    from voxseg.inference import sliding_window
    from voxseg.inference.runtime import configure_allocator, current_rss_bytes, peak_rss_bytes, reset_peak_rss

    if args.allocator == "mallopt":
        configure_allocator()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 1), torch.nn.ReLU(), torch.nn.Conv3d(4, 2, 1)).eval()
    n = args.memory_size
    image = np.random.default_rng(0).standard_normal((1, n, n, n), dtype=np.float32)
    patch = (args.memory_patch,) * 3
    small = image[:, : patch[0] + 8, : patch[1] + 8, : patch[2] + 8]
    method, out_dtype = args.method.split(":") if ":" in args.method else (args.method, "float32")
    if method == "voxseg":
        sliding_window(small, net, patch)  # warm up

        def run():
            return sliding_window(image, net, patch, overlap=0.5, out_dtype=np.dtype(out_dtype))
    else:
        x = torch.from_numpy(image)[None]  # no copy
        with torch.inference_mode():
            sliding_window_inference(torch.from_numpy(small.copy())[None], patch, 1, net, overlap=0.5, mode="gaussian")

        def run():
            with torch.inference_mode():
                return sliding_window_inference(x, patch, 1, net, overlap=0.5, mode="gaussian")

    reset_peak_rss()
    base = current_rss_bytes()
    with torch.inference_mode():
        net(torch.from_numpy(small[:, : patch[0], : patch[1], : patch[2]].copy())[None])  # one tile: the model's share
    model = peak_rss_bytes() - base
    reset_peak_rss()
    base = current_rss_bytes()
    start = time.perf_counter()
    out = run()
    wall = time.perf_counter() - start
    peak = peak_rss_bytes()
    return {
        "method": args.method,
        "wall": wall,
        "input_bytes": image.nbytes,
        "growth": peak - base,
        "model": model,
        "peak": peak,
        "out_shape": list(out.shape),
    }


def _spawn(argv: list[str]) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), *argv]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"worker {' '.join(argv)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _print_speed(results: list[dict], args: argparse.Namespace) -> None:
    voxels = args.size**3
    ref = min(results[0]["rows"]["monai fp32"]["wall"])
    print(
        f"\nSliding window, 1×{args.size}³ float32, patch {args.patch}³, overlap {args.overlap}, Gaussian, batch 1, "
        f"MONAI UNet 16-128 (threads: {results[0]['threads']}; best of {args.repeats})"
    )
    print(
        f"| {'allocator':<9} | {'method':<14} | {'wall s':>7} | {'Mvox/s':>7} | {'vs MONAI fp32':>13} | "
        f"{'CPU s':>6} | {'page faults':>11} | {'peak RSS +MB':>12} |"
    )
    print("|" + "|".join("-" * w for w in (11, 16, 9, 9, 15, 8, 13, 14)) + "|")
    for res in results:
        for name, row in res["rows"].items():
            best = min(row["wall"])
            print(
                f"| {res['allocator']:<9} | {name:<14} | {best:7.2f} | {voxels / best / 1e6:7.3f} | "
                f"{ref / best:12.2f}× | {min(row['cpu']):6.1f} | {min(row['faults']):11,d} | "
                f"{max(row['peak']) / 2**20:12.0f} |"
            )
    for res in results:
        print(
            f"{res['allocator']}: bf16 vs fp32 (voxseg): labels agree on {100 * res['bf16_label_agreement']:.2f}% "
            f"of voxels, max |Δlogit| {res['bf16_max_abs_diff']:.3f}, mean {res['bf16_mean_abs_diff']:.4f}; "
            f"voxseg vs MONAI fp32: labels agree {100 * res['monai_fp32_label_agreement']:.2f}%, "
            f"max |Δ| {res['monai_fp32_max_abs_diff']:.3g}, mean {res['monai_fp32_mean_abs_diff']:.3g}"
        )


def _print_memory(results: list[dict], args: argparse.Namespace) -> None:
    n = args.memory_size
    print(
        f"\nMemory, 1×{n}³ float32 ({results[0]['input_bytes'] / 2**20:.0f} MiB), tiny 2-class net (1×1×1 convs), "
        f"patch {args.memory_patch}³, overlap 0.5 (fresh process each)"
    )
    print(
        f"| {'method':<16} | {'wall s':>7} | {'RSS growth MiB':>14} | {'model, 1 tile':>13} | "
        f"{'beyond model, × input':>21} | {'peak RSS MiB':>12} |"
    )
    print("|" + "|".join("-" * w for w in (18, 9, 16, 15, 23, 14)) + "|")
    for res in results:
        beyond = (res["growth"] - res["model"]) / res["input_bytes"]
        print(
            f"| {res['method']:<16} | {res['wall']:7.1f} | {res['growth'] / 2**20:14.0f} | "
            f"{res['model'] / 2**20:13.0f} | {beyond:21.2f} | {res['peak'] / 2**20:12.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: configure_threads())")
    parser.add_argument("--memory-size", type=int, default=512)
    parser.add_argument("--memory-patch", type=int, default=128)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--quick", action="store_true", help="96³ volume, 64³ patches, 256³ memory test")
    parser.add_argument("--worker", choices=["speed", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--allocator", default="default", choices=["default", "mallopt"], help=argparse.SUPPRESS)
    parser.add_argument("--method", default="voxseg", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.size, args.patch, args.memory_size, args.memory_patch = 96, 64, 256, 96
    if args.worker:
        print(json.dumps((_speed_worker if args.worker == "speed" else _memory_worker)(args)))
        return
    common = [
        "--size",
        str(args.size),
        "--patch",
        str(args.patch),
        "--overlap",
        str(args.overlap),
        "--repeats",
        str(args.repeats),
        "--memory-size",
        str(args.memory_size),
        "--memory-patch",
        str(args.memory_patch),
    ] + (["--threads", str(args.threads)] if args.threads else [])
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if not args.skip_speed:
        speed = [_spawn([*common, "--worker", "speed", "--allocator", a]) for a in ("default", "mallopt")]
        _print_speed(speed, args)
    if not args.skip_memory:
        methods = [("monai", "default"), ("voxseg", "default"), ("voxseg:float16", "default"), ("voxseg", "mallopt")]
        memory = [_spawn([*common, "--worker", "memory", "--method", m, "--allocator", a]) for m, a in methods]
        for res, (_, allocator) in zip(memory, methods, strict=True):
            res["method"] += " +mallopt" if allocator == "mallopt" else ""
        _print_memory(memory, args)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
