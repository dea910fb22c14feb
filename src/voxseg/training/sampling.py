"""Patch sampling from preprocessed cases, with foreground oversampling.

A fraction ``oversample_foreground`` of the patches is centred (with jitter) on a voxel of a
random foreground class, taken from the class locations stored with each case; the rest are
placed uniformly. Every patch is placed as prediction places its tiles (nnU-Net's rule): inside the
case along an axis at least as long as the patch, and centred with zero padding (label:
background) along a shorter one (:func:`patch_start_bounds`).

Why inside: patches centred uniformly on any voxel of the case cross its border half the time, so
a model trained on them sees zero padding (in a normalized CT, the intensity of soft tissue,
labelled background) in training but never in prediction, and never sees the tile that lies
flush in a corner of air. On the InVesalius head CT (``benchmarks/real_data.py``) such a model
labelled whole corner tiles of constant air as soft tissue with probability 0.95.

For a ``2d`` configuration on 3D data, a slice along axis 0 is drawn first (preferring
annotated slices when the case uses an ignore label), then a 2D patch in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from voxseg.errors import ConfigError
from voxseg.preprocessing.store import read_preprocessed

__all__ = ["CaseData", "PatchSampler", "load_cases", "patch_start_bounds"]


@dataclass(frozen=True)
class CaseData:
    """A preprocessed case as the sampler sees it (arrays usually memory-mapped)."""

    case_id: str
    data: np.ndarray  # (C, *spatial) float32
    label: np.ndarray  # (*spatial)
    locations: dict[int, np.ndarray]  # class -> (N, ndim) voxel indices


def load_cases(prefixes: Sequence[str], *, mmap: bool = True) -> list[CaseData]:
    """Open preprocessed cases (``OUT_DIR/CASE`` prefixes) for sampling."""
    out = []
    for prefix in prefixes:
        case = read_preprocessed(prefix, mmap=mmap)
        if case.label is None:
            raise ConfigError(f"{prefix}: preprocessed case has no label; it cannot be used for training")
        locs = {int(k): np.asarray(v) for k, v in case.class_locations.items() if len(v)}
        out.append(CaseData(str(prefix).rsplit("/", 1)[-1], case.data, case.label, locs))
    return out


def _crop_padded(array: np.ndarray, start: Sequence[int], size: Sequence[int], fill: float) -> np.ndarray:
    """``array[..., start:start+size]`` over the trailing axes, padded with ``fill`` outside."""
    lead = array.ndim - len(size)
    out = np.full(array.shape[:lead] + tuple(size), fill, dtype=array.dtype)
    src, dst = [slice(None)] * lead, [slice(None)] * lead
    for s, n, dim in zip(start, size, array.shape[lead:], strict=True):
        lo, hi = max(s, 0), min(s + n, dim)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = array[tuple(src)]
    return out


def patch_start_bounds(shape: Sequence[int], patch: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest patch start per axis, both inclusive: ``0 .. size - patch`` where the
    axis holds the patch, else the one centred start ``-((patch - size) // 2)`` that
    :func:`voxseg.inference.tiling.tile_grid` gives such an axis."""
    size, need = np.asarray(shape, np.int64), np.asarray(patch, np.int64)
    low = np.where(size >= need, 0, -((need - size) // 2))
    high = np.where(size >= need, size - need, low)
    return low, high


class PatchSampler:
    """Draw training patches from cases.

    Parameters
    ----------
    cases
        Cases from :func:`load_cases`.
    patch_size
        Patch shape; ``len(patch_size)`` equal to the cases' spatial dims, or one less (2D
        patches from slices of 3D cases).
    oversample_foreground
        Fraction of patches forced to contain a foreground voxel (nnU-Net uses 1/3).
    ignore_label
        Label of unannotated voxels; 2D slice sampling prefers slices with annotation.
    """

    def __init__(
        self,
        cases: Sequence[CaseData],
        patch_size: Sequence[int],
        *,
        oversample_foreground: float = 0.33,
        ignore_label: int | None = None,
    ):
        if not cases:
            raise ConfigError("no training cases to sample from")
        self.cases = list(cases)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.oversample = float(oversample_foreground)
        self.ignore_label = ignore_label
        spatial = self.cases[0].label.ndim
        if len(self.patch_size) not in (spatial, spatial - 1):
            raise ConfigError(f"patch size {self.patch_size} does not fit {spatial}D cases")
        self.slice_mode = len(self.patch_size) == spatial - 1
        self._annotated = [self._annotated_slices(c) for c in self.cases] if self.slice_mode else []

    def forced_count(self, batch_size: int) -> int:
        """Patches of a batch centred on foreground: ``batch - round(batch * (1 - fraction))``."""
        if self.oversample <= 0:
            return 0
        return max(1, batch_size - round(batch_size * (1 - self.oversample)))

    def _annotated_slices(self, case: CaseData) -> np.ndarray:
        if self.ignore_label is None:
            return np.arange(case.label.shape[0])
        keep = [z for z in range(case.label.shape[0]) if np.any(case.label[z] != self.ignore_label)]
        return np.asarray(keep if keep else range(case.label.shape[0]))

    def _center(self, case: CaseData, rng: np.random.Generator, force_fg: bool) -> np.ndarray | None:
        """A foreground voxel of a random class when forced (and the case has one), else None."""
        if force_fg and case.locations:
            cls = int(rng.choice(sorted(case.locations)))
            locs = case.locations[cls]
            return locs[rng.integers(len(locs))].astype(np.int64)
        return None

    def sample(self, rng: np.random.Generator, force_fg: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One patch: ``(C, *patch)`` float32 image and ``(1, *patch)`` label.

        ``force_fg`` None: centred on foreground with probability ``oversample_foreground``.
        """
        i = int(rng.integers(len(self.cases)))
        case = self.cases[i]
        if force_fg is None:
            force_fg = bool(rng.random() < self.oversample)
        center = self._center(case, rng, force_fg)
        data, label = case.data, case.label
        if self.slice_mode:
            z = int(center[0]) if center is not None else int(rng.choice(self._annotated[i]))
            data, label = data[:, z], label[z]
            center = None if center is None else center[1:]
        low, high = patch_start_bounds(label.shape, self.patch_size)
        if center is None:
            start = low + (rng.random(len(low)) * (high - low + 1)).astype(np.int64)
        else:
            half = np.asarray(self.patch_size) // 2
            start = np.clip(center - half + rng.integers(-(half // 2), half // 2 + 1), low, high)
        img = _crop_padded(np.asarray(data), start, self.patch_size, 0.0)
        seg = _crop_padded(np.asarray(label), start, self.patch_size, 0)
        return img.astype(np.float32, copy=False), seg[None].astype(np.int16)

    def batch(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """A batch whose last ``forced_count(batch_size)`` patches are centred on foreground.

        As nnU-Net does, the oversampling fraction is applied per batch rather than per patch, so
        with small batches (2 on a CPU) every batch still holds foreground: drawn per patch, a
        third of the batches of two would hold none, which starves the Dice term on rare, small
        objects.
        """
        forced = self.forced_count(batch_size)
        pairs = [self.sample(rng, force_fg=k >= batch_size - forced) for k in range(batch_size)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
