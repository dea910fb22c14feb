"""``verify_bundle``: hashes, schema, strict weight loading and a dry-run forward pass."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxseg.bundle.archive import ArchiveLimits
from voxseg.bundle.load import open_bundle
from voxseg.bundle.manifest import BundleManifest
from voxseg.errors import VoxsegError

if TYPE_CHECKING:
    import torch

__all__ = ["verify_bundle", "dry_run_shape"]


def _divisor(strides: Any, axis: int) -> int:
    """How many times the network downsamples ``axis`` (product of its strides)."""
    total = 1
    for s in strides or ():
        total *= int(s[axis]) if isinstance(s, (list, tuple)) else int(s)
    return max(total, 1)


def dry_run_shape(manifest: BundleManifest) -> tuple[int, ...]:
    """A small input shape the network accepts: the fixed shape, or twice its downsampling factor
    per axis (at least 8 voxels), capped at the patch size."""
    cfg = manifest.config
    if cfg.fixed_shape is not None:
        return tuple(cfg.fixed_shape)
    strides = cfg.network.kwargs.get("strides")
    shape = []
    for axis, patch in enumerate(cfg.patch_size):
        d = _divisor(strides, axis)
        shape.append(min(patch, d * max(2, math.ceil(8 / d))))
    return tuple(shape)


def _forward(net: torch.nn.Module, manifest: BundleManifest, fold: int) -> str | None:
    import torch

    spec = manifest.config.network
    shape = dry_run_shape(manifest)
    x = torch.zeros((1, spec.in_channels, *shape))
    x += torch.linspace(-1, 1, x.numel()).reshape(x.shape)
    try:
        with torch.no_grad():
            y = net(x)
    except Exception as exc:  # any failure of the network is a finding, not a crash
        return f"fold {fold}: forward pass on a {list(shape)} input failed ({' '.join(str(exc).split())[:200]})"
    if isinstance(y, (list, tuple)):
        y = y[0]
    expected = (1, spec.out_channels, *shape)
    if tuple(y.shape) != expected:
        return f"fold {fold}: forward pass gave shape {list(y.shape)}, expected {list(expected)}"
    if not bool(torch.isfinite(y).all()):
        return f"fold {fold}: forward pass gave NaN or infinite values"
    return None


def verify_bundle(path: str | Path, *, forward: bool = True, limits: ArchiveLimits = ArchiveLimits()) -> list[str]:
    """Check a bundle; return the problems found (an empty list means it is sound).

    Checks, in order: archive safety and every file's sha256 (a failure here stops the check),
    the manifest schema, each fold's weights loading into the network built from the spec with
    strict key and shape matching, and (``forward=True``) a forward pass on a small input giving
    finite values of the expected shape. Reads zips in memory: nothing is written.
    """
    try:
        bundle = open_bundle(path, limits=limits)
    except VoxsegError as exc:
        return [str(exc)]
    problems = []
    for fold in bundle.manifest.folds:
        try:
            net = bundle.network(fold)
        except VoxsegError as exc:
            problems.append(str(exc))
            continue
        if forward and (problem := _forward(net, bundle.manifest, fold)) is not None:
            problems.append(f"{path}: {problem}")
    return problems
