"""Accuracy cost of bf16 and of ``--fast`` on the mouse-lung-ct phantoms, with a briefly trained model.

One command, prints a table::

    python benchmarks/inference_quality.py                  # ~10-15 min on 2 shared cores
    python benchmarks/inference_quality.py --work /tmp/q    # keep (and reuse) the trained model there
    python benchmarks/inference_quality.py --model WORK --size 0   # a model trained by `voxseg train`

Steps: generate ``--train`` + ``--test`` mouse-lung-ct phantom cases (``--size``³ voxels at 0.1 mm),
preprocess the training cases with the library's own ``preprocess_case`` (z-score, no resampling),
train a small MONAI UNet (channels 16-128) with ``voxseg.training.loop.train`` for ``--epochs`` ×
``--iterations`` steps (AdamW, two thirds of the patches centred on foreground, no augmentation),
then predict the test cases with :class:`voxseg.inference.Predictor` in several settings and
report the pooled Dice of the nodule class over all test voxels, the mean per-case Dice (cases
with nodules), the voxels whose label differs from the fp32 + TTA reference, and seconds per case.
The model is written in a work-folder layout (``plan.json`` + ``runs/3d/fold_0``), so a second
run with the same ``--work`` skips training. ``--model WORK`` evaluates a work folder trained by
``voxseg train`` (e.g. the ``lung`` task of ``benchmarks/training.py --keep DIR``: ``DIR/lung_work``)
instead; ``--size 0`` makes the test phantoms at the phantom's default size.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _plan(size: int, patch: int):
    from voxseg.nets import NetworkSpec
    from voxseg.planning import ConfigurationPlan, Normalization, Plan

    net = NetworkSpec(
        "unet",
        {
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 2,
            "channels": [16, 32, 64, 128],
            "strides": [2, 2, 2],
            "num_res_units": 1,
        },
    )
    cfg = ConfigurationPlan("3d", (0.1, 0.1, 0.1), (patch,) * 3, 2, net, mirror_axes=(0, 1, 2))
    return Plan(
        "mouse-lung-ct", {0: "CT"}, {"background": 0, "tumor": 1}, (Normalization("zscore"),), {"3d": cfg}, "3d"
    )


def _train(work: Path, args: argparse.Namespace) -> None:
    from voxseg.dataset.phantoms import generate_case
    from voxseg.nets import build_network
    from voxseg.preprocessing import preprocess_case, write_preprocessed
    from voxseg.training.config import TrainConfig
    from voxseg.training.loop import train
    from voxseg.workdir.layout import WorkDir

    wd = WorkDir(work)
    plan = _plan(args.size, args.patch)
    plan.save(wd.plan_path)
    prefixes = []
    for i in range(args.train):
        case = generate_case("mouse-lung-ct", i, seed=args.seed, size=args.size)
        pre = preprocess_case(case.images, case.label, target_spacing=(0.1,) * 3, normalization=plan.normalization)
        prefix = wd.preprocessed_dir("3d") / f"case_{i:03d}"
        write_preprocessed(prefix, pre)
        prefixes.append(str(prefix))
    import torch

    torch.manual_seed(0)
    model = build_network(plan.configuration().network)
    config = TrainConfig(
        epochs=args.epochs,
        iterations_per_epoch=args.iterations,
        batch_size=2,
        optimizer="adamw",
        lr=args.lr,
        weight_decay=1e-4,
        oversample_foreground=0.66,
        augmentation="none",
        seed=0,
    )
    t0 = time.perf_counter()
    state = train(wd.run_dir("3d", 0), model, prefixes, patch_size=(args.patch,) * 3, config=config)
    print(f"trained {state.step} steps in {time.perf_counter() - t0:.0f} s, last loss {state.history[-1]['loss']:.3f}")


def _evaluate(work: Path, args: argparse.Namespace) -> None:
    from voxseg.dataset.phantoms import generate_case
    from voxseg.inference import Predictor, cpu_supports_bf16
    from voxseg.inference.runtime import configure_allocator, configure_threads

    configure_allocator()
    threads = configure_threads(None)
    size = args.size or None  # 0: the phantom's default size
    cases = [generate_case("mouse-lung-ct", 1000 + i, seed=args.seed, size=size) for i in range(args.test)]
    settings = {
        "fp32, TTA, overlap 0.5": {"precision": "fp32", "tta": True, "overlap": 0.5},
        "bf16, TTA, overlap 0.5": {"precision": "bf16", "tta": True, "overlap": 0.5},
        "fp32 --fast (no TTA, 0.25)": {"precision": "fp32", "tta": False, "overlap": 0.25},
        "bf16 --fast (no TTA, 0.25)": {"precision": "bf16", "tta": False, "overlap": 0.25},
    }
    rows, reference = [], None
    for name, options in settings.items():
        predictor = Predictor.from_work(work, **options)
        labels, seconds = [], 0.0
        for case in cases:
            t0 = time.perf_counter()
            labels.append(predictor.predict(case.images).labels.array)
            seconds += time.perf_counter() - t0
        truths = [c.label.array > 0 for c in cases]
        tp = sum(np.count_nonzero((p > 0) & t) for p, t in zip(labels, truths, strict=True))
        size = sum(np.count_nonzero(p > 0) + np.count_nonzero(t) for p, t in zip(labels, truths, strict=True))
        per_case = [
            2 * np.count_nonzero((p > 0) & t) / (np.count_nonzero(p > 0) + np.count_nonzero(t))
            for p, t in zip(labels, truths, strict=True)
            if t.any()
        ]
        reference = reference or labels
        changed = sum(np.count_nonzero(a != b) for a, b in zip(labels, reference, strict=True))
        total = sum(a.size for a in labels)
        rows.append(
            (
                name,
                predictor.precision,
                2 * tp / max(size, 1),
                float(np.mean(per_case)),
                changed / total,
                seconds / len(cases),
            )
        )
    shape = "x".join(map(str, cases[0].label.shape))
    model = (
        f"model {args.model}"
        if args.model
        else f"{args.train} training cases, UNet 16-128, {args.epochs}×{args.iterations} steps"
    )
    print(
        f"\nmouse-lung-ct phantoms: {model}; {args.test} test cases of {shape} at 0.1 mm; "
        f"{threads} threads; native bf16: {cpu_supports_bf16()}"
    )
    print(
        f"| {'setting':<28} | {'used':<4} | {'pooled Dice':>11} | {'mean case Dice':>14} | "
        f"{'voxels changed':>14} | {'s/case':>6} |"
    )
    print("|" + "|".join("-" * w for w in (30, 6, 13, 16, 16, 8)) + "|")
    ref_dice = rows[0][2]
    for name, used, pooled, mean, changed, sec in rows:
        print(f"| {name:<28} | {used:<4} | {pooled:11.4f} | {mean:14.4f} | {100 * changed:13.3f}% | {sec:6.2f} |")
    print("Dice change vs fp32+TTA: " + ", ".join(f"{r[0]}: {r[2] - ref_dice:+.4f}" for r in rows[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="work folder to keep/reuse the model")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--train", type=int, default=8)
    parser.add_argument("--test", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--iterations", type=int, default=25)
    parser.add_argument("--lr", type=float, default=3e-3, help="AdamW learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=None, help="a trained work folder to evaluate (no training)")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (other jobs share them)")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.model or args.work or Path(tmp) / "work"
        if not args.model and not (work / "runs" / "3d" / "fold_0" / "checkpoint" / "state.json").is_file():
            _train(work, args)
        _evaluate(work, args)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
