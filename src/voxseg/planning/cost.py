"""What one training step of a planned DynUNet costs: arithmetic and memory, from its spec alone.

The planner sizes every configuration to one budget per hardware (``BudgetDefaults``): the 2D
configuration may not cost more per step than the 3D one, and many classes must not make a step
run out of memory. Both need an estimate that does not build the network (planning never imports
torch), so this module counts the convolutions of DynUNet as :mod:`voxseg.nets` builds it:

- encoder level ``l``: two ``k x k`` convolutions (the first strided into the level), ``f[l]`` out;
- decoder level ``l`` (all but the bottleneck): a transposed convolution ``f[l+1] -> f[l]`` and two
  convolutions (``2 f[l] -> f[l]``, ``f[l] -> f[l]``);
- a ``1 x 1`` output convolution ``f[0] -> K``.

A training step is counted as three forward passes (forward + backward: the usual factor). Memory
is the activations kept for the backward pass (each convolution's output through instance norm and
leaky ReLU: :data:`SAVED_TENSORS_PER_CONV` tensors) plus the per-class tensors of the head and the
loss (logits, probabilities, their gradient; an over-estimate since the loss stopped building one-hot targets:
:data:`CLASS_TENSORS`), all float32. numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["StepCost", "step_cost", "SAVED_TENSORS_PER_CONV", "CLASS_TENSORS"]

#: float32 tensors of a convolution's output size kept for the backward pass (conv output, norm
#: output, activation output) plus the gradient buffer alive while that layer is differentiated.
SAVED_TENSORS_PER_CONV = 4

#: float32 tensors of ``batch x K x patch`` alive in a step's head and loss. Measured with MONAI's
#: one-hot DiceCE: a step of the 40^3, batch-2 CPU plan peaked 324 MB higher with 117 classes than
#: with 2 (5.5 tensors). The loss now builds no one-hot target and keeps one such tensor
#: (``voxseg.training.losses``). Re-measured (``benchmarks/loss_classes.py --plan WORK/plan.json
#: --memory``, 2026-12-08, AAL 116's plan): 163 MB, 2.9 tensors, against MONAI's 347 MB (6.2). Kept
#: at 6, a 2x margin, until the plans that a smaller figure would change are checked.
CLASS_TENSORS = 6

_F32 = 4


@dataclass(frozen=True)
class StepCost:
    """Estimated cost of one training step.

    Attributes
    ----------
    gflop
        Arithmetic of forward + backward (GFLOP, multiply-adds counted twice).
    activation_bytes
        Activations kept for the backward pass, the class head included.
    class_bytes
        The part of :attr:`activation_bytes` that grows with the number of classes.
    """

    gflop: float
    activation_bytes: int
    class_bytes: int


def _conv(voxels: float, kernel: Sequence[int], cin: int, cout: int) -> float:
    return 2.0 * voxels * math.prod(kernel) * cin * cout


def step_cost(
    *,
    patch_size: Sequence[int],
    strides: Sequence[Sequence[int]],
    kernel_sizes: Sequence[Sequence[int]],
    filters: Sequence[int],
    in_channels: int,
    classes: int,
    batch_size: int,
) -> StepCost:
    """Estimate one step's arithmetic and activation memory (see the module docstring).

    ``strides[l]`` is the downsampling into level ``l`` (``strides[0]`` all ones), ``kernel_sizes[l]``
    that level's kernel and ``filters[l]`` its feature maps, as in a DynUNet spec.
    """
    levels = len(filters)
    voxels, scale = [], 1.0
    for lvl in range(levels):
        scale *= math.prod(strides[lvl])
        voxels.append(math.prod(patch_size) / scale)
    flops, saved = 0.0, 0.0
    for lvl in range(levels):
        cin = in_channels if lvl == 0 else filters[lvl - 1]
        k, f, v = kernel_sizes[lvl], filters[lvl], voxels[lvl]
        flops += _conv(v, k, cin, f) + _conv(v, k, f, f)
        saved += 2 * f * v
        if lvl < levels - 1:  # decoder of this level
            flops += _conv(v, strides[lvl + 1], filters[lvl + 1], f) + _conv(v, k, 2 * f, f) + _conv(v, k, f, f)
            saved += 3 * f * v
    flops += _conv(voxels[0], (1,), filters[0], classes)
    class_bytes = int(batch_size * CLASS_TENSORS * classes * voxels[0] * _F32)
    activations = int(batch_size * SAVED_TENSORS_PER_CONV * saved * _F32) + class_bytes
    return StepCost(gflop=3.0 * batch_size * flops / 1e9, activation_bytes=activations, class_bytes=class_bytes)
