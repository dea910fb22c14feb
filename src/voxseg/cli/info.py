"""``voxseg info``: versions, threads, devices and resolved paths."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import typer

from voxseg.cli._common import console
from voxseg.settings import resolve_paths

_PACKAGES = (
    "numpy",
    "scipy",
    "torch",
    "monai",
    "SimpleITK",
    "tifffile",
    "pillow",
    "typer",
    "onnxruntime",
    "napari",
    "mlflow",
    "ray",
    "streamlit",
)


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def collect_info(cache: str | None = None, models: str | None = None, data: str | None = None) -> dict[str, Any]:
    """Everything ``voxseg info`` reports, as a dict."""
    import torch  # the one command that should report on torch

    from voxseg._version import __version__

    flags = _cpu_flags()
    cuda = torch.cuda.is_available()
    paths = resolve_paths(cache=cache, models=models, data=data)
    return {
        "voxseg": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {p: _version(p) for p in _PACKAGES},
        "cpu": {
            "logical_cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "bf16": bool(flags & {"avx512_bf16", "amx_bf16"}),
            "avx512": "avx512f" in flags,
        },
        "devices": {
            "cuda": cuda,
            "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
            "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
            "default": "cuda" if cuda else "cpu",
        },
        "paths": {k: {"path": v, "from": paths.sources[k]} for k, v in paths.as_dict().items()},
    }


def info(
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    cache: str = typer.Option(None, "--cache", help="Cache folder (else $VOXSEG_CACHE, else the user cache)."),
    models: str = typer.Option(None, "--models", help="Models folder (else $VOXSEG_MODELS)."),
    data: str = typer.Option(None, "--data", help="Data folder (else $VOXSEG_DATA)."),
) -> None:
    """Show versions, CPU threads, devices and the folders voxseg uses."""
    report = collect_info(cache, models, data)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    console.print(f"[bold]voxseg[/bold] {report['voxseg']}  (python {report['python']}, {report['platform']})")
    console.print("packages: " + ", ".join(f"{k} {v}" for k, v in report["packages"].items() if v))
    cpu, dev = report["cpu"], report["devices"]
    console.print(
        f"cpu: {cpu['usable_cores']} usable cores, torch threads {cpu['torch_threads']}, "
        f"bf16 {'yes' if cpu['bf16'] else 'no'}"
    )
    console.print(f"device: {dev['default']}" + (f" ({', '.join(dev['cuda_devices'])})" if dev["cuda"] else ""))
    for key, val in report["paths"].items():
        console.print(f"{key}: {val['path']}  [dim]({val['from']})[/dim]")
