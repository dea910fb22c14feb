"""Segmentation losses (Dice, cross-entropy, focal, as MONAI defines them) with an ignore label.

Voxels whose target equals the ignore label contribute to no term: the Dice sums are masked, the
cross-entropy and focal terms are averaged over annotated voxels only. A model can then learn from a
few annotated slices per volume (sparse annotation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from voxseg.errors import ConfigError

__all__ = ["LossSpec", "SegmentationLoss", "build_loss", "class_sums", "LOSSES"]

LOSSES = ("dice_ce", "dice_focal", "dice", "ce")


@dataclass(frozen=True)
class LossSpec:
    """Which loss and its weights. ``dice_focal`` with ``lambda_focal=10`` is the MIP-PET recipe."""

    name: str = "dice_ce"
    lambda_dice: float = 1.0
    lambda_other: float = 1.0
    focal_gamma: float = 2.0
    include_background: bool = False

    def __post_init__(self) -> None:
        if self.name not in LOSSES:
            raise ConfigError(f"unknown loss {self.name!r} (choose from {', '.join(LOSSES)})")
        if self.lambda_dice < 0 or self.lambda_other < 0 or self.lambda_dice + self.lambda_other == 0:
            raise ConfigError("loss weights must be >= 0 and not both 0")

    def to_json(self) -> dict:
        return asdict(self)


def class_sums(probs: torch.Tensor, p_target: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-class sums of a batch Dice, ``(3, K)``: true positives, predicted mass, annotated voxels.

    ``probs`` is ``(B, K, *spatial)`` softmax output, ``p_target`` ``(B, 1, *spatial)`` the probability
    of each voxel's target class, ``target`` the integer classes and ``weight`` 1 where annotated, 0 where
    not. Nothing of size K x voxels is built beyond ``probs`` itself: the one-hot target of the usual
    formulation (and its products) cost seconds a step with a hundred classes; here the true positives
    and the annotated counts are sums indexed by the target class, and the predicted mass a batched
    matrix product with the weights.
    """
    k, b = probs.shape[1], probs.shape[0]
    flat_t = target.reshape(-1)
    flat_w = weight.reshape(-1).double()  # index_add adds in order: float64 keeps the sums exact
    tp = probs.new_zeros(k, dtype=torch.float64).index_add(0, flat_t, p_target.reshape(-1).double() * flat_w)
    truth = probs.new_zeros(k, dtype=torch.float64).index_add(0, flat_t, flat_w)
    predicted = torch.bmm(probs.reshape(b, k, -1), weight.reshape(b, -1, 1).to(probs.dtype)).sum(dim=(0, 2))
    return torch.stack([tp.to(probs.dtype), predicted, truth.to(probs.dtype)])


class _FusedLoss(torch.autograd.Function):
    """Dice + cross-entropy (or focal) from logits, with its gradient written out by hand.

    Autograd through log-softmax, exp, gather and a matrix product makes about a dozen passes over the
    ``(B, K, *spatial)`` logits; this makes five (log-softmax, exp, matrix product forward; one
    product, one fused multiply-add backward), and keeps one such tensor (the probabilities) between
    forward and backward. With K = 117 classes those passes, not the arithmetic, are the loss's cost.

    Gradient (``p`` probabilities, ``t`` target class, ``w`` 1 where annotated): the Dice depends on the
    per-class sums (true positives ``tp_k``, predicted mass ``P_k``); with ``a_k = dL/dP_k`` and
    ``b_k = dL/dtp_k`` its gradient in ``p`` is ``w (a_k + [k=t] b_k)``; the cross-entropy or focal term
    depends on ``log p_t`` only, with per-voxel derivative ``e``. Through the softmax::

        dL/dz_k = w p_k a_k - p_k (w sum_j p_j a_j + w p_t b_t + e) + [k=t] (w p_t b_t + e)
    """

    @staticmethod
    def forward(ctx, logits, target, weight, loss: SegmentationLoss):  # type: ignore[override]
        spec = loss.spec
        n_valid = weight.sum().clamp_min(1)
        log_probs = torch.log_softmax(logits, dim=1)
        log_p_t = log_probs.gather(1, target)
        probs = log_probs.exp_()  # the log-probabilities are not needed any more
        p_t = log_p_t.exp()
        total = logits.new_zeros(())
        a = b = None
        if loss.uses_dice:
            value, a, b = loss.dice_and_slopes(class_sums(probs, p_t, target, weight))
            total = total + spec.lambda_dice * value
            a, b = a * spec.lambda_dice, b * spec.lambda_dice
        if spec.name in ("dice_ce", "ce"):
            total = total - spec.lambda_other * (log_p_t * weight).sum() / n_valid
            e = weight * (-spec.lambda_other / n_valid)
        elif spec.name == "dice_focal":
            gamma, q = spec.focal_gamma, 1 - p_t
            total = total - spec.lambda_other * (q.pow(gamma) * log_p_t * weight).sum() / n_valid
            # q^(gamma-1) is infinite at q = 0 for gamma < 1, where p_t log p_t is 0: the slope's limit is 0
            q_safe = q.clamp_min(torch.finfo(q.dtype).tiny)
            slope = gamma * q_safe.pow(gamma - 1) * p_t * log_p_t - q.pow(gamma) if gamma != 0 else -torch.ones_like(q)
            e = slope * weight * (spec.lambda_other / n_valid)
        else:
            e = None
        ctx.loss = loss
        ctx.save_for_backward(probs, p_t, target, weight, a, b, e)
        return total

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        probs, p_t, target, weight, a, b, e = ctx.saved_tensors
        shape = (1, -1) + (1,) * (probs.ndim - 2)
        if a is not None:
            if ctx.loss.reduce_sums is not None:  # each rank's sums went into the global Dice
                a, b = ctx.loss.reduce_sums(torch.stack([a, b]))
            grad = probs * a.view(shape)
            if ctx.loss.ignore_label is not None:
                grad.mul_(weight)
            at_target = weight * p_t * b[target]
            per_voxel = grad.sum(dim=1, keepdim=True) + at_target
            if e is not None:
                at_target, per_voxel = at_target + e, per_voxel + e
            grad.addcmul_(probs, per_voxel, value=-1)
        else:
            grad = probs * (-e)
            at_target = e
        grad.scatter_add_(1, target, at_target)
        return grad.mul_(grad_out), None, None, None


