"""Data-parallel training steps with PyTorch DDP (the training side of ``voxseg train --processes N``).

The ordinary training loop (:func:`voxseg.training.loop.train`) switches to data-parallel steps
when a ``torch.distributed`` process group of more than one process is initialized
(:meth:`DataParallel.current`): each rank draws the step's whole seeded batch and trains on its
slice of ``batch_size / N`` patches, so N processes make the same update as one process with the
whole batch (DDP averages the gradients; the batch Dice adds its per-class sums over the ranks
before the ratio); only rank 0 writes. The processes are started by
:mod:`voxseg.experiment.launcher`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from voxseg.errors import ConfigError

__all__ = ["DataParallel", "sum_over_ranks"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel run and the few operations the loop needs."""

    rank: int
    world_size: int
    local_rank: int = 0

    @classmethod
    def current(cls) -> DataParallel | None:
        """The initialized default process group (None when there is none, or it has one process)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return None
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files."""
        return self.rank == 0

    def check(self, batch_size: int) -> None:
        """Refuse a global batch that the ranks cannot share equally."""
        if batch_size % self.world_size:
            raise ConfigError(
                f"batch_size {batch_size} cannot be split over {self.world_size} processes; "
                f"use a multiple of {self.world_size} (--set training.batch_size=...) or another --processes"
            )

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in DDP (SyncBatchNorm on GPUs); the module itself keeps the weights that are saved."""
        if next(model.parameters()).is_cuda:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            return nn.parallel.DistributedDataParallel(model, device_ids=[torch.cuda.current_device()])
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            log.warning("BatchNorm statistics are per process on CPU (no SyncBatchNorm): updates differ from 1 process")
        return nn.parallel.DistributedDataParallel(model)

    def shard(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This rank's equal slice of each batch tensor (axis 0)."""
        n = tensors[0].shape[0] // self.world_size
        return tuple(t[self.rank * n : (self.rank + 1) * n] for t in tensors)

    def adapt_loss(self, loss: nn.Module) -> nn.Module:
        """Make a batch Dice term global over the ranks (see :func:`sum_over_ranks`)."""
        if getattr(loss, "uses_dice", False):
            loss.reduce_sums = sum_over_ranks
        return loss

    def mean(self, value: torch.Tensor) -> float:
        """The mean of a scalar over the ranks (the loss that one process would report)."""
        total = value.detach().float().reshape(1).clone()
        dist.all_reduce(total)
        return float(total) / self.world_size

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision, for every rank (e.g. the time budget ran out)."""
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
        value = torch.tensor([int(flag)], device=device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def barrier(self) -> None:
        dist.barrier()


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced gradient (every rank's loss uses the sum)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


def sum_over_ranks(sums: torch.Tensor) -> torch.Tensor:
    """A batch Dice's per-class sums added over the ranks, with gradients that flow back to each rank.

    Every rank then computes the Dice of the whole global batch; DDP's gradient average equals one
    process's gradient on that batch (``tests/distributed/test_ddp.py``).
    """
    return _SumOverRanks.apply(sums)


# ---- launching -------------------------------------------------------------------------------
