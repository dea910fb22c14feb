"""The training loss's cost with many classes: voxseg's class-indexed sums vs MONAI's one-hot loss.

    python benchmarks/loss_classes.py [--classes 2,16,117] [--patch 40] [--batch 2] [--repeats 5]
                                      [--plan WORK/plan.json --config 3d_lowres]

For each number of classes K: the Dice + cross-entropy loss's forward and backward on logits
``(batch, K, patch^3)`` (best of ``--repeats``), computed by ``voxseg.training.losses`` and by MONAI's
``MaskedDiceLoss(softmax, to_onehot_y, batch)`` + ``cross_entropy`` (what voxseg used before), and their
ratio. Both give the same values and gradients (``tests/training/test_losses.py``).

With ``--plan``, it also times whole training steps (network forward and backward, loss, optimizer) of
that plan's configuration with each loss, K taken from the plan: what the loss costs in a real step.
With ``--memory`` too, it measures each loss's peak RSS of three such steps, each in a fresh process,
with the plan's K and with 2 classes: the difference is the memory the classes cost (what the
planner's ``CLASS_TENSORS`` estimates).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.losses import MaskedDiceLoss

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real import machine

from voxseg.training.losses import DeepSupervisionLoss, LossSpec, build_loss


def monai_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """voxseg's loss before: MONAI's one-hot batch Dice (no background) + cross-entropy."""
    dice = MaskedDiceLoss(include_background=False, to_onehot_y=True, softmax=True, batch=True)
    mask = torch.ones_like(target, dtype=logits.dtype)
    return dice(logits, target, mask=mask) + F.cross_entropy(logits, target[:, 0])


def best_of(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def loss_seconds(loss, classes: int, patch: int, batch: int, repeats: int) -> float:
    g = torch.Generator().manual_seed(classes)
    logits = torch.randn(batch, classes, patch, patch, patch, generator=g)
    target = torch.randint(0, classes, (batch, 1, patch, patch, patch), generator=g)

    def once():
        x = logits.clone().requires_grad_(True)
        loss(x, target).backward()

    return best_of(once, repeats)


def step_seconds(
    plan_path: Path, config: str, loss, repeats: int, classes: int | None = None
) -> tuple[float, int, tuple[int, ...], int]:
    from voxseg.nets.build import build_network
    from voxseg.planning.plan import Plan
    from voxseg.training.loop import _step

    cfg = Plan.load(plan_path).configuration(config)
    torch.manual_seed(0)
    spec = cfg.network.to_json()
    classes = int(classes or cfg.network.out_channels)
    spec["kwargs"]["out_channels"] = classes
    net = build_network(spec).train()
    opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9)
    losses = (loss, DeepSupervisionLoss(loss, [0.5**k for k in range(8)]))
    x = torch.randn(cfg.batch_size, cfg.network.in_channels, *cfg.patch_size)
    y = torch.randint(0, classes, (cfg.batch_size, 1, *cfg.patch_size))

    class State:
        epoch = step = 0

    cpu, plain = torch.device("cpu"), contextlib.nullcontext()
    seconds = best_of(lambda: _step((x, y), net, net, opt, losses, cpu, plain, None, State), repeats)
    return seconds, classes, tuple(cfg.patch_size), cfg.batch_size


def peak_rss_mb(plan_path: Path, config: str, which: str, classes: int, threads: int) -> float:
    """Peak RSS (MB) of a fresh process that runs three training steps with ``which`` loss.

    The child reads its own ``VmHWM``, not ``getrusage``'s ``ru_maxrss``: Linux carries the parent's
    resident size at ``fork`` over ``exec`` into the child's ``ru_maxrss``, so every child reported the
    benchmark's own peak (1,027 MB for all four runs before this was found).
    """
    code = (
        "import sys, torch; sys.path.insert(0, sys.argv[1]); import loss_classes as b; "
        "from voxseg.inference.runtime import peak_rss_bytes; "
        "torch.set_num_threads(int(sys.argv[6])); "
        "loss = b.monai_loss if sys.argv[4] == 'monai' else b.build_loss(b.LossSpec('dice_ce')); "
        "b.step_seconds(b.Path(sys.argv[2]), sys.argv[3], loss, 2, int(sys.argv[5])); "
        "print(peak_rss_bytes() / 2**20)"
    )
    here = str(Path(__file__).resolve().parent)
    args = [here, str(plan_path), config, which, str(classes), str(threads)]
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", default="2,16,117")
    ap.add_argument("--patch", type=int, default=40)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--plan", type=Path, help="a work folder's plan.json: also time whole training steps")
    ap.add_argument("--config", default="3d_lowres")
    ap.add_argument("--memory", action="store_true", help="with --plan: peak RSS per loss, fresh processes")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ours = build_loss(LossSpec("dice_ce"))
    print(f"machine: {machine.describe()}; torch {torch.__version__}, {args.threads} threads")
    print(f"load average at start: {machine.load()}")
    print(f"\nloss forward + backward, logits {args.batch} x K x {args.patch}^3, best of {args.repeats}\n")
    print("| classes K | MONAI one-hot (before) | voxseg | speed-up |")
    print("|---|---|---|---|")
    for k in (int(c) for c in args.classes.split(",")):
        before = loss_seconds(monai_loss, k, args.patch, args.batch, args.repeats)
        after = loss_seconds(ours, k, args.patch, args.batch, args.repeats)
        print(f"| {k} | {before * 1000:.0f} ms | {after * 1000:.0f} ms | {before / after:.2f}x |")
    if args.plan:
        before, k, patch, batch = step_seconds(args.plan, args.config, monai_loss, args.repeats)
        after, *_ = step_seconds(args.plan, args.config, ours, args.repeats)
        shape = "x".join(map(str, patch))
        print(f"\nwhole training step of {args.plan} ({args.config}: {k} classes, patch {shape}, batch {batch})\n")
        print("| loss | seconds per step | speed-up |")
        print("|---|---|---|")
        print(f"| MONAI one-hot (before) | {before:.3f} | 1.00x |")
        print(f"| voxseg | {after:.3f} | {before / after:.2f}x |")
        if args.memory:
            print(f"\npeak RSS of 3 training steps, fresh process each ({k} classes vs 2)\n")
            print(f"| loss | {k} classes | 2 classes | the classes' cost | batch x K x patch tensors |")
            print("|---|---|---|---|---|")
            tensor_mb = batch * (k - 2) * math.prod(patch) * 4 / 2**20
            for name, which in (("MONAI one-hot (before)", "monai"), ("voxseg", "voxseg")):
                many = peak_rss_mb(args.plan, args.config, which, k, args.threads)
                two = peak_rss_mb(args.plan, args.config, which, 2, args.threads)
                extra = many - two
                print(f"| {name} | {many:.0f} MB | {two:.0f} MB | {extra:.0f} MB | {extra / tensor_mb:.1f} |")
    print(f"\nload average at end: {machine.load()}")


if __name__ == "__main__":
    main()
