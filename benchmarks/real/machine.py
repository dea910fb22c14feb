"""What the benchmark ran on: CPU model, the flags that matter for speed, cores, load."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["describe", "load"]
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def describe(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    model, flags = "unknown CPU", set()
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    have = " ".join(f"{f}{'+' if f in flags else '-'}" for f in FLAGS)
    return f"{model}, {cores} cores usable, flags {have}"


def load() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"
