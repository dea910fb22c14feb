"""``make_plan``: every planning decision, a pure function of a fingerprint and a compute budget.

All tuned numbers live in :class:`PlannerDefaults` (budget-independent rules) and
:class:`BudgetDefaults` (what one training step may cost: ``cpu`` for a 2-core CPU, ``gpu`` for
one GPU). See ``docs/planning.md`` for the rules and why. No torch here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxseg.errors import ConfigError
from voxseg.fingerprint import Fingerprint
from voxseg.planning.network import NetworkSpec
from voxseg.planning.normalization import Normalization
from voxseg.planning.plan import ConfigurationPlan, Plan
from voxseg.planning.topology import Topology, fit_patch

__all__ = ["BudgetDefaults", "PlannerDefaults", "make_plan", "BUDGETS", "target_spacing", "plan_normalization"]

log = logging.getLogger(__name__)

BUDGETS = ("cpu", "gpu")


@dataclass(frozen=True)
class BudgetDefaults:
    """What one training step may cost on one kind of hardware.

    Parameters
    ----------
    max_patch_voxels_3d, max_patch_voxels_2d
        Largest training patch (voxels / pixels). CPU: 40^3 and 256^2 (a DynUNet step costs in
        proportion to the patch voxels: 64^3 took ~3 s per step on 2 cores, 40^3 well under 1 s,
        see ``docs/planning.md``); GPU: 128^3 and 512^2 (nnU-Net's typical sizes for ~10 GB).
    batch_voxels_3d, batch_voxels_2d
        Voxels per step (batch size x patch voxels) the batch size is sized to; a patch smaller
        than the largest gets a bigger batch, up to ``max_batch_size``.
    max_batch_size
        Upper limit of the batch size.
    base_filters_3d, base_filters_2d
        Feature maps of the first level; doubled per level. CPU 3D: 8 (the full-resolution
        level dominates a step's cost).
    max_filters_3d, max_filters_2d
        Upper limit of feature maps per level (nnU-Net: 320 in 3D, 512 in 2D).
    deep_supervision
        Deep supervision heads (loss on the lower decoder levels too): helps on a GPU, costs on a CPU.
    deep_supervision_heads
        Extra output heads when deep supervision is on (DynUNet's ``deep_supr_num``).
    training
        :class:`voxseg.training.TrainConfig` fields this budget sets (written into ``plan.training``).
        CPU: AdamW at 2e-3. nnU-Net's SGD (0.01, Nesterov momentum 0.99) is tuned for 250,000
        steps; in the few thousand steps of a CPU budget it had not started segmenting the
        ``mouse-lung-ct`` nodules after 800 steps (Dice 0), while AdamW reached a validation Dice
        of 0.31 (0.58 over all voxels) after 1,600 (``docs/planning.md``).
    bf16_when_native
        When the training hardware computes bf16 natively (``make_plan(..., native_bf16=True)``),
        train with ``precision: bf16``. Off for the CPU budget: on this AVX-512 bf16 CPU autocast
        halved the forward pass but not the backward pass (~10% per step), and a plan that does
        not depend on the planning machine is worth more.
    """

    max_patch_voxels_3d: int
    max_patch_voxels_2d: int
    batch_voxels_3d: int
    batch_voxels_2d: int
    max_batch_size: int
    base_filters_3d: int
    base_filters_2d: int
    max_filters_3d: int
    max_filters_2d: int
    deep_supervision: bool
    deep_supervision_heads: int = 2
    training: dict[str, Any] = field(default_factory=dict)
    bf16_when_native: bool = False


CPU_BUDGET = BudgetDefaults(
    max_patch_voxels_3d=40**3,
    max_patch_voxels_2d=256**2,
    batch_voxels_3d=2 * 40**3,
    batch_voxels_2d=8 * 128**2,
    max_batch_size=16,
    base_filters_3d=8,
    base_filters_2d=16,
    max_filters_3d=128,
    max_filters_2d=256,
    deep_supervision=False,
    training={"optimizer": "adamw", "lr": 2e-3},
)

GPU_BUDGET = BudgetDefaults(
    max_patch_voxels_3d=128**3,
    max_patch_voxels_2d=512**2,
    batch_voxels_3d=2 * 128**3,
    batch_voxels_2d=12 * 512**2,
    max_batch_size=64,
    base_filters_3d=32,
    base_filters_2d=32,
    max_filters_3d=320,
    max_filters_2d=512,
    deep_supervision=True,
    training={"precision": "bf16", "epochs": 1000, "iterations_per_epoch": 250},
)


@dataclass(frozen=True)
class PlannerDefaults:
    """Every constant the planner uses, with its reason (see ``docs/planning.md``).

    Parameters
    ----------
    anisotropy_threshold
        A spacing ratio above this makes an axis "low resolution" (nnU-Net: 3).
    spacing_percentile
        Percentile of the case spacings taken as target spacing (50: the median).
    lowres_spacing_percentile
        For anisotropic data the low-resolution axis gets this percentile instead, so the
        coarsest cases are not interpolated up a lot (nnU-Net: 10).
    nonzero_crop_fraction
        When cropping to the nonzero region keeps less than this fraction of the voxels (median
        over cases), z-score statistics use the nonzero region only (nnU-Net: 3/4).
    minmax_percentile
        Upper percentile of ``percentile_minmax`` normalization (the microbleed models: 99).
    mask_channel_scheme
        Scheme of the non-CT image channels when the dataset has a channel named ``mask``:
        ``percentile_minmax`` inside that mask (the microbleed recipe) or ``zscore``.
    initial_patch_voxels_3d, initial_patch_voxels_2d
        Size the patch search starts from before clipping to the image and shrinking
        (nnU-Net: 256^3 and 2048^2).
    min_feature_map
        Smallest feature map edge at the bottleneck (nnU-Net: 4).
    max_pools
        Pooling operations per axis at most (6: a 256 edge down to 4).
    min_levels
        Fewest resolution levels of the U-Net (DynUNet needs 3); tiny images get a padded patch.
    min_batch_size
        Smallest batch (instance norm and the Dice loss need 2 patches).
    max_batch_dataset_fraction
        A batch covers at most this fraction of all (resampled) dataset voxels, so a tiny
        dataset is not seen whole in one step (nnU-Net: 0.05).
    cpu, gpu
        The budgets (:class:`BudgetDefaults`).
    """

    anisotropy_threshold: float = 3.0
    spacing_percentile: float = 50.0
    lowres_spacing_percentile: float = 10.0
    nonzero_crop_fraction: float = 0.75
    minmax_percentile: float = 99.0
    mask_channel_scheme: str = "percentile_minmax"
    initial_patch_voxels_3d: int = 256**3
    initial_patch_voxels_2d: int = 2048**2
    min_feature_map: int = 4
    max_pools: int = 6
    min_levels: int = 3
    min_batch_size: int = 2
    max_batch_dataset_fraction: float = 0.05
    cpu: BudgetDefaults = CPU_BUDGET
    gpu: BudgetDefaults = GPU_BUDGET

    def budget(self, name: str) -> BudgetDefaults:
        if name not in BUDGETS:
            raise ConfigError(f"unknown budget {name!r} (choose from {', '.join(BUDGETS)})")
        return getattr(self, name)


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


def _network(topo: Topology, fingerprint: Fingerprint, budget: BudgetDefaults, nd: int, classes: int) -> NetworkSpec:
    cap = budget.max_filters_3d if nd == 3 else budget.max_filters_2d
    kwargs: dict[str, Any] = {
        "spatial_dims": nd,
        "in_channels": len(fingerprint.channel_names),
        "out_channels": classes,
        "kernel_size": [list(k) for k in topo.kernel_sizes],
        "strides": [list(s) for s in topo.strides],
        "filters": _filters(topo.levels, budget.base_filters_3d if nd == 3 else budget.base_filters_2d, cap),
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
    name: str, fingerprint: Fingerprint, full_spacing: tuple[float, ...], budget: BudgetDefaults, d: PlannerDefaults
) -> ConfigurationPlan:
    median_full = _median_resampled_shape(fingerprint, full_spacing)
    two_d = name == "2d"
    spacing = full_spacing[-2:] if two_d else full_spacing
    median = median_full[-2:] if two_d else median_full
    nd = len(spacing)
    topo = fit_patch(
        spacing,
        median,
        initial_voxels=d.initial_patch_voxels_2d if nd == 2 else d.initial_patch_voxels_3d,
        max_voxels=budget.max_patch_voxels_2d if nd == 2 else budget.max_patch_voxels_3d,
        min_feature_map=d.min_feature_map,
        max_pools=d.max_pools,
        min_levels=d.min_levels,
    )
    classes = len({v for v in fingerprint.labels.values() if v != fingerprint.ignore_label})
    dataset_voxels = float(np.prod(median_full)) * len(fingerprint.cases)
    batch_voxels = budget.batch_voxels_2d if nd == 2 else budget.batch_voxels_3d
    return ConfigurationPlan(
        name=name,
        target_spacing=spacing,
        patch_size=topo.patch_size,
        batch_size=_batch_size(topo.patch_size, dataset_voxels, batch_voxels, d, budget.max_batch_size),
        network=_network(topo, fingerprint, budget, nd, classes),
        mirror_axes=tuple(range(nd)),
        median_shape=tuple(int(v) for v in median),
    )


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
        configuration), ``("2d",)`` for 2D data.
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
    names = tuple(configurations) if configurations else (("3d", "2d") if nd == 3 else ("2d",))
    for name in names:
        if name not in ("2d", "3d"):
            raise ConfigError(f"unknown configuration {name!r} (choose from 3d, 2d)")
        if name == "3d" and nd == 2:
            raise ConfigError(f"dataset {fingerprint.dataset_name!r} holds 2D images: only the 2d configuration fits")
    full_spacing = target_spacing(fingerprint, d)
    confs = {name: _configuration(name, fingerprint, full_spacing, b, d) for name in dict.fromkeys(names)}
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
    )
