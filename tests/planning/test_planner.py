"""Planning rules on fabricated fingerprints: spacing, patch, topology, batch, normalization."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from tests.planning.fakes import fake_fingerprint, uniform
from voxseg.errors import ConfigError
from voxseg.fingerprint import ChannelStats
from voxseg.planning import Plan, PlannerDefaults, make_plan, pool_topology, target_spacing


def _pools(conf) -> tuple[int, ...]:
    strides = conf.network.kwargs["strides"]
    return tuple(int(np.prod([s[a] for s in strides])) for a in range(conf.spatial_dims))


def _check_divisible(conf) -> None:
    pools = _pools(conf)
    assert all(p % d == 0 for p, d in zip(conf.patch_size, pools, strict=True)), (conf.patch_size, pools)


def test_isotropic_3d_cpu_plan() -> None:
    plan = make_plan(uniform((0.1, 0.1, 0.1), (96, 112, 112)), budget="cpu")
    assert set(plan.configurations) == {"3d", "2d"} and plan.default_configuration == "3d"
    assert plan.budget == "cpu" and plan.data_ndim == 3
    c3 = plan.configuration("3d")
    assert c3.target_spacing == pytest.approx((0.1, 0.1, 0.1))
    assert math.prod(c3.patch_size) <= PlannerDefaults().cpu.max_patch_voxels_3d
    assert c3.patch_size == (40, 40, 40)
    assert c3.batch_size == 2 and c3.mirror_axes == (0, 1, 2)
    kw = c3.network.kwargs
    assert c3.network.name == "dynunet" and kw["deep_supervision"] is False
    assert kw["filters"] == [8, 16, 32, 64]  # doubling from 8: 40 -> 5 is three pools, four levels
    assert plan.training == {"optimizer": "adamw", "lr": 2e-3}  # converges within a CPU budget
    assert kw["strides"][0] == [1, 1, 1] and len(kw["kernel_size"]) == len(kw["strides"])
    _check_divisible(c3)
    c2 = plan.configuration("2d")
    assert c2.target_spacing == pytest.approx((0.1, 0.1)) and c2.patch_size == (112, 112)
    assert c2.spatial_dims == 2 and c2.median_shape == (112, 112)


def test_native_bf16_sets_cpu_training_precision() -> None:
    fp = uniform((1.0, 1.0, 1.0), (64, 64, 64))
    assert "precision" not in make_plan(fp, native_bf16=True).training  # off by default for the CPU budget
    bf16 = replace(PlannerDefaults(), cpu=replace(PlannerDefaults().cpu, bf16_when_native=True))
    assert make_plan(fp, native_bf16=True, defaults=bf16).training["precision"] == "bf16"
    assert "precision" not in make_plan(fp, native_bf16=False, defaults=bf16).training


def test_gpu_budget_scales_up() -> None:
    fp = uniform((1.0, 1.0, 1.0), (300, 300, 300))
    cpu, gpu = make_plan(fp, budget="cpu"), make_plan(fp, budget="gpu")
    c, g = cpu.configuration("3d"), gpu.configuration("3d")
    assert math.prod(g.patch_size) > 4 * math.prod(c.patch_size)
    assert g.patch_size == (128, 128, 128)
    assert max(g.network.kwargs["filters"]) == 320 and g.network.kwargs["filters"][0] == 32
    assert g.network.kwargs["deep_supervision"] is True
    assert gpu.budget == "gpu" and gpu.training.get("precision") == "bf16"
    with pytest.raises(ConfigError, match="budget"):
        make_plan(fp, budget="tpu")


def test_anisotropic_lowres_axis_gets_10th_percentile() -> None:
    z = [3.0, 4.0, 5.0, 5.0, 5.0, 5.0, 5.0, 6.0, 6.0, 6.0]
    fp = fake_fingerprint([(s, 0.7, 0.7) for s in z], [(30, 256, 256)] * 10)
    spacing = target_spacing(fp)
    assert spacing[0] == pytest.approx(np.percentile(z, 10))
    assert spacing[1:] == pytest.approx((0.7, 0.7))
    conf = make_plan(fp).configuration("3d")
    kw = conf.network.kwargs
    assert kw["strides"][1] == [1, 2, 2]  # the coarse axis is not pooled first
    assert kw["kernel_size"][0] == [1, 3, 3]  # and gets in-plane kernels first
    assert conf.patch_size[0] < conf.patch_size[1]
    _check_divisible(conf)


def test_thin_slab_is_not_treated_as_anisotropic() -> None:
    # coarse spacing but as many voxels along z as in-plane: nnU-Net keeps the median
    fp = fake_fingerprint([(s, 1.0, 1.0) for s in (4.0, 5.0, 6.0)], [(100, 100, 100)] * 3)
    assert target_spacing(fp)[0] == pytest.approx(5.0)


def test_2d_data() -> None:
    fp = uniform((4.0, 4.0), (256, 128), channels={0: "PET"})
    plan = make_plan(fp)
    assert tuple(plan.configurations) == ("2d",) and plan.data_ndim == 2
    conf = plan.configuration()
    assert conf.patch_size == (256, 128) and conf.mirror_axes == (0, 1)
    assert conf.batch_size >= 2
    _check_divisible(conf)
    with pytest.raises(ConfigError, match="2D images"):
        make_plan(fp, configurations=("3d",))
    with pytest.raises(ConfigError, match="2D images"):
        make_plan(fp, configurations=("3d_lowres",))
    with pytest.raises(ConfigError, match="unknown configuration"):
        make_plan(fp, configurations=("4d",))


def test_tiny_images_get_a_padded_patch_with_three_levels() -> None:
    plan = make_plan(uniform((1.0, 1.0, 1.0), (6, 10, 10)))
    conf = plan.configuration("3d")
    assert len(conf.network.kwargs["strides"]) >= 3
    assert all(p >= 16 for p in conf.patch_size)
    assert conf.median_shape == (6, 10, 10)
    _check_divisible(conf)


def test_huge_images_fit_the_budget() -> None:
    for budget, edge in (("cpu", 40), ("gpu", 128)):
        plan = make_plan(uniform((0.5, 0.5, 0.5), (1000, 1000, 1000), n=3), budget=budget)
        conf = plan.configuration("3d")
        assert conf.patch_size == (edge, edge, edge)
        c2 = plan.configuration("2d")
        assert math.prod(c2.patch_size) <= PlannerDefaults().budget(budget).max_patch_voxels_2d


def test_patch_follows_the_data_shape() -> None:
    conf = make_plan(uniform((1.0, 1.0, 1.0), (40, 400, 400))).configuration("3d")
    assert conf.patch_size[0] <= 40 < conf.patch_size[1]
    assert math.prod(conf.patch_size) <= PlannerDefaults().cpu.max_patch_voxels_3d


def test_batch_size_rules() -> None:
    d = PlannerDefaults()
    small_patch = make_plan(uniform((1.0, 1.0, 1.0), (20, 20, 20), n=500)).configuration("3d")
    assert small_patch.batch_size == d.cpu.max_batch_size  # small patches: bigger batches, capped
    few_cases = make_plan(uniform((1.0, 1.0, 1.0), (20, 20, 20), n=2)).configuration("3d")
    assert few_cases.batch_size == d.min_batch_size  # a batch never covers > 5% of a tiny dataset


def test_normalization_ct_mask_and_nonzero_rules() -> None:
    stats = ChannelStats(
        mean=40.0, std=100.0, min=-1000, max=2000, median=30, percentile_00_5=-500, percentile_99_5=800, count=10
    )
    ct = make_plan(uniform((1.0,) * 3, (32,) * 3, channels={0: "CT"}, stats=stats)).normalization[0]
    assert (ct.scheme, ct.mean, ct.std, ct.clip_low, ct.clip_high) == ("ct", 40.0, 100.0, -500, 800)

    swi = make_plan(uniform((1.0,) * 3, (32,) * 3, channels={0: "SWI", 1: "mask"})).normalization
    assert swi[0].scheme == "percentile_minmax" and swi[0].mask_channel == 1 and swi[0].percentile == 99.0
    assert swi[1].scheme == "mask"
    zs = make_plan(
        uniform((1.0,) * 3, (32,) * 3, channels={0: "SWI", 1: "mask"}),
        defaults=PlannerDefaults(mask_channel_scheme="zscore"),
    ).normalization
    assert zs[0].scheme == "zscore"

    cropped = fake_fingerprint([(1.0,) * 3] * 3, [(40,) * 3] * 3, crop_shapes=[(20, 40, 40)] * 3)
    assert make_plan(cropped).normalization[0].use_nonzero_mask is True  # half the voxels cropped away
    kept = fake_fingerprint([(1.0,) * 3] * 3, [(40,) * 3] * 3, crop_shapes=[(38, 40, 40)] * 3)
    assert make_plan(kept).normalization[0].use_nonzero_mask is False


def test_ct_without_statistics_falls_back_to_zscore() -> None:
    fp = uniform((1.0,) * 3, (32,) * 3, channels={0: "CT"}, stats=ChannelStats())
    assert make_plan(fp).normalization[0].scheme == "zscore"


def test_ignore_label_and_classes() -> None:
    fp = uniform((1.0,) * 3, (32,) * 3, labels={"background": 0, "wm": 1, "gm": 2, "ignore": 3})
    plan = make_plan(fp)
    assert plan.ignore_label == 3 and plan.num_classes == 3
    assert plan.configuration("3d").network.kwargs["out_channels"] == 3


def test_plan_json_round_trip_and_determinism() -> None:
    fp = uniform((0.8, 0.8, 2.5), (120, 160, 60))
    a, b = make_plan(fp, seed=7), make_plan(fp, seed=7)
    assert a == b and a.seed == 7
    assert Plan.from_json(json.loads(json.dumps(a.to_json()))) == a
    custom = make_plan(fp, defaults=replace(PlannerDefaults(), cpu=replace(PlannerDefaults().cpu, base_filters_3d=4)))
    assert custom.configuration("3d").network.kwargs["filters"][0] == 4


def test_pool_topology_rule() -> None:
    topo = pool_topology((1.0, 1.0, 1.0), (64, 64, 64))
    assert topo.levels == 5 and topo.divisor == (16, 16, 16)  # 64 -> 4: four pools
    aniso = pool_topology((4.0, 1.0, 1.0), (16, 128, 128))
    assert aniso.strides[1] == (1, 2, 2) and aniso.strides[2] == (1, 2, 2)
    assert aniso.kernel_sizes[0] == (1, 3, 3) and aniso.kernel_sizes[-1] == (3, 3, 3)
    assert pool_topology((1.0, 1.0), (30, 30)).patch_size == (32, 32)  # padded to the pooling multiple


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spacing", "shape"),
    [((1.0, 1.0, 1.0), (6, 10, 10)), ((5.0, 0.7, 0.7), (20, 200, 200)), ((1.0, 1.0), (256, 128))],
)
def test_planned_networks_build_and_run_on_their_patch(spacing, shape) -> None:
    torch = pytest.importorskip("torch")
    from voxseg.nets import build_network

    plan = make_plan(uniform(spacing, shape, n=4))
    for conf in plan.configurations.values():
        net = build_network(conf.network).eval()
        with torch.no_grad():
            out = net(torch.zeros(1, 1, *conf.patch_size))
        assert tuple(out.shape) == (1, plan.num_classes, *conf.patch_size)


def test_planning_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from tests.planning.fakes import uniform\n"
        "from voxseg.planning import make_plan, apply_overrides\n"
        "import voxseg.fingerprint\n"
        "p = apply_overrides(make_plan(uniform((1.0, 1.0, 1.0), (64, 64, 64))), ['network.name=unet', 'lr=0.1'])\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
