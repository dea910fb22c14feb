"""Launching data-parallel training with PyTorch DDP: ``voxseg train WORK --processes N`` or ``torchrun``.

Every process (rank) runs the ordinary training loop (:func:`voxseg.training.loop.train`), which
switches to data-parallel steps when a ``torch.distributed`` process group of more than one
process is initialized (:meth:`DataParallel.current`):

- each rank draws the step's whole seeded batch (``rng([seed, epoch, step])``, as one process
  would) and trains on its slice of ``batch_size / N`` patches, so N processes make the same
  update as one process with the whole batch: DDP averages the gradients, the cross-entropy is a
  mean of equal-sized slices, and the batch Dice adds its per-class sums over the ranks (an
  all-reduce with gradient) before the ratio, exactly as on one process;
- only rank 0 writes checkpoints, ``run.json``, validation results and MLflow records; the
  checkpoint (the unwrapped model, the optimizer, the global batch size) does not depend on the
  number of processes, so a run resumes with any process count;
- gloo on CPU, NCCL on GPUs (rank ``r`` uses ``cuda:LOCAL_RANK``).

Launch: :func:`train_processes` spawns the other ``N - 1`` ranks on this machine (127.0.0.1, a free
port) and runs rank 0 in the calling process (its progress bar and results are the caller's);
under ``torchrun`` (``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT`` set) each process joins
the group from the environment.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from voxseg._procs import die_with_parent
from voxseg.errors import ConfigError, VoxsegError

__all__ = ["train_processes", "torchrun_env"]

log = logging.getLogger(__name__)

TIMEOUT = datetime.timedelta(hours=2)  # ranks wait while rank 0 validates a fold on full volumes
_QUIET = {"mlflow": None, "validate": False, "patch_validation": 0, "progress": None}
_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def torchrun_env() -> dict[str, str] | None:
    """``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` when set by a launcher."""
    if "WORLD_SIZE" not in os.environ:
        return None
    missing = [k for k in _ENV if not os.environ.get(k)]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE is set but {', '.join(missing)} is not; launch with torchrun or unset WORLD_SIZE"
        )
    return {k: os.environ[k] for k in (*_ENV, "LOCAL_RANK") if k in os.environ}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _device_of(options: dict[str, Any]) -> str:
    overrides = options.get("config_overrides") or {}
    device = options.get("device") or (overrides.get("device") if isinstance(overrides, dict) else None) or "cpu"
    return str(device)


@contextlib.contextmanager
def _process_group(rank: int, world: int, local_rank: int, init_method: str, device: str) -> Iterator[None]:
    """Join the group (gloo on CPU, NCCL on CUDA) with 1/N of the CPU threads; leave it afterwards."""
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local_rank)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", world)))))
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world, timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()
        torch.set_num_threads(threads)


def _run_rank(rank: int, world: int, local_rank: int, init_method: str, work, folds, options: dict) -> list[dict]:
    from voxseg.experiment.train import train_folds

    mine = dict(options) if rank == 0 else {**options, **_QUIET}
    with _process_group(rank, world, local_rank, init_method, _device_of(options)):
        return train_folds(work, folds, **mine)


def _child(rank: int, world: int, init_method: str, work, folds, options: dict, parent: int | None = None) -> None:
    """Entry point of a spawned rank (> 0); it ends when the launching process (rank 0) ends."""
    if parent is not None:
        die_with_parent(parent)
    logging.basicConfig(level=logging.WARNING, format=f"rank {rank}: %(message)s")
    try:
        _run_rank(rank, world, rank, init_method, work, folds, options)
    except VoxsegError as exc:  # rank 0 reports the same error to the user; one line here
        log.error("%s", " ".join(str(exc).split()))
        raise SystemExit(1) from None


def _check(processes: int | None, options: dict[str, Any]) -> None:
    if processes is not None and (not isinstance(processes, int) or processes < 1):
        raise ConfigError(f"--processes must be a positive integer, got {processes!r}")
    overrides = options.get("config_overrides") or {}
    keys = set(overrides) if isinstance(overrides, dict) else {str(s).partition("=")[0] for s in overrides}
    if (processes or 1) > 1 and "minutes" in keys and "epochs" not in keys and not options.get("resume"):
        raise ConfigError(
            "--minutes without --epochs sizes the run from each process's own timing, which the processes "
            "could disagree on; give --epochs as well when training with several processes"
        )


def train_processes(
    work: str | Path,
    folds: str | Sequence[int] = "all",
    *,
    processes: int | None = None,
    progress: Callable[[Any], None] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Train folds of a work folder with ``processes`` data-parallel processes.

    Parameters
    ----------
    work, folds
        As for :func:`voxseg.experiment.train.train_folds`.
    processes
        Number of processes. Under torchrun (``WORLD_SIZE`` set) this process is one rank and
        ``processes`` must be None or ``WORLD_SIZE``; otherwise 1 trains in this process and N > 1
        spawns ranks 1..N-1 locally (127.0.0.1, a free port) while this process is rank 0.
    progress
        Step callback, called on rank 0 only.
    **options
        :func:`~voxseg.experiment.train.train_fold` options (``config_overrides``, ``resume``,
        ``mlflow``, ``num_workers``, ``device``, ...); ranks other than 0 run without MLflow and
        validation.

    Returns
    -------
    list of dict
        This rank's fold summaries (rank 0's include validation).
    """
    from voxseg.experiment.train import train_folds

    env = torchrun_env()
    world = int(env["WORLD_SIZE"]) if env else processes
    if env and processes is not None and processes != world:
        raise ConfigError(f"--processes {processes} but torchrun started WORLD_SIZE={world} processes")
    _check(world, options)
    if env:
        rank, local = int(env["RANK"]), int(env.get("LOCAL_RANK", env["RANK"]))
        mine = {**options, "progress": progress if rank == 0 else None}
        with _process_group(rank, world, local, "env://", _device_of(options)):
            return train_folds(work, folds, **(mine if rank == 0 else {**mine, **_QUIET}))
    if world is None or world == 1:
        return train_folds(work, folds, progress=progress, **options)
    return _spawn(work, folds, world, progress, options)


def _spawn(work, folds, world: int, progress, options: dict) -> list[dict[str, Any]]:
    import torch.multiprocessing as mp

    if _device_of(options).startswith("cuda") and torch.cuda.device_count() < world:
        have = torch.cuda.device_count()
        raise ConfigError(f"--processes {world} on GPUs needs {world} GPUs; this machine has {have}")
    init_method = f"tcp://127.0.0.1:{_free_port()}"
    ctx = mp.get_context("spawn")
    children = [
        ctx.Process(target=_child, args=(r, world, init_method, work, folds, options, os.getpid()), daemon=False)
        for r in range(1, world)
    ]
    for child in children:
        child.start()
    try:
        result = _run_rank(0, world, 0, init_method, work, folds, {**options, "progress": progress})
    except BaseException:
        for child in children:
            child.terminate()
        raise
    finally:
        for child in children:
            child.join(timeout=60)
    bad = [f"rank {r} exit code {c.exitcode}" for r, c in enumerate(children, 1) if c.exitcode != 0]
    if bad:
        raise VoxsegError(f"training processes failed ({', '.join(bad)}); see their messages above")
    return result
