"""``compute_fingerprint``: read every training case once and measure it (numpy only, no torch)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxseg.dataset import Case, Dataset, read_dataset
from voxseg.dataset.instances import read_label
from voxseg.errors import InputImageError, VoxsegError
from voxseg.io import read_image

from .model import CaseFingerprint, ChannelStats, Fingerprint, modality_of
from .symmetry import swap_fractions, swapping_axes

__all__ = ["compute_fingerprint", "MAX_INTENSITY_SAMPLES"]

log = logging.getLogger(__name__)

MAX_INTENSITY_SAMPLES = 2_000_000
"""Foreground voxels sampled per channel over the whole dataset (nnU-Net samples 10^7; 2 * 10^6
keeps the pooled samples at 8 MB per channel and the percentiles within ~0.1% of the full ones)."""

Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class _Measured:
    case: CaseFingerprint
    foreground: np.ndarray  # (channels, n) float32 samples of the label foreground
    nonzero: np.ndarray  # (channels, n) float32 samples of the nonzero region (fallback)
    swap: tuple[float, ...] | None = None  # per axis: classes a flip changes (voxseg.fingerprint.symmetry)


def _sample(mask: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Flat indices of up to ``n`` voxels of ``mask``, drawn without replacement."""
    index = np.flatnonzero(mask)
    if index.size > n:
        index = np.sort(rng.choice(index, size=n, replace=False))
    return index


def _finite_samples(arrays: Sequence[np.ndarray], index: np.ndarray) -> np.ndarray:
    """``(channels, n)`` float32 values at ``index``; voxels non-finite in any channel are dropped."""
    values = np.stack([np.asarray(a).ravel()[index].astype(np.float32) for a in arrays]) if len(index) else None
    if values is None:
        return np.zeros((len(arrays), 0), np.float32)
    keep = np.isfinite(values).all(axis=0)
    return values[:, keep]


def _integer_label(label: np.ndarray, path: Path | None) -> np.ndarray:
    """The label with an integer dtype (float files holding whole numbers are converted)."""
    if label.dtype == bool:
        return label.view(np.uint8)
    if label.dtype.kind in "iu":
        return label
    if not np.array_equal(label, np.round(label)) or (label.size and float(label.min()) < 0):
        raise InputImageError(path, "label holds negative or non-integer values", "labels hold class values 0, 1, ...")
    return label.astype(np.int32)


def _count_values(label: np.ndarray) -> dict[int, int]:
    """Voxels per value, counted slab by slab (no full-size int64 copy)."""
    if label.size and int(label.min()) < 0:
        raise InputImageError(None, "label holds negative values", "labels hold class values 0, 1, ...")
    counts = np.zeros(1, np.int64)
    for slab in label.reshape(label.shape[0], -1) if label.ndim > 1 else label.reshape(1, -1):
        c = np.bincount(slab)
        if c.size > counts.size:
            c[: counts.size] += counts
            counts = c.astype(np.int64)
        else:
            counts[: c.size] += c
    return {int(v): int(n) for v, n in enumerate(counts) if n}


def _measure(case: Case, ignore_label: int | None, per_case: int, seed: int, instances: bool = False) -> _Measured:
    """Read one case (every file once) and measure it."""
    from voxseg.fingerprint.cropping import crop_to_nonzero  # the exact crop rule preprocessing applies

    images = [read_image(p) for p in case.images]
    first = images[0]
    for k, img in enumerate(images[1:], start=1):
        if img.shape != first.shape:
            raise InputImageError(case.images[k], f"shape {img.shape} differs from channel 0 {first.shape}")
    arrays = [img.array for img in images]
    label = read_label(case.label, instances=instances).array if case.label is not None else None
    if label is not None and label.shape != first.shape:
        raise InputImageError(case.label, f"label shape {label.shape} differs from the image {first.shape}")
    lab = None if label is None else _integer_label(np.asarray(label), case.label)
    box, nonzero = crop_to_nonzero(arrays, lab, fill=False)
    rng = np.random.default_rng([seed, *case.case_id.encode()])
    class_voxels: dict[int, int] = {}
    if lab is not None:
        class_voxels = _count_values(lab)
        fg = lab > 0
        if ignore_label is not None:
            fg &= lab != ignore_label
        foreground = _finite_samples(arrays, _sample(fg, per_case, rng))
    else:
        foreground = np.zeros((len(arrays), 0), np.float32)
    nonzero_samples = _finite_samples([a[box.slices] for a in arrays], _sample(nonzero, per_case, rng))
    fingerprint = CaseFingerprint(
        case_id=case.case_id,
        spacing=tuple(float(s) for s in first.spacing),
        shape=tuple(int(s) for s in first.shape),
        shape_after_crop=box.shape,
        class_voxels=class_voxels,
        intensity=tuple(ChannelStats.of(v) for v in foreground),
    )
    swap = None if lab is None or instances else swap_fractions(lab, ignore_label)
    return _Measured(fingerprint, foreground, nonzero_samples, swap)


