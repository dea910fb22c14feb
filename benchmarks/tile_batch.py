"""Tiles per network call: voxseg's sliding window with 1, 2, 4, 8 and 16 tiles per call, and mirror TTA
with the flips in one call or one by one, on the default CPU plan's network.

One command, prints a table::

    python benchmarks/tile_batch.py               # 96x112x112 volume (the mouse-lung-ct phantom's size)
    python benchmarks/tile_batch.py --threads 1

The network is the default CPU plan of ``mouse-lung-ct`` (DynUNet 8-16-32-64, 40³ patches; random
weights, eval mode); overlap 0.5, Gaussian blending, fp32. Ratios are against one tile per call in the
same run; "agreement" is the fraction of voxels whose argmax equals the one-tile-per-call result
(batched convolutions round differently in the last bits). ``batch_size="auto"`` (the Predictor's
default) picks the row marked ``auto``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _network():
    import torch

    from voxseg.nets import build_network

    torch.manual_seed(0)
    kwargs = {
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 2,
        "kernel_size": [[3, 3, 3]] * 4,
        "strides": [[1, 1, 1]] + [[2, 2, 2]] * 3,
        "filters": [8, 16, 32, 64],
    }
    return build_network({"name": "dynunet", "kwargs": kwargs}).eval()


class _OneFlipPerCall:
    """MirrorTTA as it was: every flip in its own call (the baseline of the TTA rows)."""

    def __init__(self, net, flips):
        self.net, self.flips = net, flips

    def __call__(self, x):
        total = None
        for dims in self.flips:
            y = self.net(x.flip(dims) if dims else x)
            y = y.flip(dims) if dims else y
            total = y.clone() if total is None else total.add_(y)
        return total / len(self.flips)


def main() -> None:
    import torch

    from voxseg.inference import MirrorTTA, sliding_window
    from voxseg.inference.runtime import configure_allocator, configure_threads
    from voxseg.inference.tiling import auto_batch_size

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="96,112,112")
    parser.add_argument("--patch", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    configure_allocator()
    threads = configure_threads(args.threads)
    shape = tuple(int(s) for s in args.shape.split(","))
    patch = (args.patch,) * 3
    x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    net = _network()
    auto = auto_batch_size(patch)
    rows, ref = [], None

    def run(name, predictor, batch):
        nonlocal ref
        t0 = time.perf_counter()
        with torch.inference_mode():
            probs = sliding_window(x, predictor, patch, overlap=0.5, batch_size=batch)
        wall = time.perf_counter() - t0
        labels = probs.argmax(0)
        ref = labels if ref is None else ref
        rows.append((name, batch, wall, float((labels == ref).mean())))

    run("network", net, 1)  # warm-up, discarded
    rows.clear()
    ref = None
    for batch in (1, 2, 4, 8, 16):
        run("network" + (" (auto)" if batch == auto else ""), net, batch)
    tta = MirrorTTA(net)
    flips = tta.flips(3)
    ref = None
    run("TTA 8x, one flip per call", _OneFlipPerCall(net, flips), 1)
    run("TTA 8x, flips batched", tta, 1)
    run("TTA 8x, flips batched" + (" (auto)" if auto > 1 else ""), tta, auto)

    size = "x".join(map(str, shape))
    print(f"\n{size} volume, DynUNet 8-64, patch {args.patch}³, overlap 0.5, fp32, {threads} threads")
    print(f"| {'predictor':<30} | {'tiles/call':>10} | {'wall s':>7} | {'speed-up':>8} | {'agreement':>9} |")
    print("|" + "|".join("-" * w for w in (32, 12, 9, 10, 11)) + "|")
    base = {}
    for name, batch, wall, agree in rows:
        key = name.startswith("TTA")
        base.setdefault(key, wall)
        print(f"| {name:<30} | {batch:>10} | {wall:7.2f} | {base[key] / wall:7.2f}× | {100 * agree:8.4f}% |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
