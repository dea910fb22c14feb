"""Every tuned number of the planner: :class:`PlannerDefaults` (budget-independent rules) and
:class:`BudgetDefaults` (what one training step may cost: :data:`CPU_BUDGET` for a 2-core CPU,
:data:`GPU_BUDGET` for one GPU). ``docs/planning.md`` says why each has its value. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from voxseg.errors import ConfigError

__all__ = ["BUDGETS", "CONFIGURATIONS", "BudgetDefaults", "PlannerDefaults", "CPU_BUDGET", "GPU_BUDGET"]

BUDGETS = ("cpu", "gpu")
CONFIGURATIONS = ("3d", "3d_lowres", "2d")


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
    max_step_gflop
        Estimated arithmetic of one training step (:func:`voxseg.planning.cost.step_cost`) every
        configuration must fit, 2D and 3D alike; None: no limit. CPU: 15, the 3D reference plan
        (40^3, filters 8-64, batch 2: 11.6 GFLOP, ~0.3 s per step on 2 idle cores) with a margin.
        Without it the 2D plan of a 512x512 image was a 7-level, 8.2 M-parameter network of
        50 GFLOP per step (6.5 s per step under load against 1-5 s for the 3D plans).
    max_step_bytes
        Estimated activation memory of one training step, the per-class head and loss included;
        None: no limit. CPU: 1 GB (116 classes made a step 2.7 GB RSS in the real-data smoke run).
    lowres_below_coverage
        When the full-resolution 3D patch covers less than this fraction of the median image per
        axis (geometric mean over the axes), plan a ``3d_lowres`` configuration at a coarser
        spacing and make it the default (nnU-Net's 3d_lowres idea); None: never. CPU: 0.25 (a
        40x48x32 patch in a 181x217x181 brain covers 0.21; the phantoms' 0.42 and more).
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
    max_step_gflop: float | None = None
    max_step_bytes: int | None = None
    lowres_below_coverage: float | None = None


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
    max_step_gflop=15.0,
    max_step_bytes=1_000_000_000,
    lowres_below_coverage=0.25,
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
    min_filters
        Fewest feature maps of the first level when a network is narrowed to the step budget.
    lowres_target_coverage
        A ``3d_lowres`` spacing is coarsened (x1.03 per step, the finer axes first, as nnU-Net)
        until the patch covers this fraction of the median image per axis (0.5: an eighth of
        its volume, what a 96^3 patch sees of a 1 mm brain) ...
    max_lowres_factor
        ... or until the spacing is this many times the full-resolution one.
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
    min_filters: int = 8
    lowres_target_coverage: float = 0.5
    max_lowres_factor: float = 4.0
    max_batch_dataset_fraction: float = 0.05
    cpu: BudgetDefaults = CPU_BUDGET
    gpu: BudgetDefaults = GPU_BUDGET

    def budget(self, name: str) -> BudgetDefaults:
        if name not in BUDGETS:
            raise ConfigError(f"unknown budget {name!r} (choose from {', '.join(BUDGETS)})")
        return getattr(self, name)
