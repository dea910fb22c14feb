"""Less arithmetic at equal accuracy: background-tile skipping and OpenVINO int8, measured for agreement.

One command, prints a table::

    python benchmarks/cpu_less_arithmetic.py            # every built-in bundle, 2 held-out cases each
    python benchmarks/cpu_less_arithmetic.py --quick    # one bundle, one case

For every built-in semantic/instance bundle (its real ONNX models) and held-out phantom cases of its
task (seed 777: not the seeds the built-ins were trained or golden-tested on), plus the bundle's own
golden case (CT bundles: also phantom 0 with 128 voxels of air added at both ends of its first
axis, a longer field of view as in a real scan), each variant is compared with the reference,
onnxruntime fp32 at the bundle's golden overlap, without mirror TTA unless ``--tta``:

- ``skip``: ``OnnxPredictor(skip_background=True)``: tiles that
  :func:`voxseg.inference.skip.background_tile_test` finds to be background are not run;
- ``ov-fp32``: OpenVINO fp32 (the engine alone);
- ``ov-int8``: OpenVINO int8, NNCF post-training quantization calibrated on the bundle's golden input
  (:func:`voxseg.bundle.calibrate.golden_tiles`);
- ``ov+skip``: OpenVINO fp32 with background-tile skipping.

Columns: network calls run (fraction of the reference's), label voxels differing per million,
foreground Dice with the reference labels, the change in Dice against the phantom's ground truth,
and seconds per case. A variant may become a default only at >= 99.5% label agreement.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib.resources import files
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real.machine import describe, load

#: built-in bundle -> the phantom of its task
BUNDLES = {
    "mouse-lung-nodules-v2.zip": "mouse-lung-ct",
    "mouse-spinal-cord-gmwm-v1.zip": "mouse-spinal-cord",
    "brain-microbleeds-v1.zip": "brain-swi-cmb",
    "pet-mip-tumors-v1.zip": "pet-mip",
}
#: CT bundles: phantom 0 is also run with air (HU) added at both ends of its first axis
AIR_PAD, AIR_HU = ((128, 128), (0, 0), (0, 0)), -1024.0
VARIANTS = {
    "reference": {"backend": "onnxruntime"},
    "skip": {"backend": "onnxruntime", "skip_background": True},
    "ov-fp32": {"backend": "openvino"},
    "ov-int8": {"backend": "openvino", "precision": "int8"},
    "ov+skip": {"backend": "openvino", "skip_background": True},
}


class _Counted:
    """A patch runner that counts its calls."""

    def __init__(self, runner):
        self.runner, self.calls = runner, 0
        self.name, self.precision = runner.name, runner.precision

    def __call__(self, x):
        self.calls += 1
        return self.runner(x)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def _cases(bundle, phantom: str, n: int, air: float | None):
    from voxseg.bundle.golden import read_golden
    from voxseg.dataset.phantoms import generate_case
    from voxseg.io import Volume

    _, images, _ = read_golden(bundle)
    yield "golden", images, None
    for i in range(n):
        case = generate_case(phantom, i, seed=777)
        yield f"phantom {i}", case.images, case.label.array
    if air is not None and n:  # a longer field of view: the same case with air before and after it
        case = generate_case(phantom, 0, seed=777)
        padded = [Volume(np.pad(v.array, AIR_PAD, constant_values=air), v.spacing) for v in case.images]
        yield "0 in air", padded, np.pad(case.label.array, AIR_PAD)


def _predictors(bundle, threads: int, tta: bool):
    from voxseg.bundle.onnx_backend import OnnxPredictor

    settings = bundle.manifest.golden["settings"]
    common = {"tta": tta, "overlap": float(settings.get("overlap", 0.5))}
    out = {}
    for name, options in VARIANTS.items():
        p = OnnxPredictor.from_bundle(bundle, num_threads=threads, **common, **options)
        p.runners = [_Counted(r) for r in p.runners]
        out[name] = p
    return out


def measure_bundle(zip_name: str, phantom: str, n_cases: int, threads: int, tta: bool = False) -> list[dict]:
    from voxseg.bundle import open_bundle

    bundle = open_bundle(files("voxseg.bundle") / "models" / zip_name)
    predictors = _predictors(bundle, threads, tta)
    rows = []
    air = AIR_HU if all(n.scheme == "ct" for n in bundle.manifest.plan.normalization) else None
    for case_name, images, truth in _cases(bundle, phantom, n_cases, air):
        results = {}
        for name, p in predictors.items():
            before = sum(r.calls for r in p.runners)
            t0 = time.perf_counter()
            labels = p.predict(images).labels.array
            seconds = time.perf_counter() - t0
            results[name] = (labels, sum(r.calls for r in p.runners) - before, seconds)
        ref_labels, ref_calls, _ = results["reference"]
        for name, (labels, calls, seconds) in results.items():
            row = {"bundle": zip_name.removesuffix(".zip"), "case": case_name, "variant": name}
            row["calls"] = round(calls / max(ref_calls, 1), 3)
            row["labels_per_million"] = round(float(np.count_nonzero(labels != ref_labels)) / labels.size * 1e6, 1)
            row["dice_vs_reference"] = round(_dice(labels, ref_labels), 5)
            if truth is not None:
                row["dice_change_vs_truth"] = round(_dice(labels, truth) - _dice(ref_labels, truth), 5)
            row["seconds"] = round(seconds, 2)
            rows.append(row)
    return rows


def _print(machine: dict, rows: list[dict]) -> None:
    print(f"machine: {machine['cpu']}; threads {machine['threads']}; load {machine['load_before']} -> ", end="")
    print(machine["load_after"])
    head = f"{'bundle':<26}{'case':<11}{'variant':<10}{'calls':>7}{'lab/M':>9}{'Dice ref':>10}{'dDice GT':>10}{'s':>7}"
    print(head)
    for r in rows:
        gt = r.get("dice_change_vs_truth")
        print(
            f"{r['bundle']:<26}{r['case']:<11}{r['variant']:<10}{r['calls']:>7.2f}{r['labels_per_million']:>9.1f}"
            f"{r['dice_vs_reference']:>10.4f}{'-' if gt is None else f'{gt:+.4f}':>10}{r['seconds']:>7.2f}"
        )
    for variant in VARIANTS:
        mine = [r for r in rows if r["variant"] == variant]
        worst = max(r["labels_per_million"] for r in mine)
        print(f"{variant}: worst {worst:.0f} label voxels per million differ ({100 - worst / 1e4:.3f}% agreement)")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one bundle (mouse lung), golden case + one phantom")
    parser.add_argument("--cases", type=int, default=2, help="held-out phantom cases per bundle")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tta", action="store_true", help="mirror TTA on (default off: 8x the time)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    machine = {"cpu": describe(), "threads": args.threads, "load_before": load()}
    chosen = dict(list(BUNDLES.items())[:1]) if args.quick else BUNDLES
    rows = []
    for zip_name, phantom in chosen.items():
        rows += measure_bundle(zip_name, phantom, 1 if args.quick else args.cases, args.threads, args.tta)
    machine["load_after"] = load()
    _print(machine, rows)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
