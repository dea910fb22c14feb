"""Cohort inference: local batch engine vs Ray with 1 and 2 workers on this machine.

One command, prints a table::

    .venv/bin/python benchmarks/distributed.py [--cases 12] [--size 64]

A random-weight MONAI UNet (registered network, channels 8-16-32, patch 32³, no TTA, fp32) predicts
``--cases`` mouse-lung CT phantoms of ``--size``³ voxels with the local engine (2, then 1 torch threads) and
with Ray (1 worker x 2 threads, 2 workers x 1 thread). A Ray run costs a fixed start (actors import
torch and load the model), then one case finishes every ``s/case`` seconds; both come from the
driver's progress calls. The engine's per-case overhead is measured within each run: the steady
interval (x workers) against the time spent inside the per-case function, as the worker's manifest
entry records it, so load from other jobs affects both sides alike.
The local Ray instance (127.0.0.1, 2 CPUs) is started once; its start-up time is printed apart.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from voxseg.dataset.phantoms import generate_case
from voxseg.distributed.ray_engine import predict_folder_ray, ray_session
from voxseg.inference.batch import predict_folder
from voxseg.io import write_image, write_json_atomic
from voxseg.models.resolve import resolve_model
from voxseg.nets import NetworkSpec, build_network
from voxseg.planning import ConfigurationPlan, Normalization, Plan
from voxseg.training.checkpoint import TrainState, save_checkpoint
from voxseg.workdir.layout import WorkDir

OPTIONS = {"tta": False, "precision": "fp32"}


def make_model(root: Path, spacing) -> Path:
    net = NetworkSpec(
        "unet",
        {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [8, 16, 32], "strides": [2, 2]},
    )
    conf = ConfigurationPlan("3d", tuple(spacing), (32, 32, 32), 2, net, mirror_axes=(0, 1, 2))
    plan = Plan(
        dataset_name="bench",
        channel_names={0: "CT"},
        labels={"background": 0, "tumor": 1},
        normalization=(Normalization("zscore"),),
        configurations={"3d": conf},
        default_configuration="3d",
    )
    wd = WorkDir(root)
    plan.save(wd.plan_path)
    torch.manual_seed(0)
    model = build_network(net)
    save_checkpoint(wd.checkpoint_dir("3d", 0), model, torch.optim.SGD(model.parameters(), lr=0.1), TrainState(1, 1))
    write_json_atomic(wd.run_dir("3d", 0) / "run.json", {"schema_version": 1, "status": "finished"})
    return root


def make_cases(folder: Path, n: int, size: int):
    folder.mkdir(parents=True)
    spacing = None
    for k in range(n):
        image = generate_case("mouse-lung-ct", k, seed=11, size=size).images[0]
        write_image(image, folder / f"case{k:03d}_0000.nii.gz")
        spacing = image.spacing
    return spacing


def timed(run, out: Path) -> dict:
    """Run one engine over the cases; times from the driver's progress calls and the manifest."""
    stamps: list[float] = []
    t0 = time.perf_counter()
    report = run(lambda done, total: stamps.append(time.perf_counter() - t0))
    wall = time.perf_counter() - t0
    if not report.ok:
        raise SystemExit(f"failed cases: {report.failed}")
    cases = json.loads((out / "predictions.json").read_text())["cases"]
    in_case = statistics.median(e["seconds"]["total"] for e in cases.values())
    interval = (stamps[-1] - stamps[0]) / (len(stamps) - 1)  # steady state: one case finished every ...
    return {"wall": wall, "first": stamps[0], "interval": interval, "in_case": in_case}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    n = args.cases
    load = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="voxseg-bench-dist-"))
    rows = {}
    try:
        src = root / "in"
        work = make_model(root / "work", make_cases(src, n, args.size))
        predictor = resolve_model(work, **OPTIONS)
        for threads in (2, 1):
            torch.set_num_threads(threads)
            out = root / f"local{threads}"
            rows[("local", 1, threads)] = timed(lambda p, out=out: predict_folder(src, out, predictor, progress=p), out)
        t0 = time.perf_counter()
        with ray_session(num_cpus=2):
            start = time.perf_counter() - t0
            for w in (1, 2):
                out = root / f"ray{w}"
                rows[("ray", w, 2 // w)] = timed(
                    lambda p, out=out, w=w: predict_folder_ray(
                        src, out, work, workers=w, num_threads=2 // w, progress=p, **OPTIONS
                    ),
                    out,
                )
        load_end = os.getloadavg()[0]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{n} cases of {args.size}³ voxels, UNet 8-16-32, patch 32³, no TTA, fp32; 2 CPU cores")
    print(f"NOTE: the 2 cores are shared with other jobs (load average {load:.1f} at start, {load_end:.1f} at end)")
    print(f"local Ray instance start-up (once per session, not in the rows): {start:.1f} s\n")
    print(
        f"{'engine':<7}{'workers':>8}{'threads':>8}{'wall s':>8}{'1st case s':>11}{'s/case':>8}"
        f"{'cases/h':>9}{'cases/h*':>9}{'in-case s':>10}{'overhead':>9}"
    )
    base = 3600 / rows[("local", 1, 2)]["interval"]
    for (engine, w, threads), r in rows.items():
        overhead = r["interval"] * w / r["in_case"] - 1
        print(
            f"{engine:<7}{w:>8}{threads:>8}{r['wall']:>8.1f}{r['first']:>11.1f}{r['interval']:>8.2f}"
            f"{3600 / r['interval']:>9.0f}{3600 * n / r['wall']:>9.0f}{r['in_case']:>10.2f}{overhead:>+9.1%}"
        )
    print(
        "\ns/case: steady-state interval between finished cases; cases/h from it (cases/h*: start included);"
        "\nin-case s: median time inside the per-case function (read, predict, write) as the worker measured it;"
        "\noverhead: engine time per case beyond that (interval x workers / in-case - 1), within the same run."
    )
    ratio = ", ".join(f"{e} {w}x{t}: {3600 / r['interval'] / base:.2f}x" for (e, w, t), r in rows.items())
    print(f"steady throughput vs local with 2 threads: {ratio}")


if __name__ == "__main__":
    main()
