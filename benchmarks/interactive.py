"""Interactive vs automatic segmentation on held-out soft-tissue-mri phantoms, and latency.

    python benchmarks/interactive.py [--minutes 12] [--train-cases 24] [--test-cases 8] [--clicks 3]

1. Writes a soft-tissue-mri phantom (training cases, seed 0) and held-out cases (seed 1).
2. Plans it twice (`plan --interactive extreme-points` and automatic) and trains fold 0 of each
   for the same wall-clock budget (`--minutes`), one after the other.
3. `evaluate_interactive` on the held-out cases: six jittered extreme points, then corrective
   clicks (mean Dice after k = 0..N), and the automatic model's Dice on the same cases.
4. Latency of `segment_from_points` when the points' crop is 128^3 voxels at the plan spacing,
   and on a held-out case (a tumour's crop: a few patches).

Prints one table (and writes it to OUT/interactive_benchmark.json). The CPU may be shared:
training budgets are wall-clock, so a busy machine trains fewer steps.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def _train(data: Path, work: Path, minutes: float, interactive: bool) -> dict:
    from voxseg.experiment.plan import plan_experiment
    from voxseg.experiment.train import train_fold

    plan_experiment(data, work, interactive="extreme-points" if interactive else None, folds=5, num_workers=2)
    t0 = time.monotonic()
    summary = train_fold(
        work,
        0,
        config_overrides={"minutes": minutes, "iterations_per_epoch": 25, "num_workers": 2},
        validate=False,
        patch_validation=0,
    )
    summary["wall_s"] = time.monotonic() - t0
    return summary


def _case_latency(work: Path, data: Path, repeats: int = 3) -> float:
    """Median seconds of segment_from_points on the first held-out case (its tumour's six points)."""
    from voxseg.dataset import read_dataset
    from voxseg.interactive import extreme_points
    from voxseg.interactive.pipeline import load_interactive_model, segment_from_points
    from voxseg.io import read_image

    model = load_interactive_model(work, tta=False)
    case = sorted(read_dataset(data).training, key=lambda c: c.case_id)[0]
    image, label = read_image(case.images[0]), read_image(case.label).array
    points = extreme_points(label > 0)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        segment_from_points(image, points, model=model)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def _latency(work: Path, *, tta: bool, repeats: int = 3) -> float:
    """Median seconds of segment_from_points on an image whose prompt crop is 128^3 voxels."""
    from voxseg.interactive.pipeline import load_interactive_model, segment_from_points
    from voxseg.io import Volume

    model = load_interactive_model(work, tta=tta)
    spacing = model.config.target_spacing
    margin = model.plan.interactive.get("margin_mm", 10.0)
    pad = np.ceil(margin / np.asarray(spacing)).astype(int)
    rng = np.random.default_rng(0)
    image = Volume(rng.normal(0, 1, (128, 128, 128)).astype(np.float32), spacing)
    lo, hi = pad, 127 - pad
    mid = (lo + hi) // 2
    points = []
    for axis in range(3):
        for end in (lo, hi):
            p = mid.copy()
            p[axis] = end[axis]
            points.append(p)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        segment_from_points(image, np.asarray(points), model=model)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))  # the first call warms the kernels up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=12.0, help="training budget per model (wall clock)")
    ap.add_argument("--train-cases", type=int, default=24)
    ap.add_argument("--test-cases", type=int, default=8)
    ap.add_argument("--clicks", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "voxseg-interactive-benchmark")
    args = ap.parse_args()

    from voxseg.dataset.phantoms import make_phantom
    from voxseg.interactive.evaluate import evaluate_interactive

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    train_data = out / "Dataset001_STS"
    test_data = out / "Dataset002_STS_test"
    if not (train_data / "dataset.json").is_file():
        make_phantom("soft-tissue-mri", train_data, cases=args.train_cases, seed=0)
    if not (test_data / "dataset.json").is_file():
        make_phantom("soft-tissue-mri", test_data, cases=args.test_cases, seed=1)
    runs = {}
    for name, interactive in (("interactive", True), ("automatic", False)):
        if not (out / f"work_{name}" / "runs/3d/fold_0/run.json").is_file():
            runs[name] = _train(train_data, out / f"work_{name}", args.minutes, interactive)
        else:
            runs[name] = json.loads((out / f"work_{name}" / "runs/3d/fold_0/run.json").read_text())
    t0 = time.monotonic()
    result = evaluate_interactive(
        out / "work_interactive",
        test_data,
        out / "evaluation",
        clicks=args.clicks,
        automatic=out / "work_automatic",
        tta=False,
    )
    eval_s = time.monotonic() - t0
    lat = {False: _latency(out / "work_interactive", tta=False)}  # mirror TTA costs about 8x more
    case_lat = _case_latency(out / "work_interactive", test_data)
    rows = [("automatic model (no prompt)", result["automatic_dice"])]
    pairs = zip(result["k"], result["mean_dice"], strict=True)
    rows += [(f"interactive, six points + {k} click(s)", v) for k, v in pairs]
    print(f"held-out soft-tissue-mri phantoms: {args.test_cases}; training budget {args.minutes} min per model")
    for name in ("interactive", "automatic"):
        r = runs[name]
        print(f"  {name:<11} trained {r.get('steps', r.get('step'))} steps ({r.get('epochs', r.get('epoch'))} epochs)")
    print(f"{'setting':<40} {'mean Dice':>10}")
    for label, value in rows:
        print(f"{label:<40} {value:>10.3f}")
    gain = result["mean_dice"][0] - result["automatic_dice"]
    print(f"{'six points vs automatic':<40} {gain:>+10.3f}")
    print(f"{'latency 128^3 crop, no TTA (s)':<40} {lat[False]:>10.2f}")
    print(f"{'latency, a held-out tumour, no TTA (s)':<40} {case_lat:>10.2f}")
    print(f"evaluation took {eval_s:.0f} s")
    summary = {
        "minutes": args.minutes,
        "train_cases": args.train_cases,
        "test_cases": args.test_cases,
        "steps": {k: v.get("steps", v.get("step")) for k, v in runs.items()},
        "mean_dice": result["mean_dice"],
        "automatic_dice": result["automatic_dice"],
        "latency_s": {"no_tta": lat[False], "held_out_case": case_lat},
    }
    (out / "interactive_benchmark.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
