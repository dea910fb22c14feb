"""``make_plan``: every planning decision, a pure function of a fingerprint and a compute budget.

All tuned numbers live in :class:`PlannerDefaults` (budget-independent rules) and
:class:`BudgetDefaults` (what one training step may cost: ``cpu`` for a 2-core CPU, ``gpu`` for
one GPU). See ``docs/planning.md`` for the rules and why. No torch here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxseg.errors import ConfigError
from voxseg.fingerprint import Fingerprint
from voxseg.planning.cost import StepCost, step_cost
from voxseg.planning.defaults import BUDGETS, CONFIGURATIONS, BudgetDefaults, PlannerDefaults
from voxseg.planning.network import NetworkSpec
from voxseg.planning.normalization import Normalization
from voxseg.planning.plan import ConfigurationPlan, Plan
from voxseg.planning.topology import Topology, fit_patch

__all__ = [
    "BudgetDefaults",
    "PlannerDefaults",
    "make_plan",
    "BUDGETS",
    "CONFIGURATIONS",
    "target_spacing",
    "plan_normalization",
]

log = logging.getLogger(__name__)


def target_spacing(fingerprint: Fingerprint, defaults: PlannerDefaults = PlannerDefaults()) -> tuple[float, ...]:
    """Median spacing; an anisotropic low-resolution axis gets a low percentile (nnU-Net's rule).

    The rule applies when the coarsest axis' spacing is more than ``anisotropy_threshold`` times
    the finest other one *and* that axis has ``anisotropy_threshold`` times fewer voxels than
    the smallest other axis (a genuinely thick-slice acquisition, not a thin slab).
    """
    spacings = fingerprint.spacings
    target = np.percentile(spacings, defaults.spacing_percentile, axis=0)
    sizes = np.percentile(fingerprint.shapes_after_crop, 50, axis=0)
    if target.size < 3:
        return tuple(float(v) for v in target)
    worst = int(np.argmax(target))
    others = [a for a in range(target.size) if a != worst]
    aniso_spacing = target[worst] > defaults.anisotropy_threshold * min(target[others])
    aniso_voxels = sizes[worst] * defaults.anisotropy_threshold < min(sizes[others])
    if aniso_spacing and aniso_voxels:
        low = float(np.percentile(spacings[:, worst], defaults.lowres_spacing_percentile))
        if low < max(target[others]):  # never finer than the finest in-plane axis
            low = max(float(max(target[others])), low) + 1e-5
        target[worst] = low
    return tuple(float(v) for v in target)


def plan_normalization(
    fingerprint: Fingerprint, defaults: PlannerDefaults = PlannerDefaults()
) -> tuple[Normalization, ...]:
    """One :class:`Normalization` per channel, from the channel's modality and the fingerprint."""
    mods = fingerprint.modalities
    mask_channels = [c for c, m in enumerate(mods) if m == "mask"]
    use_nonzero = fingerprint.median_crop_fraction < defaults.nonzero_crop_fraction
    out = []
    for c, modality in enumerate(mods):
        stats = fingerprint.intensity[c] if c < len(fingerprint.intensity) else None
        if modality == "mask":
            out.append(Normalization("mask"))
        elif modality == "ct" and stats is not None and stats.count and stats.std > 0:
            out.append(
                Normalization(
                    "ct",
                    mean=stats.mean,
                    std=stats.std,
                    clip_low=stats.percentile_00_5,
                    clip_high=stats.percentile_99_5,
                )
            )
        elif mask_channels and defaults.mask_channel_scheme == "percentile_minmax":
            out.append(
                Normalization("percentile_minmax", percentile=defaults.minmax_percentile, mask_channel=mask_channels[0])
            )
        else:
            if modality == "ct":
                log.warning("channel %d is CT but has no foreground statistics: z-score per case instead", c)
            out.append(Normalization("zscore", use_nonzero_mask=bool(use_nonzero)))
    return tuple(out)


def _median_resampled_shape(fingerprint: Fingerprint, spacing: Sequence[float]) -> np.ndarray:
    """Median over cases of the shape after cropping and resampling to ``spacing`` (full axes)."""
    shapes = fingerprint.shapes_after_crop * fingerprint.spacings / np.asarray(spacing, dtype=np.float64)
    return np.median(np.maximum(np.round(shapes), 1), axis=0)


def _filters(levels: int, base: int, cap: int) -> list[int]:
    return [min(base * 2**k, cap) for k in range(levels)]


def _fmt(values: Sequence[float]) -> str:
    return "x".join(f"{v:.3g}" for v in values)


def _coverage(patch: Sequence[int], median: Sequence[float]) -> float:
    """Fraction of the median image a patch covers per axis (geometric mean, at most 1 per axis)."""
    fraction = np.minimum(np.asarray(patch, dtype=np.float64) / np.maximum(np.asarray(median, np.float64), 1.0), 1.0)
    return float(np.prod(fraction) ** (1.0 / fraction.size))


def _fit_topology(spacing: Sequence[float], median: Sequence[float], max_voxels: float, d: PlannerDefaults) -> Topology:
    nd = len(spacing)
    return fit_patch(
        spacing,
        median,
        initial_voxels=d.initial_patch_voxels_2d if nd == 2 else d.initial_patch_voxels_3d,
        max_voxels=max_voxels,
        min_feature_map=d.min_feature_map,
        max_pools=d.max_pools,
        min_levels=d.min_levels,
    )


@dataclass
class _Sizing:
    """A configuration's size while it is fitted to the budget (patch, widths, batch)."""

    topo: Topology
    base: int
    cap: int
    batch: int

    def cost(self, in_channels: int, classes: int) -> StepCost:
        return step_cost(
            patch_size=self.topo.patch_size,
            strides=self.topo.strides,
            kernel_sizes=self.topo.kernel_sizes,
            filters=_filters(self.topo.levels, self.base, self.cap),
            in_channels=in_channels,
            classes=classes,
            batch_size=self.batch,
        )

    def describe(self) -> str:
        return f"patch {_fmt(self.topo.patch_size)}, batch {self.batch}, filters {self.base}-{self.cap}"


def _shrink(size: _Sizing, over_flop: bool, spacing, median, d: PlannerDefaults) -> bool:
    """One step down in cost: narrower (arithmetic only), then smaller batch, then smaller patch."""
    if over_flop and size.cap > 4 * size.base:
        size.cap //= 2
    elif over_flop and size.base > d.min_filters:
        size.base //= 2
    elif size.batch > d.min_batch_size:
        size.batch -= 1
    else:
        smaller = _fit_topology(spacing, median, 0.8 * math.prod(size.topo.patch_size), d)
        if math.prod(smaller.patch_size) >= math.prod(size.topo.patch_size):
            return False
        size.topo = smaller
    return True


def _fit_budget(size: _Sizing, spacing, median, budget: BudgetDefaults, d: PlannerDefaults, nets: tuple[int, int]):
    """Shrink ``size`` in place until a step's estimated arithmetic and memory fit the budget; notes."""
    in_channels, classes = nets
    first, before = size.cost(in_channels, classes), size.describe()
    cost = first
    for _ in range(200):
        over_flop = budget.max_step_gflop is not None and cost.gflop > budget.max_step_gflop
        over_mem = budget.max_step_bytes is not None and cost.activation_bytes > budget.max_step_bytes
        if not (over_flop or over_mem) or not _shrink(size, over_flop, spacing, median, d):
            break
        cost = size.cost(in_channels, classes)
    notes = []
    if size.describe() != before:
        limits = f"{budget.max_step_gflop:g} GFLOP" if budget.max_step_gflop is not None else "no arithmetic limit"
        if budget.max_step_bytes is not None:
            limits += f" and {budget.max_step_bytes / 1e9:.2g} GB"
        notes.append(
            f"sized to the budget's training step ({limits}): {before} would cost ~{first.gflop:.1f} GFLOP and "
            f"~{first.activation_bytes / 1e9:.2g} GB per step, {size.describe()} ~{cost.gflop:.1f} GFLOP"
        )
    notes.append(
        f"estimated training step: ~{cost.gflop:.1f} GFLOP, ~{cost.activation_bytes / 1e6:.0f} MB of activations "
        f"(~{cost.class_bytes / 1e6:.0f} MB of them for the {classes} output classes)"
    )
    return notes


def _network(
    topo: Topology, fingerprint: Fingerprint, budget: BudgetDefaults, filters: list[int], classes: int
) -> NetworkSpec:
    kwargs: dict[str, Any] = {
        "spatial_dims": len(topo.patch_size),
        "in_channels": len(fingerprint.channel_names),
        "out_channels": classes,
        "kernel_size": [list(k) for k in topo.kernel_sizes],
        "strides": [list(s) for s in topo.strides],
        "filters": filters,
        "deep_supervision": bool(budget.deep_supervision and topo.levels > 2),
        "deep_supr_num": max(1, min(budget.deep_supervision_heads, topo.levels - 2)),
    }
    return NetworkSpec("dynunet", kwargs)


def _batch_size(patch: Sequence[int], dataset_voxels: float, batch_voxels: int, d: PlannerDefaults, cap: int) -> int:
    voxels = math.prod(patch)
    batch = int(batch_voxels // voxels)
    by_dataset = int(d.max_batch_dataset_fraction * dataset_voxels // voxels)
    batch = min(batch, max(by_dataset, d.min_batch_size), cap)
    return max(batch, d.min_batch_size)


def _configuration(
    name: str,
    fingerprint: Fingerprint,
    full_spacing: tuple[float, ...],
    budget: BudgetDefaults,
    d: PlannerDefaults,
    notes: Sequence[str] = (),
) -> ConfigurationPlan:
    median_full = _median_resampled_shape(fingerprint, full_spacing)
    two_d = name == "2d"
    spacing = full_spacing[-2:] if two_d else full_spacing
    median = median_full[-2:] if two_d else median_full
    nd = len(spacing)
    topo = _fit_topology(spacing, median, budget.max_patch_voxels_2d if nd == 2 else budget.max_patch_voxels_3d, d)
    classes = len({v for v in fingerprint.labels.values() if v != fingerprint.ignore_label})
    dataset_voxels = float(np.prod(median_full)) * len(fingerprint.cases)
    batch_voxels = budget.batch_voxels_2d if nd == 2 else budget.batch_voxels_3d
    size = _Sizing(
        topo,
        budget.base_filters_2d if nd == 2 else budget.base_filters_3d,
        budget.max_filters_2d if nd == 2 else budget.max_filters_3d,
        _batch_size(topo.patch_size, dataset_voxels, batch_voxels, d, budget.max_batch_size),
    )
    fitted = _fit_budget(size, spacing, median, budget, d, (len(fingerprint.channel_names), classes))
    axes, mirror_notes = _mirror_axes(fingerprint, nd)
    return ConfigurationPlan(
        name=name,
        target_spacing=spacing,
        patch_size=size.topo.patch_size,
        batch_size=size.batch,
        network=_network(size.topo, fingerprint, budget, _filters(size.topo.levels, size.base, size.cap), classes),
        mirror_axes=axes,
        median_shape=tuple(int(v) for v in median),
        notes=(*notes, *fitted, *mirror_notes),
    )


def _mirror_axes(fingerprint: Fingerprint, nd: int) -> tuple[tuple[int, ...], list[str]]:
    """Every axis but those whose flip swaps classes (mirror pairs); a 2D configuration of 3D data
    has the last two axes of the volume."""
    offset = fingerprint.data_ndim - nd
    swapping = {a - offset: v for a, v in fingerprint.mirror_swap.items() if a >= offset}
    notes = [
        f"not mirrored along axis {a} (augmentation and TTA): flipping it changes the class of "
        f"{v:.0%} of the labelled voxels (mirror pairs such as left/right)"
        for a, v in sorted(swapping.items())
    ]
    return tuple(a for a in range(nd) if a not in swapping), notes


@dataclass(frozen=True)
class _Lowres:
    """The low-resolution spacing and what the full- and low-resolution patches cover."""

    spacing: tuple[float, ...]
    full_patch: tuple[int, ...]
    full_coverage: float
    coverage: float
    needed: bool


def _lowres(fingerprint: Fingerprint, full_spacing: tuple[float, ...], budget: BudgetDefaults, d: PlannerDefaults):
    """nnU-Net's 3d_lowres search: coarsen (x1.03, the finer axes first) until the patch covers enough."""
    full = np.asarray(full_spacing, dtype=np.float64)
    median = _median_resampled_shape(fingerprint, full)
    topo = _fit_topology(full, median, budget.max_patch_voxels_3d, d)
    full_cov = cov = _coverage(topo.patch_size, median)
    needed = budget.lowres_below_coverage is not None and full_cov < budget.lowres_below_coverage
    spacing = full.copy()
    while cov < d.lowres_target_coverage:
        ratio = spacing.max() / spacing
        step = np.where(ratio > 2, 1.03, 1.0) if np.any(ratio > 2) else np.full_like(spacing, 1.03)
        trial = spacing * step
        if np.max(trial / full) > d.max_lowres_factor:
            break
        spacing = trial
        median = _median_resampled_shape(fingerprint, spacing)
        cov = _coverage(_fit_topology(spacing, median, budget.max_patch_voxels_3d, d).patch_size, median)
    return _Lowres(tuple(float(v) for v in spacing), topo.patch_size, full_cov, cov, needed)


def _lowres_notes(low: _Lowres, full_spacing: Sequence[float], budget: str, default: bool) -> tuple[list, list]:
    """Notes for ``3d_lowres`` and ``3d`` explaining the choice."""
    why = (
        f"at the full-resolution spacing {_fmt(full_spacing)} mm the {budget} budget's patch "
        f"{_fmt(low.full_patch)} covers {low.full_coverage:.0%} of the median image per axis"
    )
    low_note = f"low resolution: {why}; at {_fmt(low.spacing)} mm the patch covers {low.coverage:.0%}"
    if not default:
        return [low_note], []
    full_note = (
        f"full resolution, not the default: {why} (3d_lowres covers {low.coverage:.0%}); train it with "
        "`-c 3d` when the budget allows many more steps"
    )
    return [low_note + " (the default configuration)"], [full_note]


def make_plan(
    fingerprint: Fingerprint,
    *,
    budget: str = "cpu",
    configurations: Sequence[str] | None = None,
    seed: int = 0,
    defaults: PlannerDefaults | None = None,
    native_bf16: bool = False,
) -> Plan:
    """Decide everything training and inference need, from a fingerprint (pure, deterministic).

    Parameters
    ----------
    fingerprint
        From :func:`voxseg.fingerprint.compute_fingerprint`.
    budget
        ``"cpu"`` (a 2-core CPU: small patches and networks) or ``"gpu"`` (nnU-Net-sized).
    configurations
        Which to plan: ``("3d", "2d")`` by default for 3D data (``"3d"`` is the default
        configuration), preceded by ``"3d_lowres"`` (then the default) when the budget's
        full-resolution patch covers too little of the image (``lowres_below_coverage``);
        ``("2d",)`` for 2D data.
    seed
        Recorded in the plan (splits and training use it).
    defaults
        The constants (:class:`PlannerDefaults`).
    native_bf16
        The training hardware computes bf16 natively (a fact of the machine, passed in so this
        function stays pure): budgets with ``bf16_when_native`` then train in bf16.

    Raises
    ------
    ConfigError
        Unknown budget or configuration, or ``"3d"`` asked for 2D data.
    """
    d = defaults or PlannerDefaults()
    b = d.budget(budget)
    nd = fingerprint.data_ndim
    for name in configurations or ():
        if name not in CONFIGURATIONS:
            raise ConfigError(f"unknown configuration {name!r} (choose from {', '.join(CONFIGURATIONS)})")
        if name != "2d" and nd == 2:
            raise ConfigError(f"dataset {fingerprint.dataset_name!r} holds 2D images: only the 2d configuration fits")
    full_spacing = target_spacing(fingerprint, d)
    low = _lowres(fingerprint, full_spacing, b, d) if nd == 3 else None
    if configurations:
        names = tuple(configurations)
    else:
        names = ((("3d_lowres",) if low is not None and low.needed else ()) + ("3d", "2d")) if nd == 3 else ("2d",)
    notes: dict[str, list[str]] = {}
    if low is not None and "3d_lowres" in names:
        notes["3d_lowres"], notes["3d"] = _lowres_notes(low, full_spacing, budget, names[0] == "3d_lowres")
    if fingerprint.instances:
        why = "instance labels: trained as background/interior/boundary, split back into objects at prediction"
        notes = {name: [*notes.get(name, ()), why] for name in names}
    confs = {
        name: _configuration(
            name, fingerprint, low.spacing if name == "3d_lowres" else full_spacing, b, d, notes.get(name, ())
        )
        for name in dict.fromkeys(names)
    }
    return Plan(
        dataset_name=fingerprint.dataset_name,
        channel_names=fingerprint.channel_names,
        labels=fingerprint.labels,
        normalization=plan_normalization(fingerprint, d),
        configurations=confs,
        default_configuration=names[0],
        data_ndim=nd,
        ignore_label=fingerprint.ignore_label,
        anisotropy_threshold=d.anisotropy_threshold,
        training={**b.training, **({"precision": "bf16"} if native_bf16 and b.bf16_when_native else {})},
        seed=int(seed),
        budget=budget,
        instances=fingerprint.instances,
    )
