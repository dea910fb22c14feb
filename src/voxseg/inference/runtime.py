"""Process-level settings for fast CPU inference: precision, threads, the C allocator, memory meters.

Everything here is opt-in and measured (numbers in ``docs/inference.md``):

- :func:`cpu_supports_bf16` / :func:`resolve_precision`: bf16 autocast only where the hardware has
  native bf16 instructions (AVX512-BF16, AMX, Arm BF16); elsewhere it is emulated and slower.
- :func:`configure_threads`: one intra-op thread per *available* physical core (CPU affinity and
  cgroup quota respected: torch counts the host's cores inside a container).
- :func:`configure_allocator`: glibc ``mallopt`` so that large activations are recycled from the heap
  instead of being ``mmap``-ed and page-faulted in again for every tile.
- :func:`peak_rss_bytes`, :func:`reset_peak_rss`, :func:`current_rss_bytes`: memory meters (Linux).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
import platform
import resource
import sys
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch

from voxseg.errors import ConfigError

__all__ = [
    "cpu_supports_bf16",
    "resolve_precision",
    "default_num_threads",
    "configure_threads",
    "configure_allocator",
    "current_rss_bytes",
    "peak_rss_bytes",
    "reset_peak_rss",
    "PRECISIONS",
]

log = logging.getLogger(__name__)

Precision = Literal["bf16", "fp32"]
PRECISIONS: tuple[str, ...] = ("bf16", "fp32")

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4


@lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (x86 AVX512-BF16 / AMX-BF16, Arm BF16).

    torch's ``get_cpu_capability()`` reports the vector ISA (e.g. ``"AVX512"``), not bf16 support,
    so the CPU flags are read from ``/proc/cpuinfo`` (``AMX`` in the capability also counts).
    """
    try:
        if "AMX" in torch.backends.cpu.get_cpu_capability().upper():
            return True
    except (AttributeError, RuntimeError):  # older torch
        pass
    flags = _cpu_flags()
    return bool(flags & {"avx512_bf16", "amx_bf16"}) or (platform.machine() in ("aarch64", "arm64") and "bf16" in flags)


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def resolve_precision(precision: str, device: str | torch.device | None = None) -> Precision:
    """The precision that will really be used: ``"bf16"`` only where the device supports it.

    ``"bf16"`` on a CPU without native bf16 (or a GPU without it) falls back to ``"fp32"`` with an
    info log line; ``"fp32"`` is always honoured.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if precision == "fp32":
        return "fp32"
    kind = torch.device(device).type if device is not None else "cpu"
    if kind == "cuda":
        supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    else:
        supported = kind == "cpu" and cpu_supports_bf16()
    if not supported:
        log.info("bf16 is not supported natively on this %s; using fp32", kind)
        return "fp32"
    return "bf16"


def default_num_threads() -> int:
    """Physical cores this process may use: CPU affinity, cgroup CPU quota and SMT siblings respected."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    n = min(len(cpus), _physical_cores(cpus) or len(cpus))
    quota = _cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def _physical_cores(cpus: list[int]) -> int | None:
    """Distinct (package, core) pairs among ``cpus`` according to sysfs; None when unknown."""
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add((topo.joinpath("physical_package_id").read_text(), topo.joinpath("core_id").read_text()))
        except OSError:
            return None
    return len(cores) or None


def _cgroup_cpu_quota() -> float | None:
    """CPUs allowed by the cgroup (v2 ``cpu.max`` or v1 CFS quota); None when unlimited or unknown."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 else None
    except (OSError, ValueError):
        return None


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads and return the number used.

    ``None`` keeps an explicit ``OMP_NUM_THREADS`` (the user's choice) and otherwise uses
    :func:`default_num_threads`.
    """
    if num_threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        num_threads = int(env) if env.isdigit() and int(env) > 0 else default_num_threads()
    if not isinstance(num_threads, int) or num_threads < 1:
        raise ConfigError(f"num_threads must be a positive int, got {num_threads!r}")
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)
    return num_threads


def configure_allocator(*, keep_heap: bool = True) -> bool:
    """Make glibc malloc recycle large blocks instead of mapping and unmapping them per tile.

    By default glibc serves every block over its (dynamic, at most 32 MiB) mmap threshold with a
    fresh ``mmap`` and returns it with ``munmap`` on free, so each forward pass of a 3D network
    page-faults all of its activations in again (tens of thousands of faults per tile). With
    ``keep_heap`` this sets ``M_MMAP_MAX=0`` (large blocks come from the heap) and a 1 GiB
    ``M_TRIM_THRESHOLD`` (freed heap is kept for the next tile). Call it once at start-up, before
    large allocations; it affects the whole process. ``keep_heap=False`` restores glibc's defaults
    for later allocations.

    Returns
    -------
    bool
        True when the settings were applied (glibc found), False elsewhere (musl, macOS, Windows).
    """
    libc = _glibc()
    if libc is None:
        log.debug("configure_allocator: not glibc, nothing to do")
        return False
    if keep_heap:
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
    else:  # glibc defaults: 65536 mmapped blocks, 128 KiB thresholds
        ok = all(libc.mallopt(p, v) == 1 for p, v in ((_M_MMAP_MAX, 65536), (_M_TRIM_THRESHOLD, 128 * 1024)))
        ok = ok and libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024) == 1
    log.debug("configure_allocator(keep_heap=%s): %s", keep_heap, "applied" if ok else "refused")
    return ok


@lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


def current_rss_bytes() -> int:
    """Resident memory of this process now (Linux ``/proc/self/statm``; 0 when unknown)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def peak_rss_bytes() -> int:
    """Peak resident memory of this process since start or the last :func:`reset_peak_rss`."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0); False when impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
