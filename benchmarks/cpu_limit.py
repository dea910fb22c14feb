"""CPU inference at the machine's limit: how close each engine runs a real-sized network to what
this CPU's convolutions can sustain.

One command, prints two tables::

    python benchmarks/cpu_limit.py                 # nnU-Net-sized 3D U-Net, 96³ tile
    python benchmarks/cpu_limit.py --quick         # its first 4 stages, 32³ tile, one conv shape
    python benchmarks/cpu_limit.py --compile       # also torch.compile (inductor; minutes to compile)

1. **The limit**: a 3D convolution microbenchmark (3×3×3, 64→64 channels on 48³ and 128→128 on
   24³; ``--quick``: 32→32 on 32³) run by torch (fp32; bf16 autocast only where the CPU has native
   bf16), onnxruntime (fp32) and OpenVINO (fp32; bf16 where native; int8 after NNCF quantization).
   The limit per precision is the best sustained GFLOP/s any engine reached on any shape
   (1 multiply-add = 2 FLOP; int8 "FLOP" are int8 operations).
2. **The network**: nnU-Net v2's ``3d_fullres`` U-Net as it plans a 0.1 mm micro-CT dataset
   (PlainConvUNet, 6 stages, features 32-64-128-256-320-320, instance norm, leaky ReLU; built
   with ``dynamic_network_architectures`` the way ``voxseg import-nnunet`` does), random He-initialised
   weights (speed only), one 96³ tile, batch 1. FLOPs are counted from forward hooks on every
   convolution and transposed convolution. Per engine: median tile time of ``--repeats`` calls
   after a warm-up call, achieved GFLOP/s and the fraction of the measured limit for its precision.

The machine (CPU model, the flags that matter, usable cores) and the load average before and after
are printed: with other jobs on the CPU the fractions are lower bounds.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.nnunet.synthetic builds nnU-Net's network
from real.machine import describe, load

FEATURES = (32, 64, 128, 256, 320, 320)
CONV_SHAPES = {"full": ((64, 48), (128, 24)), "quick": ((32, 32),)}


def _median_time(fn, x, repeats: int) -> float:
    fn(x)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _onnx(module, x) -> bytes:
    import torch

    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(module, (torch.from_numpy(x),), buf, opset_version=17, dynamo=False, input_names=["x"])
    return buf.getvalue()


def _torch_runner(module, precision: str, *, compiled: bool = False):
    import torch

    net = torch.compile(module) if compiled else module

    def run(x):
        with torch.inference_mode():
            if precision == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return net(torch.from_numpy(x)).float().numpy()
            return net(torch.from_numpy(x)).numpy()

    return run


def _engines(module, x, threads: int, *, compile_torch: bool):
    """(engine, precision, runner) for every engine and precision usable here."""
    from voxseg.inference.runners import OpenVinoRunner, OrtRunner, available_runners, native_bf16

    bf16 = native_bf16()
    yield "torch eager", "fp32", _torch_runner(module, "fp32")
    if bf16:
        yield "torch eager", "bf16", _torch_runner(module, "bf16")
    if compile_torch:
        yield "torch.compile", "fp32", _torch_runner(module, "fp32", compiled=True)
    onnx = _onnx(module, x)
    have = available_runners()
    if have["onnxruntime"] is None:
        yield "onnxruntime", "fp32", OrtRunner(onnx, threads=threads)
    if have["openvino"] is None:
        yield "openvino", "fp32", OpenVinoRunner(onnx, threads=threads)
        if bf16:
            yield "openvino", "bf16", OpenVinoRunner(onnx, threads=threads, precision="bf16")
        yield "openvino", "int8", OpenVinoRunner(onnx, threads=threads, precision="int8", calibration=[x])


def conv_gflop(module, x) -> float:
    """FLOPs of one forward pass of ``module`` on ``x`` (convolutions only), in GFLOP."""
    import torch

    macs = []

    def hook(mod, inputs, output):
        k = int(np.prod(mod.kernel_size)) * mod.in_channels // mod.groups
        if isinstance(mod, torch.nn.modules.conv._ConvTransposeNd):
            macs.append(inputs[0].numel() * k * mod.out_channels // mod.in_channels)
        else:
            macs.append(output.numel() * k)

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    with torch.inference_mode():
        module(torch.from_numpy(x))
    for h in handles:
        h.remove()
    return 2 * sum(macs) / 1e9


def measure_limit(shapes, threads: int, repeats: int) -> tuple[list[dict], dict[str, float]]:
    import torch

    rows, limit = [], {}
    for channels, size in shapes:
        conv = torch.nn.Conv3d(channels, channels, 3, padding=1).eval()
        x = np.random.default_rng(0).normal(0, 1, (1, channels, size, size, size)).astype(np.float32)
        gflop = conv_gflop(conv, x)
        for engine, precision, run in _engines(conv, x, threads, compile_torch=False):
            seconds = _median_time(run, x, repeats)
            rate = gflop / seconds
            limit[precision] = max(limit.get(precision, 0.0), rate)
            rows.append({"conv": f"{channels}->{channels} @ {size}^3", "engine": engine, "precision": precision})
            rows[-1].update(seconds=round(seconds, 4), gflops=round(rate, 1))
    return rows, limit


def nnunet_network(patch: int, features=FEATURES):
    from tests.nnunet import synthetic

    plans = synthetic.plans_json(
        "3d_fullres", patch_size=(patch,) * 3, spacing=(0.1,) * 3, arch=synthetic.architecture(3, features=features)
    )
    net = synthetic.build_network(plans, "3d_fullres", 1, 2).eval()
    net.decoder.deep_supervision = False
    return net


def measure_network(patch: int, features, threads: int, repeats: int, limit: dict[str, float], compile_torch: bool):
    import torch

    torch.manual_seed(0)
    net = nnunet_network(patch, features)
    params = sum(p.numel() for p in net.parameters()) / 1e6
    x = np.random.default_rng(1).normal(0, 1, (1, 1, patch, patch, patch)).astype(np.float32)
    gflop = conv_gflop(net, x)
    rows = []
    for engine, precision, run in _engines(net, x, threads, compile_torch=compile_torch):
        t0 = time.perf_counter()
        seconds = _median_time(run, x, repeats)
        rate = gflop / seconds
        row = {"engine": engine, "precision": precision, "tile_s": round(seconds, 3), "gflops": round(rate, 1)}
        row["fraction_of_limit"] = round(rate / limit[precision], 3) if precision in limit else None
        row["setup_and_timing_s"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(f"  {engine} {precision}: {seconds:.3f} s per tile", file=sys.stderr, flush=True)
    out = {"patch": patch, "features": list(features), "params_millions": round(params, 1)}
    return {**out, "gflop_per_tile": round(gflop, 1), "rows": rows}


def _print(machine, conv_rows, limit, net) -> None:
    print(f"machine: {machine['cpu']}; threads {machine['threads']}; load {machine['load_before']} -> ", end="")
    print(machine["load_after"])
    print("\n3D conv microbenchmark (3x3x3, batch 1)")
    print(f"{'conv':<22}{'engine':<16}{'precision':<11}{'seconds':>9}{'GFLOP/s':>10}")
    for r in conv_rows:
        print(f"{r['conv']:<22}{r['engine']:<16}{r['precision']:<11}{r['seconds']:>9.4f}{r['gflops']:>10.1f}")
    print("limit (best sustained): " + ", ".join(f"{p} {v:.1f} GFLOP/s" for p, v in limit.items()))
    print(
        f"\nnnU-Net 3d_fullres U-Net (features {'-'.join(map(str, net['features']))}, "
        f"{net['params_millions']} M params), "
        f"tile {net['patch']}^3: {net['gflop_per_tile']} GFLOP per tile"
    )
    print(f"{'engine':<16}{'precision':<11}{'tile s':>9}{'GFLOP/s':>10}{'of limit':>10}")
    for r in net["rows"]:
        frac = "-" if r["fraction_of_limit"] is None else f"{100 * r['fraction_of_limit']:.0f}%"
        print(f"{r['engine']:<16}{r['precision']:<11}{r['tile_s']:>9.3f}{r['gflops']:>10.1f}{frac:>10}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="32³ tile, 4 stages, one conv shape (a smoke test)")
    parser.add_argument("--patch", type=int, default=None, help="tile edge (default 96, --quick 32)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per row (default 3, --quick 2)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile (inductor)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    import torch

    warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")  # we want one file
    torch.set_num_threads(args.threads)
    patch = args.patch or (32 if args.quick else 96)
    repeats = args.repeats or (2 if args.quick else 3)
    machine = {"cpu": describe(), "threads": args.threads, "load_before": load()}
    conv_rows, limit = measure_limit(CONV_SHAPES["quick" if args.quick else "full"], args.threads, repeats)
    features = FEATURES[:4] if args.quick else FEATURES  # 32³ cannot be halved five times
    net = measure_network(patch, features, args.threads, repeats, limit, args.compile)
    machine["load_after"] = load()
    result = {"machine": machine, "conv": conv_rows, "limit_gflops": limit, "network": net}
    _print(machine, conv_rows, limit, net)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