def _pool(samples: list[np.ndarray], channels: int) -> tuple[ChannelStats, ...]:
    pooled = np.concatenate(samples, axis=1) if samples else np.zeros((channels, 0), np.float32)
    return tuple(ChannelStats.of(pooled[c]) for c in range(channels))


def compute_fingerprint(
    dataset: Dataset | str | Path,
    *,
    num_workers: int = 2,
    seed: int = 0,
    progress: Progress | None = None,
    max_samples: int = MAX_INTENSITY_SAMPLES,
) -> Fingerprint:
    """Measure every training case of ``dataset``: spacing, shape, crop, intensities, class sizes.

    Each case's files are read once; cases are measured in ``num_workers`` threads (the readers
    and numpy release the GIL), so at most ``num_workers`` cases are in memory at a time.

    Parameters
    ----------
    dataset
        A :class:`~voxseg.dataset.Dataset` or its folder (nnU-Net v2 layout).
    num_workers
        Cases measured at the same time.
    seed
        Seeds the voxel sampling (per case, so the result does not depend on ``num_workers``).
    progress
        Called as ``progress(done, total)`` after each case.
    max_samples
        Foreground voxels sampled per channel over the whole dataset (divided evenly over cases).

    Raises
    ------
    VoxsegError
        After every case was tried, if some could not be read: one entry per case with its file.
    """
    if not isinstance(dataset, Dataset):
        dataset = read_dataset(dataset)
    spec = dataset.spec
    cases = sorted(dataset.training, key=lambda c: c.case_id)
    if not cases:
        raise VoxsegError(f"{dataset.root}: no training cases to fingerprint (expected imagesTr/CASE_0000...)")
    per_case = max(1, int(max_samples) // len(cases))
    results: dict[str, _Measured] = {}
    failed: list[str] = []

    def one(case: Case) -> tuple[Case, _Measured | None, str | None]:
        try:
            return case, _measure(case, spec.ignore_label, per_case, seed, spec.instances), None
        except InputImageError as exc:
            return case, None, str(exc)
        except Exception as exc:  # one bad case must not hide the others
            return case, None, f"{case.images[0]}: {type(exc).__name__}: {exc}"

    workers = max(1, int(num_workers or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, (case, measured, error) in enumerate(pool.map(one, cases), start=1):
            if error is not None:
                failed.append(f"{case.case_id}: {error}")
            else:
                results[case.case_id] = measured
            if progress is not None:
                progress(done, len(cases))
    if failed:
        raise VoxsegError(f"fingerprint failed for {len(failed)} of {len(cases)} cases: " + "; ".join(failed))
    measured = [results[c.case_id] for c in cases]
    channels = len(cases[0].images)
    source = "foreground"
    intensity = _pool([m.foreground for m in measured], channels)
    if intensity[0].count == 0:
        log.warning("%s: no label foreground in any case; intensity statistics use the nonzero region", dataset.root)
        source = "nonzero"
        intensity = _pool([m.nonzero for m in measured], channels)
    return Fingerprint(
        dataset_name=spec.name,
        channel_names=spec.channel_names,
        labels=spec.target_labels,
        instances=spec.instances,
        modalities=tuple(modality_of(spec.channel_names.get(c, "")) for c in range(channels)),
        cases=tuple(m.case for m in measured),
        intensity=intensity,
        intensity_source=source,
        mirror_swap=swapping_axes([m.swap for m in measured]),
    )