class SegmentationLoss(nn.Module):
    """Dice (+ CE or focal) on logits ``(B, K, *spatial)`` vs integer targets ``(B, 1, *spatial)``.

    The same values and gradients as MONAI's ``MaskedDiceLoss(softmax=True, to_onehot_y=True,
    batch=True)``, ``cross_entropy`` and ``FocalLoss(use_softmax=True)`` (a test holds them equal), but
    computed without one-hot targets and with the gradient written out (:class:`_FusedLoss`), so a loss
    with 117 classes costs a few passes over the logits (``docs/design.md``, "Many classes").

    Parameters
    ----------
    spec
        The loss and its weights.
    ignore_label
        Target value that marks unannotated voxels, or None.
    """

    smooth_nr = 1e-5
    smooth_dr = 1e-5

    def __init__(self, spec: LossSpec, *, ignore_label: int | None = None):
        super().__init__()
        self.spec = spec
        self.ignore_label = ignore_label
        self.uses_dice = spec.name in ("dice_ce", "dice_focal", "dice")
        #: Applied to the Dice's ``(3, K)`` class sums before the ratio, and to their gradients:
        #: data-parallel training sums both over the ranks, so every rank computes the Dice of the
        #: global batch.
        self.reduce_sums: Callable[[torch.Tensor], torch.Tensor] | None = None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == logits.ndim - 1:
            target = target.unsqueeze(1)
        target = target.long()
        if self.ignore_label is not None:
            valid = target != self.ignore_label
            target = torch.where(valid, target, torch.zeros_like(target))
        else:
            valid = torch.ones_like(target, dtype=torch.bool)
        return _FusedLoss.apply(logits, target, valid.to(logits.dtype), self)

    def dice_and_slopes(self, sums: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch Dice loss from its ``(3, K)`` class sums, and its derivatives in ``P_k`` and ``tp_k``."""
        if self.reduce_sums is not None:
            sums = self.reduce_sums(sums)
        tp, predicted, truth = sums
        first = 1 if not self.spec.include_background and sums.shape[1] > 1 else 0
        count = sums.shape[1] - first
        num, den = 2 * tp + self.smooth_nr, predicted + truth + self.smooth_dr
        value = torch.mean(1 - num[first:] / den[first:])
        a, b = num / den**2 / count, -2 / den / count
        a[:first], b[:first] = 0, 0
        return value, a, b


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of a loss over decoder outputs, targets downsampled by nearest neighbour."""

    def __init__(self, loss: nn.Module, weights: Sequence[float]):
        super().__init__()
        self.loss = loss
        total = float(sum(weights))
        self.weights = [w / total for w in weights]

    def forward(self, outputs: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        result = outputs[0].new_zeros(())
        for w, out in zip(self.weights, outputs, strict=False):
            t = (
                target
                if out.shape[2:] == target.shape[2:]
                else F.interpolate(target.float(), size=out.shape[2:], mode="nearest").long()
            )
            result = result + w * self.loss(out, t)
        return result


def build_loss(spec: LossSpec | dict, *, ignore_label: int | None = None) -> SegmentationLoss:
    """A :class:`SegmentationLoss` from a spec (or its JSON dict)."""
    if isinstance(spec, dict):
        try:
            spec = LossSpec(**spec)
        except TypeError as exc:
            raise ConfigError(f"invalid loss spec {spec!r} ({exc})") from None
    return SegmentationLoss(spec, ignore_label=ignore_label)
