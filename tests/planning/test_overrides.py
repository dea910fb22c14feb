"""apply_overrides: the --set KEY=VALUE syntax on real plans."""

from __future__ import annotations

import dataclasses

import pytest

from tests.planning.fakes import uniform
from voxseg.errors import ConfigError
from voxseg.planning import apply_overrides, make_plan, parse_value, translate_network
from voxseg.planning.overrides import LOSS_KEYS, TRAIN_KEYS


@pytest.fixture
def plan():
    return make_plan(uniform((1.0, 1.0, 1.0), (96, 96, 96), channels={0: "CT", 1: "T2"}))


def test_parse_value() -> None:
    assert parse_value("4") == 4 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("null") is None and parse_value("[1, 2]") == [1, 2]
    assert parse_value("64,64,64") == [64, 64, 64] and parse_value("0.5,1") == [0.5, 1]
    assert parse_value("attention_unet") == "attention_unet" and parse_value(" a,b ") == ["a", "b"]


def test_the_brief_example(plan) -> None:
    new = apply_overrides(
        plan,
        [
            "network.name=attention_unet",
            "loss=dice_focal",
            "loss.lambda_other=10",
            "3d.patch_size=64,64,64",
            "configurations.3d.batch_size=4",
            "normalization.0.scheme=percentile_minmax",
        ],
    )
    assert new is not plan and plan.configuration("3d").network.name == "dynunet"  # input untouched
    c3, c2 = new.configuration("3d"), new.configuration("2d")
    assert c3.network.name == c2.network.name == "attention_unet"
    assert set(c3.network.kwargs) >= {"channels", "strides", "spatial_dims", "in_channels", "out_channels"}
    assert "filters" not in c3.network.kwargs and "deep_supervision" not in c3.network.kwargs
    assert c3.patch_size == (64, 64, 64) and c3.batch_size == 4
    assert c2.batch_size == plan.configuration("2d").batch_size
    assert len(c3.network.kwargs["strides"]) == len(c3.network.kwargs["channels"]) - 1
    assert new.training["loss"] == {"name": "dice_focal", "lambda_other": 10}
    assert new.normalization[0].scheme == "percentile_minmax" and new.normalization[1].scheme == "zscore"


def test_unqualified_keys_apply_where_dimensions_fit(plan) -> None:
    new = apply_overrides(plan, ["patch_size=48,48,48", "batch_size=3", "network.filters=8,16,32,64"])
    assert new.configuration("3d").patch_size == (48, 48, 48)
    assert new.configuration("2d").patch_size == plan.configuration("2d").patch_size  # 3 values: 3d only
    assert {c.batch_size for c in new.configurations.values()} == {3}
    assert all(c.network.kwargs["filters"] == [8, 16, 32, 64] for c in new.configurations.values())
    with pytest.raises(ConfigError, match="fits no configuration"):
        apply_overrides(plan, ["patch_size=1,2,3,4"])


def test_patch_size_change_repools_the_network(plan) -> None:
    new = apply_overrides(plan, ["3d.patch_size=32,32,32"]).configuration("3d")
    assert len(new.network.kwargs["strides"]) == 4  # 32 -> 4: three pools
    assert len(new.network.kwargs["filters"]) == 4 and new.network.kwargs["filters"][0] == 8
    padded = apply_overrides(plan, ["3d.patch_size=30,32,32"]).configuration("3d")
    assert padded.patch_size == (32, 32, 32)  # padded to the pooling multiple


def test_training_options_and_explicit_training_keys(plan) -> None:
    new = apply_overrides(plan, {"epochs": "10", "lr": 0.001, "training.optimizer": "adamw", "loss.focal_gamma": 1})
    assert new.training == {"epochs": 10, "lr": 0.001, "optimizer": "adamw", "loss": {"focal_gamma": 1}}
    assert apply_overrides(plan, ["seed=5"]).seed == 5
    assert apply_overrides(plan, ["normalization.scheme=zscore"]).normalization[0].scheme == "zscore"
    assert apply_overrides(plan, ["default_configuration=2d"]).default_configuration == "2d"
    assert apply_overrides(plan, []) is plan


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("colour=blue", "unknown key 'colour'; valid keys: 3d.<field>"),
        ("3d.colour=1", "unknown configuration field"),
        ("labels.tumor=3", "fact of the dataset"),
        ("loss.weight=2", "loss fields are"),
        ("training.colour=1", "unknown training option"),
        ("network.name=resnet", "unknown network"),
        ("normalization.5.scheme=ct", "not an index"),
        ("normalization.0.scheme=fancy", "unknown normalization scheme"),
        ("3d.batch_size=0", "batch_size"),
        ("no_equals_sign", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
    ],
)
def test_bad_overrides_are_config_errors(plan, item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("<", ".").replace(">", ".")):
        apply_overrides(plan, [item])


def test_network_translation_round_trip(plan) -> None:
    dyn = plan.configuration("3d").network.to_json()
    unet = translate_network(dyn, "unet")
    assert unet["kwargs"]["channels"] == dyn["kwargs"]["filters"]
    assert unet["kwargs"]["strides"] == [2] * (len(dyn["kwargs"]["strides"]) - 1)
    back = translate_network(unet, "dynunet")
    assert (
        back["kwargs"]["strides"] == dyn["kwargs"]["strides"] and back["kwargs"]["filters"] == dyn["kwargs"]["filters"]
    )
    aniso = make_plan(uniform((4.0, 1.0, 1.0), (20, 200, 200))).configuration("3d").network.to_json()
    assert [1, 2, 2] in translate_network(aniso, "attention_unet")["kwargs"]["strides"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["unet", "attention_unet", "dynunet"])
def test_switched_networks_build_and_run(name: str) -> None:
    torch = pytest.importorskip("torch")
    from voxseg.nets import build_network

    plan = make_plan(uniform((3.0, 1.0, 1.0), (24, 64, 64), n=3))
    switched = apply_overrides(plan, [f"network.name={name}", "3d.patch_size=16,32,32", "2d.patch_size=32,32"])
    filters = {
        n: [4, 8, 16, 16, 16, 16][: len(c.network.kwargs["strides"]) + (name != "dynunet")]
        for n, c in switched.configurations.items()
    }
    switched = apply_overrides(switched, {f"{n}.network.filters": f for n, f in filters.items()})
    for n, conf in switched.configurations.items():
        assert conf.network.kwargs["channels" if name != "dynunet" else "filters"] == filters[n]
        with torch.no_grad():
            out = build_network(conf.network).eval()(torch.zeros(1, 1, *conf.patch_size))
        assert tuple(out.shape[2:]) == conf.patch_size


def test_key_lists_match_the_training_dataclasses() -> None:
    pytest.importorskip("torch")
    from voxseg.training.config import TrainConfig
    from voxseg.training.losses import LossSpec

    assert set(TRAIN_KEYS) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(LOSS_KEYS) == {f.name for f in dataclasses.fields(LossSpec)}
