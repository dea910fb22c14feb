"""Confident-tile mirror TTA against full mirror TTA: time saved and label agreement.

One command, prints a table::

    python benchmarks/tta_confident.py            # every built-in bundle: golden case + held-out phantoms
    python benchmarks/tta_confident.py --quick    # one bundle, golden case + one phantom
    python benchmarks/tta_confident.py --torch    # also the torch backend (MirrorTTA) on each bundle

For every built-in semantic/instance bundle, its golden case (``voxseg.bundle.golden.read_golden``)
and the held-out phantom cases of ``benchmarks/cpu_less_arithmetic.py`` (seed 777; CT bundles also
phantom 0 inside 128 voxels of air at both ends, a longer field of view), ``confident``
(``tta_confident=True``: a tile whose un-flipped pass gives every voxel a class probability >= 0.95
skips its other mirrorings) is compared with ``full`` mirror TTA on the same backend (onnxruntime;
``--torch``: also the torch Predictor). Columns: network calls (fraction of full TTA's), tiles kept
confident, label voxels differing per million, foreground Dice with full TTA's labels, the change in
Dice against the phantom's truth, seconds per case. ``tta_confident`` may become a default only at
>= 99.9% label agreement on every row.
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
from cpu_less_arithmetic import AIR_HU, _cases, _Counted, _dice
from real.machine import describe, load

#: built-in bundle -> the phantom of its task
BUNDLES = {
    "mouse-lung-nodules-v1.zip": "mouse-lung-ct",
    "mouse-lung-nodules-v2.zip": "mouse-lung-ct",
    "mouse-spinal-cord-gmwm-v1.zip": "mouse-spinal-cord",
    "brain-microbleeds-v1.zip": "brain-swi-cmb",
    "pet-mip-tumors-v1.zip": "pet-mip",
}


class _CountedTorch:
    """A torch predictor (MirrorTTA) counting its calls."""

    def __init__(self, predictor):
        self.predictor, self.calls = predictor, 0

    def __call__(self, x):
        self.calls += 1
        return self.predictor(x)


def _predictors(bundle, path: Path, threads: int, use_torch: bool) -> dict:
    from voxseg.bundle.onnx_backend import OnnxPredictor

    overlap = float(bundle.manifest.golden["settings"].get("overlap", 0.5))
    out = {}
    for name, confident in (("full", False), ("confident", True)):
        p = OnnxPredictor.from_bundle(bundle, num_threads=threads, tta=True, overlap=overlap, tta_confident=confident)
        p.runners = [_Counted(r) for r in p.runners]
        out[f"ort {name}"] = p
    if use_torch:
        from voxseg.models import load_predictor

        for name, confident in (("full", False), ("confident", True)):
            options = {"overlap": overlap, "num_threads": threads, "tta_confident": confident}
            p = load_predictor(str(path), offline=True, tta=True, precision="fp32", **options)
            for member in p._predictor.predictors:  # MirrorTTA per fold: count the network calls
                member.predictor = _CountedTorch(member.predictor)
            out[f"torch {name}"] = p
    return out


def _calls_and_tiles(p) -> tuple[int, int, int]:
    if hasattr(p, "runners"):
        return sum(r.calls for r in p.runners), p.tiles[0], p.tiles[1]
    members = p._predictor.predictors
    return (
        sum(m.predictor.calls for m in members),
        sum(m.tiles[0] for m in members),
        sum(m.tiles[1] for m in members),
    )


def measure_bundle(zip_name: str, phantom: str, n_cases: int, threads: int, use_torch: bool = False) -> list[dict]:
    from voxseg.bundle import open_bundle

    path = Path(str(files("voxseg.bundle") / "models" / zip_name))
    bundle = open_bundle(path)
    predictors = _predictors(bundle, path, threads, use_torch)
    air = AIR_HU if all(n.scheme == "ct" for n in bundle.manifest.plan.normalization) else None
    rows = []
    for case_name, images, truth in _cases(bundle, phantom, n_cases, air):
        results = {}
        for name, p in predictors.items():
            before = _calls_and_tiles(p)
            t0 = time.perf_counter()
            labels = p.predict(images).labels.array
            seconds = time.perf_counter() - t0
            after = _calls_and_tiles(p)
            results[name] = (labels, *(a - b for a, b in zip(after, before, strict=True)), seconds)
        for name, (labels, calls, seen, kept, seconds) in results.items():
            ref_labels, ref_calls, *_, ref_seconds = results[name.split()[0] + " full"]
            row = {"bundle": zip_name.removesuffix(".zip"), "case": case_name, "variant": name}
            row["calls"] = round(calls / max(ref_calls, 1), 3)
            row["tiles_confident"] = f"{kept}/{seen}" if seen else "-"
            row["labels_per_million"] = round(float(np.count_nonzero(labels != ref_labels)) / labels.size * 1e6, 1)
            row["dice_vs_full"] = round(_dice(labels, ref_labels), 5)
            if truth is not None:
                row["dice_change_vs_truth"] = round(_dice(labels, truth) - _dice(ref_labels, truth), 5)
            row["seconds"] = round(seconds, 2)
            row["time_saved"] = round(1 - seconds / ref_seconds, 3)
            rows.append(row)
    return rows


def _print(machine: dict, rows: list[dict]) -> None:
    print(f"machine: {machine['cpu']}; threads {machine['threads']}; load {machine['load_before']} -> ", end="")
    print(machine["load_after"])
    print(
        f"{'bundle':<30}{'case':<11}{'variant':<16}{'calls':>6}{'confident':>11}{'lab/M':>9}"
        f"{'Dice full':>10}{'dDice GT':>10}{'s':>7}{'saved':>7}"
    )
    for r in rows:
        gt = r.get("dice_change_vs_truth")
        print(
            f"{r['bundle']:<30}{r['case']:<11}{r['variant']:<16}{r['calls']:>6.2f}{r['tiles_confident']:>11}"
            f"{r['labels_per_million']:>9.1f}{r['dice_vs_full']:>10.4f}{'-' if gt is None else f'{gt:+.4f}':>10}"
            f"{r['seconds']:>7.2f}{r['time_saved']:>7.0%}"
        )
    mine = [r for r in rows if r["variant"].endswith("confident")]
    worst = max(r["labels_per_million"] for r in mine)
    print(f"confident: worst {worst:.0f} label voxels per million differ ({100 - worst / 1e4:.3f}% agreement)")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one bundle (mouse lung v2), golden case + one phantom")
    parser.add_argument("--cases", type=int, default=2, help="held-out phantom cases per bundle")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--torch", action="store_true", help="also the torch backend")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    machine = {"cpu": describe(), "threads": args.threads, "load_before": load()}
    chosen = {"mouse-lung-nodules-v2.zip": "mouse-lung-ct"} if args.quick else BUNDLES
    rows = []
    for zip_name, phantom in chosen.items():
        rows += measure_bundle(zip_name, phantom, 1 if args.quick else args.cases, args.threads, args.torch)
    machine["load_after"] = load()
    _print(machine, rows)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
