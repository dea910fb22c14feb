"""Adding a bundle's golden test and ONNX networks (used by ``voxseg export``, ``import-nnunet``
and ``tools/repackage_builtins.py``). Needs torch: the expected output is the torch fp32 pipeline's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.bundle.golden import PROMPTED, crop_case, make_golden
from voxseg.bundle.manifest import BundleManifest
from voxseg.errors import VoxsegError
from voxseg.io.volume import Volume

__all__ = ["golden_extent", "attach_golden", "attach_onnx", "validation_case", "provenance"]

log = logging.getLogger(__name__)


#: Network calls (tiles x mirrorings x folds) above which the golden test runs without TTA (then
#: with overlap 0), so that it stays at a few seconds.
MAX_GOLDEN_CALLS = 64


def golden_settings(manifest: BundleManifest, crop: Volume) -> tuple[bool, float]:
    """(tta, overlap) of the golden test: TTA on and overlap 0.5, as the bundle runs by default,
    unless that takes more than MAX_GOLDEN_CALLS network calls; then TTA off, then overlap 0
    (fixed-shape models tile their whole fixed shape whatever the crop)."""
    from voxseg.inference.tiling import tile_grid

    cfg = manifest.config
    nd = len(cfg.patch_size)
    spacing, shape = crop.spacing[-nd:], crop.shape[-nd:]
    resampled = [math.ceil(n * s / t) for n, s, t in zip(shape, spacing, cfg.target_spacing, strict=True)]
    grid = tuple(cfg.fixed_shape) if cfg.fixed_shape else tuple(resampled)
    slices = crop.shape[0] if crop.ndim > nd else 1  # a 2D configuration of 3D data: one grid per slice
    for tta, overlap in ((True, 0.5), (False, 0.5), (False, 0.0)):
        tiles = math.prod(len(g) for g in tile_grid(grid, cfg.patch_size, overlap)) * slices
        if tiles * (2 ** len(cfg.mirror_axes) if tta else 1) * len(manifest.folds) <= MAX_GOLDEN_CALLS:
            break
    return tta, overlap


def golden_extent(manifest: BundleManifest, spacing: Sequence[float]) -> list[int]:
    """Crop size (input voxels per axis) covering one patch of the network at the target spacing."""
    cfg = manifest.config
    patch = list(cfg.patch_size)
    target = list(cfg.target_spacing)
    if len(spacing) > len(patch):  # a 2D configuration of 3D data: a few slices
        patch, target = [4, *patch], [float(spacing[0]), *target]
    return [max(8, math.floor(p * t / s + 1e-3)) for p, t, s in zip(patch, target, spacing, strict=True)]


def _networks(manifest: BundleManifest, weights: Mapping[int, bytes | Path]):
    from safetensors.torch import load, load_file

    from voxseg.nets import build_network

    nets = []
    for fold in manifest.folds:
        src = weights[fold]
        net = build_network(manifest.config.network)
        net.load_state_dict(load(src) if isinstance(src, bytes) else load_file(str(src)), strict=True)
        nets.append(net.eval())
    return nets


def attach_golden(
    manifest: BundleManifest,
    weights: Mapping[int, bytes | Path],
    images: Sequence[Volume],
    label: np.ndarray | None,
    *,
    source: str,
    tta: bool | None = None,
    overlap: float | None = None,
) -> tuple[BundleManifest, dict[str, bytes]]:
    """The manifest with its ``golden`` section, and the golden files, for a crop of ``images``.

    ``tta``, ``overlap``: None = as the bundle runs by default (on, 0.5), unless that would take
    more than :data:`MAX_GOLDEN_CALLS` network calls (:func:`golden_settings`).
    """
    from voxseg.inference.predictor import Predictor

    points = None
    if manifest.task == "interactive":
        crop, points = PROMPTED.get(manifest.task).crop(manifest, images, label)
    else:
        crop = crop_case(images, label, extent=golden_extent(manifest, images[0].spacing))
    auto_tta, auto_overlap = golden_settings(manifest, crop[0])
    tta = auto_tta if tta is None else tta
    overlap = auto_overlap if overlap is None else overlap
    predictor = Predictor(
        _networks(manifest, weights),
        manifest.plan,
        configuration=manifest.configuration,
        postprocessing=manifest.postprocessing,
        precision="fp32",
        tta=tta,
        overlap=overlap,
    )
    shape = "x".join(str(int(n)) for n in crop[0].shape)
    section, files = make_golden(manifest, predictor, crop, source=f"{source}, crop {shape}", points=points)
    hashes = dict(manifest.files)
    from voxseg.bundle._util import sha256_bytes

    hashes.update({rel: sha256_bytes(data) for rel, data in files.items()})
    return dataclasses.replace(manifest, files=hashes, golden=section), files


def attach_onnx(manifest: BundleManifest, weights: Mapping[int, bytes | Path]) -> dict[str, bytes]:
    """``model_fold_K.onnx`` for every fold (the same weights, exported; needs the ``[onnx]`` extra)."""
    from voxseg.bundle.onnx_export import onnx_bytes

    return {manifest.onnx_file(f): onnx_bytes(manifest, weights[f]) for f in manifest.folds}


def validation_case(work_root: Path, configuration: str) -> tuple[list[Volume], np.ndarray | None, str] | None:
    """The first validation case of fold 0 of a work folder's raw dataset (images, label, case id),
    or None when the raw dataset is not reachable any more."""
    from voxseg.dataset.layout import read_dataset
    from voxseg.dataset.splits import read_splits
    from voxseg.io import read_image
    from voxseg.workdir.layout import WorkDir

    work = WorkDir(Path(work_root))
    try:
        dataset = read_dataset(work.source_dataset())
        folds = read_splits(work.splits_path) if work.splits_path.is_file() else []
        wanted = folds[0].val[0] if folds and folds[0].val else dataset.case_ids[0]
        case = dataset.case(wanted)
        images = [read_image(p) for p in case.images]
        label = np.asarray(read_image(case.label).array) if case.label is not None else None
    except (VoxsegError, OSError, IndexError) as exc:
        log.warning("no golden test: the training data is not readable (%s)", exc)
        return None
    return images, label, case.case_id


def plan_sha256(manifest: BundleManifest) -> str:
    """sha256 of the embedded plan's canonical JSON (sorted keys, no spaces)."""
    from voxseg.bundle._util import sha256_bytes

    text = json.dumps(manifest.plan.to_json(), sort_keys=True, separators=(",", ":"))
    return sha256_bytes(text.encode("utf-8"))


def provenance(
    manifest: BundleManifest, work_root: Path | None = None, *, parent: str | None = None, training_data: str = ""
) -> dict[str, Any]:
    """``provenance`` of ``bundle.json``: the training data's fingerprint sha256 (the work folder's
    ``fingerprint.json``, when known), the plan's sha256, the parent model (fine-tuning) or None."""
    from voxseg.bundle._util import sha256_file

    fingerprint = None if work_root is None else Path(work_root) / "fingerprint.json"
    return {
        "data_fingerprint_sha256": sha256_file(fingerprint)
        if fingerprint is not None and fingerprint.is_file()
        else None,
        "training_data": training_data,
        "plan_sha256": plan_sha256(manifest),
        "parent": parent,
        "voxseg": manifest.versions.get("voxseg"),
        "torch": manifest.versions.get("torch"),
    }
