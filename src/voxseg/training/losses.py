"""Segmentation losses (MONAI's Dice, cross-entropy, focal) with an ignore label.

Voxels whose target equals the ignore label contribute to no term: the Dice sums are masked, the
cross-entropy and focal terms are averaged over annotated voxels only. A model can then learn from a
few annotated slices per volume (sparse annotation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from monai.losses import FocalLoss, MaskedDiceLoss
from torch import nn

from voxseg.errors import ConfigError

__all__ = ["LossSpec", "SegmentationLoss", "build_loss", "LOSSES"]

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


class SegmentationLoss(nn.Module):
    """Dice (+ CE or focal) on logits ``(B, K, *spatial)`` vs integer targets ``(B, 1, *spatial)``.

    Parameters
    ----------
    spec
        The loss and its weights.
    ignore_label
        Target value that marks unannotated voxels, or None.
    """

    def __init__(self, spec: LossSpec, *, ignore_label: int | None = None):
        super().__init__()
        self.spec = spec
        self.ignore_label = ignore_label
        uses_dice = spec.name in ("dice_ce", "dice_focal", "dice")
        self.dice = (
            MaskedDiceLoss(include_background=spec.include_background, to_onehot_y=True, softmax=True, batch=True)
            if uses_dice
            else None
        )
        self.focal = (
            FocalLoss(
                include_background=True, to_onehot_y=True, gamma=spec.focal_gamma, use_softmax=True, reduction="none"
            )
            if spec.name == "dice_focal"
            else None
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == logits.ndim - 1:
            target = target.unsqueeze(1)
        target = target.long()
        if self.ignore_label is not None:
            valid = target != self.ignore_label
            target = torch.where(valid, target, torch.zeros_like(target))
        else:
            valid = torch.ones_like(target, dtype=torch.bool)
        n_valid = valid.sum().clamp_min(1)
        total = logits.new_zeros(())
        if self.dice is not None:
            total = total + self.spec.lambda_dice * self.dice(logits, target, mask=valid.to(logits.dtype))
        if self.spec.name in ("dice_ce", "ce"):
            ce = F.cross_entropy(logits, target[:, 0], reduction="none")
            total = total + self.spec.lambda_other * (ce * valid[:, 0]).sum() / n_valid
        if self.focal is not None:
            focal = self.focal(logits, target).sum(dim=1, keepdim=True)  # (B, 1, ...)
            total = total + self.spec.lambda_other * (focal * valid).sum() / n_valid
        return total


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
