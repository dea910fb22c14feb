"""The planner on real-sized fingerprints (issue 20): a 1 mm brain, an anisotropic head CT, a 512x512
microscopy image, 117 classes. The CPU budget must give patches that see a meaningful part of the
anatomy, a 2D network no costlier than the 3D one, and a step whose memory counts the classes."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from tests.planning.fakes import uniform
from voxseg.planning import Plan, PlannerDefaults, make_plan
from voxseg.planning.cost import step_cost

BRAIN = ((1.0, 1.0, 1.0), (181, 217, 181))
HEAD_CT = ((1.5, 0.957, 0.957), (108, 256, 256))
NUCLEI = ((1.0, 1.0), (512, 512))
AAL = {"background": 0, **{f"region{i}": i for i in range(1, 117)}}


def _cost(conf):
    kw = conf.network.kwargs
    return step_cost(
        patch_size=conf.patch_size,
        strides=kw["strides"],
        kernel_sizes=kw["kernel_size"],
        filters=kw["filters"],
        in_channels=kw["in_channels"],
        classes=kw["out_channels"],
        batch_size=conf.batch_size,
    )


def _coverage(conf) -> list[float]:
    return [min(1.0, p / m) for p, m in zip(conf.patch_size, conf.median_shape, strict=True)]


@pytest.mark.parametrize("spacing, shape", [BRAIN, HEAD_CT], ids=["brain-1mm", "head-ct"])
def test_cpu_plans_a_low_resolution_default_for_large_volumes(spacing, shape) -> None:
    plan = make_plan(uniform(spacing, shape))
    assert tuple(plan.configurations) == ("3d_lowres", "3d", "2d") and plan.default_configuration == "3d_lowres"
    low, full = plan.configuration("3d_lowres"), plan.configuration("3d")
    assert full.target_spacing == pytest.approx(spacing)  # full resolution kept, not the default
    factors = [lo / fu for lo, fu in zip(low.target_spacing, spacing, strict=True)]
    assert min(factors) > 1.5 and max(factors) <= PlannerDefaults().max_lowres_factor
    assert factors == pytest.approx([factors[0]] * 3, rel=1e-6)  # ratio > 2 nowhere: all axes coarsened alike
    assert math.prod(low.patch_size) <= PlannerDefaults().cpu.max_patch_voxels_3d
    assert min(_coverage(full)) < 0.25
    assert min(_coverage(low)) >= 0.4 and math.prod(_coverage(low)) >= 1 / 8 * 0.9  # ~1/8 of the image volume
    assert any("low resolution" in n and "default" in n for n in low.notes)
    assert any("full resolution, not the default" in n for n in full.notes)
    round_trip = Plan.from_json(plan.to_json())
    assert round_trip.configuration("3d_lowres").notes == low.notes


def test_gpu_plans_and_small_images_are_unchanged() -> None:
    gpu = make_plan(uniform(*BRAIN), budget="gpu")
    assert tuple(gpu.configurations) == ("3d", "2d") and gpu.default_configuration == "3d"
    g = gpu.configuration("3d")
    assert g.patch_size == (128, 128, 128) and g.network.kwargs["filters"] == [32, 64, 128, 256, 320, 320]
    assert gpu.configuration("2d").network.kwargs["filters"] == [32, 64, 128, 256, 512, 512]
    phantom = make_plan(uniform((0.1, 0.1, 0.1), (96, 112, 112)))  # a 40^3 patch sees 42% per axis
    assert tuple(phantom.configurations) == ("3d", "2d") and phantom.configuration("3d").patch_size == (40, 40, 40)
    asked = make_plan(uniform((0.1, 0.1, 0.1), (96, 112, 112)), configurations=("3d_lowres",))
    assert asked.default_configuration == "3d_lowres"  # asked for: planned even where not needed


def test_2d_network_is_sized_to_the_3d_step_budget() -> None:
    from voxseg.nets import build_network, count_parameters

    budget = PlannerDefaults().cpu
    c2 = make_plan(uniform(*NUCLEI)).configuration("2d")
    c3 = make_plan(uniform(*BRAIN)).configuration("3d")
    assert _cost(c2).gflop <= budget.max_step_gflop and _cost(c3).gflop <= budget.max_step_gflop
    assert math.prod(c2.patch_size) >= 128 * 128  # narrowed, not cut to a keyhole
    params_2d, params_3d = (count_parameters(build_network(c.network)) for c in (c2, c3))
    assert params_2d < 1.5e6 and params_2d < 4 * params_3d  # was 8.24 M, 7 levels, 16-256 filters
    assert any("sized to the budget's training step" in n for n in c2.notes)
    unlimited = replace(PlannerDefaults(), cpu=replace(budget, max_step_gflop=None))
    wide = make_plan(uniform(*NUCLEI), defaults=unlimited).configuration("2d")
    assert _cost(wide).gflop > 3 * _cost(c2).gflop and wide.network.kwargs["filters"][-1] == 256


def test_many_classes_count_in_the_step_memory() -> None:
    fp = uniform(*BRAIN, labels=AAL)
    conf = make_plan(fp).configuration()
    cost = _cost(conf)
    two = _cost(make_plan(uniform(*BRAIN)).configuration())
    assert cost.class_bytes > 40 * two.class_bytes and cost.activation_bytes > 3 * two.activation_bytes
    assert any("117 output classes" in n for n in conf.notes)
    tight = replace(PlannerDefaults(), cpu=replace(PlannerDefaults().cpu, max_step_bytes=200_000_000))
    small = make_plan(fp, defaults=tight).configuration()
    assert _cost(small).activation_bytes <= 200_000_000
    assert math.prod(small.patch_size) * small.batch_size < math.prod(conf.patch_size) * conf.batch_size
    assert any("0.2 GB" in n for n in small.notes)
