"""Seconds per training iteration of the default CPU plan, and of a few variants, on this machine.

One command, prints a table::

    python benchmarks/planning_cpu_speed.py                 # mouse-lung-ct phantom, default size, 24 cases
    python benchmarks/planning_cpu_speed.py --cases 6 --iterations 6

It writes the phantom, runs ``plan_experiment`` (3d configuration, CPU budget) into a temporary
work folder, then trains each variant for ``--iterations`` steps with ``voxseg.training.loop.train``
(real patches, augmentation, Dice+CE loss, SGD) and reports the median wall and CPU seconds per step
after ``--warmup`` steps (variants interleaved over ``--rounds``, after one warm-up run; the best
round is shown), the ratio to the default plan, and the load average while it ran (other
processes on the machine inflate wall times; CPU seconds / threads is the idle-machine estimate).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

VARIANTS: dict[str, dict] = {
    "default plan": {},
    "default plan + fp32": {"precision": "fp32"},
    "default plan + bf16": {"precision": "bf16"},
    "patch 48^3": {"overrides": ["3d.patch_size=48,48,48"]},
    "filters 16-128": {"overrides": ["network.filters=16,32,64,128"]},
    "NOTES ref: MONAI UNet 64^3": {  # the 0.9 s/it reference of NOTES.md (idle machine)
        "overrides": [
            "3d.patch_size=64,64,64",
            "network.name=unet",
            "network.channels=16,32,64,128",
            "network.strides=2,2,2",
            "network.num_res_units=2",
        ],
        "precision": "fp32",
    },
    "patch 64^3 16-128 fp32": {
        "overrides": ["3d.patch_size=64,64,64", "network.filters=16,32,64,128,128"],
        "precision": "fp32",
    },
}


def _time_steps(work: Path, plan, iterations: int, warmup: int, precision: str, run_dir: Path) -> dict:
    import torch

    from voxseg.experiment import WorkDir
    from voxseg.nets import build_network, count_parameters
    from voxseg.preprocessing import list_preprocessed
    from voxseg.training.config import TrainConfig
    from voxseg.training.loop import train

    conf = plan.configuration("3d")
    pre = WorkDir(work).preprocessed_dir("3d")
    prefixes = [str(pre / c) for c in list_preprocessed(pre)]
    torch.manual_seed(0)
    model = build_network(conf.network)
    stamps: list[tuple[float, float]] = [(time.perf_counter(), time.process_time())]

    def progress(_info) -> None:
        stamps.append((time.perf_counter(), time.process_time()))

    cfg = TrainConfig(
        epochs=1, iterations_per_epoch=iterations, batch_size=conf.batch_size, precision=precision, num_workers=0
    )
    load = os.getloadavg()[0]
    train(
        run_dir,
        model,
        prefixes,
        patch_size=conf.patch_size,
        config=cfg,
        ignore_label=plan.ignore_label,
        progress=progress,
    )
    wall = [b[0] - a[0] for a, b in itertools.pairwise(stamps)][warmup:]
    cpu = [b[1] - a[1] for a, b in itertools.pairwise(stamps)][warmup:]
    kw = conf.network.kwargs
    return {
        "patch": "x".join(map(str, conf.patch_size)),
        "batch": conf.batch_size,
        "filters": "-".join(map(str, kw.get("filters") or kw.get("channels"))),
        "params": count_parameters(model) / 1e6,
        "wall": statistics.median(wall),
        "cpu": statistics.median(cpu),
        "load": (load + os.getloadavg()[0]) / 2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="runs per variant, interleaved; the best is shown")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names from the table")
    args = parser.parse_args()

    import torch

    from voxseg.dataset.phantoms import make_phantom
    from voxseg.experiment.plan import plan_experiment
    from voxseg.planning import apply_overrides

    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_phantom("mouse-lung-ct", tmp / "data", cases=args.cases)
        t0 = time.perf_counter()
        plan = plan_experiment(data, tmp / "work", configurations=("3d",), folds=min(5, args.cases), num_workers=2)
        planning_seconds = time.perf_counter() - t0
        names = [n.strip() for n in args.variants.split(",")]
        best: dict[str, dict] = {}
        for k, name in enumerate([names[0]] + names * args.rounds):  # the first run only warms up
            spec = VARIANTS[name]
            variant = apply_overrides(plan, spec.get("overrides", []))
            precision = spec.get("precision", variant.training.get("precision", "fp32"))
            result = _time_steps(tmp / "work", variant, args.iterations, args.warmup, precision, tmp / f"run{k}")
            result["precision"] = precision
            print(f"... {name}: {result['wall']:.2f} s/it, {result['cpu']:.2f} cpu-s/it", flush=True)
            if k > 0 and (name not in best or result["wall"] < best[name]["wall"]):
                best[name] = result
        rows = [(name, best[name]) for name in names]
    base = rows[0][1]["wall"]
    print(
        f"\nmouse-lung-ct, {args.cases} cases: plan_experiment (verify, fingerprint, plan, preprocess) "
        f"{planning_seconds:.1f} s; torch threads {threads}; best of {args.rounds} interleaved runs of the median "
        f"of {args.iterations - args.warmup} steps"
    )
    header = (
        f"{'variant':<28} {'prec':>4} {'patch':>9} {'batch':>5} {'filters':>16} {'params':>8} {'s/it':>6} "
        f"{'cpu-s/it':>8} {'vs default':>10} {'load':>5}"
    )
    print(header)
    print("-" * len(header))
    for name, r in rows:
        print(
            f"{name:<28} {r['precision']:>4} {r['patch']:>9} {r['batch']:>5} {r['filters']:>16} {r['params']:>7.2f}M "
            f"{r['wall']:>6.2f} {r['cpu']:>8.2f} {r['wall'] / base:>9.2f}x {r['load']:>5.1f}"
        )


if __name__ == "__main__":
    main()
