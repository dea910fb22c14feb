"""``verify_bundle``: hashes, schema, strict weight loading and a dry-run forward pass."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from voxseg.bundle.archive import ArchiveLimits
from voxseg.bundle.load import open_bundle
from voxseg.bundle.manifest import BundleManifest
from voxseg.errors import VoxsegError

if TYPE_CHECKING:
    import torch

__all__ = ["verify_bundle", "dry_run_shape"]


def dry_run_shape(manifest: BundleManifest) -> tuple[int, ...]:
    """A small input shape the network accepts: the fixed shape, or twice its downsampling factor
    per axis (at least 8 voxels), capped at the patch size."""
    cfg = manifest.config
    if cfg.fixed_shape is not None:
        return tuple(cfg.fixed_shape)
    shape = []
    for axis, patch in enumerate(cfg.patch_size):
        d = cfg.network.downsampling(axis)
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
    finite values of the expected shape, and, for bundles with ONNX models when onnxruntime is
    installed, the ONNX model giving the same logits on a patch. Reads zips in place, hashing each
    member by streaming it (a bundle is never held in memory whole): nothing is written.
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
        if not forward:
            continue
        problem = _forward(net, bundle.manifest, fold)
        if problem is None and bundle.manifest.onnx_file(fold) in bundle.manifest.files:
            problem = _onnx_agrees(bundle, net, fold)
        if problem is not None:
            problems.append(f"{path}: {problem}")
    return problems


def _onnx_agrees(bundle, net: torch.nn.Module, fold: int) -> str | None:
    """The fold's ONNX model gives the torch network's logits on the dry-run input (when
    onnxruntime is installed; without it the ONNX file is only hash-checked)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    import numpy as np
    import torch

    m = bundle.manifest
    shape = tuple(m.config.patch_size)
    x = np.random.default_rng(0).normal(0, 1, (1, m.config.network.in_channels, *shape)).astype(np.float32)
    try:
        sess = ort.InferenceSession(bundle.read(m.onnx_file(fold)), providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    except Exception as exc:  # onnxruntime raises its own types
        return f"fold {fold}: {m.onnx_file(fold)} does not run ({' '.join(str(exc).split())[:200]})"
    with torch.no_grad():
        ref = net(torch.from_numpy(x))
    ref = (ref[0] if isinstance(ref, (list, tuple)) else ref).numpy()
    if got.shape != ref.shape or not np.allclose(got, ref, atol=1e-3, rtol=1e-3):
        return f"fold {fold}: {m.onnx_file(fold)} disagrees with the safetensors weights"
    return None
