"""plans.json translation (no torch, no network built)."""

from __future__ import annotations

import pytest

from tests.nnunet.synthetic import architecture, dataset_json, plans_json
from voxseg.errors import BundleError
from voxseg.nnunet.plans import translate_plans


def test_lowres_configuration_and_transpose_mapping():
    plans = plans_json("3d_lowres", patch_size=(16, 32, 24), spacing=(4.0, 1.0, 2.0), transpose=(1, 2, 0))
    plan = translate_plans(plans, dataset_json(), "3d_lowres", mirror_axes=(0, 2))
    cfg = plan.configuration()
    assert cfg.name == "3d_lowres" and plan.default_configuration == "3d_lowres"
    # nnU-Net axis k is image axis transpose[k]: (1, 2, 0)
    assert cfg.target_spacing == (2.0, 4.0, 1.0) and cfg.patch_size == (24, 16, 32)
    assert cfg.mirror_axes == (0, 1)  # nnU-Net axes 0, 2 -> image axes 1, 0
    assert plan.anisotropy_threshold == 3.0


def test_old_style_plans_and_inheritance():
    plans = plans_json("3d_fullres", patch_size=(16, 32, 32), spacing=(1.0, 1.0, 1.0))
    conf = plans["configurations"]["3d_fullres"]
    kw = conf.pop("architecture")["arch_kwargs"]
    conf.update(
        UNet_class_name="PlainConvUNet",
        UNet_base_num_features=4,
        unet_max_num_features=16,
        conv_kernel_sizes=kw["kernel_sizes"],
        pool_op_kernel_sizes=kw["strides"],
        n_conv_per_stage_encoder=kw["n_conv_per_stage"],
        n_conv_per_stage_decoder=kw["n_conv_per_stage_decoder"],
    )
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    spec = translate_plans(plans, dataset_json(), "3d_fullres").configuration().network
    assert spec.name == "nnunet_plain_unet" and spec.kwargs["features_per_stage"] == [4, 8, 16]
    with pytest.raises(BundleError, match="cascade stage"):
        translate_plans(plans, dataset_json(), "3d_cascade_fullres")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p, d: d["labels"].update(tumor=[1, 2]), "region-based"),
        (lambda p, d: p["configurations"]["2d"].update(normalization_schemes=["RGBTo01Normalization"]), "RGBTo01"),
        (lambda p, d: p["configurations"]["2d"]["architecture"]["arch_kwargs"].update(nonlin="torch.nn.GELU"), "GELU"),
        (lambda p, d: p.update(transpose_forward=[1, 0, 2], transpose_backward=[1, 0, 2]), "along axis 1"),
    ],
)
def test_unsupported_content_is_refused(change, message):
    plans, dataset = plans_json("2d", patch_size=(32, 32), spacing=(1.0, 1.0), arch=architecture(2)), dataset_json()
    change(plans, dataset)
    with pytest.raises(BundleError, match=message) as exc:
        translate_plans(plans, dataset, "2d")
    assert "\n" not in str(exc.value)
