"""import_nnunet on tiny nnU-Net v2 model folders written the way nnU-Net writes them."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("dynamic_network_architectures")

from tests.nnunet.synthetic import build_network, make_model_folder
from voxseg.bundle import open_bundle
from voxseg.io import Volume
from voxseg.models import load_predictor
from voxseg.nnunet import import_nnunet


def _raw_network(folder: Path, fold: int = 0) -> torch.nn.Module:
    """nnU-Net's own network with the fold's weights (as nnUNetPredictor builds it)."""
    plans = json.loads((folder / "plans.json").read_text())
    dataset = json.loads((folder / "dataset.json").read_text())
    cfg = folder.name.split("__")[-1]
    net = build_network(plans, cfg, len(dataset["channel_names"]), len(dataset["labels"]))
    ck = torch.load(folder / f"fold_{fold}" / "checkpoint_final.pth", weights_only=False)
    net.load_state_dict(ck["network_weights"])
    net.decoder.deep_supervision = False
    return net.eval()


def test_3d_transposed_two_folds_same_logits_and_predicts(tmp_path):
    folder = make_model_folder(tmp_path, folds=(0, 1), transpose=(2, 0, 1), patch_size=(16, 16, 8))
    out = import_nnunet(folder, tmp_path / "model.zip")
    bundle = open_bundle(out)
    m = bundle.manifest
    assert m.folds == (0, 1) and m.configuration == "3d_fullres"
    cfg = m.plan.configuration()
    # nnU-Net's axes (2, 0, 1) -> the image's own order: patch (16, 16, 8) becomes (16, 8, 16)
    assert cfg.patch_size == (16, 8, 16) and cfg.network.kwargs["transpose"] == [2, 0, 1]
    assert cfg.mirror_axes == (0, 1, 2)
    # same logits as nnU-Net's network on the transposed tile
    ours = bundle.network(1).eval()
    x = torch.randn(1, 1, 16, 8, 16)
    with torch.inference_mode():
        expected = _raw_network(folder, 1)(x.permute(0, 1, 4, 2, 3))
        got = ours(x)
    torch.testing.assert_close(got, expected.permute(0, 1, 3, 4, 2), rtol=1e-5, atol=1e-5)
    predictor = load_predictor(out, tta=False, precision="fp32")
    image = Volume(np.random.default_rng(0).normal(100, 20, (10, 20, 18)).astype(np.float32), (1.0, 1.0, 1.0))
    labels = predictor.predict(image).labels
    assert labels.shape == image.shape and set(np.unique(labels.array)) <= {0, 1}


def test_2d_multichannel_multiclass_ct(tmp_path):
    folder = make_model_folder(
        tmp_path,
        configuration="2d",
        channels=2,
        classes=3,
        schemes=["CTNormalization", "ZScoreNormalization"],
        mirror_axes=(0, 1),
    )
    out = import_nnunet(folder, tmp_path / "m2d", name="tiny-2d", version="v3")
    m = open_bundle(out).manifest
    assert (m.name, m.version) == ("tiny-2d", "v3")
    plan = m.plan
    assert plan.data_ndim == 2 and plan.num_classes == 3 and plan.channel_names == {0: "CT", 1: "T2"}
    ct, z = plan.normalization
    assert (ct.scheme, ct.clip_low, ct.clip_high, ct.mean, ct.std) == ("ct", 10.0, 300.0, 120.0, 40.0)
    assert z.scheme == "zscore"
    assert plan.configuration().network.name == "nnunet_plain_unet"
    predictor = load_predictor(out, tta=True, precision="fp32")
    rng = np.random.default_rng(1)
    images = [Volume(rng.normal(100, 30, (40, 36)).astype(np.float32), (1.0, 1.0)) for _ in range(2)]
    labels = predictor.predict(images).labels
    assert labels.shape == (40, 36) and labels.array.max() <= 2


def test_residual_encoder_from_export_zip(tmp_path):
    folder = make_model_folder(tmp_path / "results", resenc=True, mirror_axes=None, patch_size=(8, 16, 16))
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # the layout of nnUNetv2_export_model_to_zip
        for path in folder.rglob("*"):
            if path.is_file():
                zf.write(path, path.relative_to(tmp_path / "results").as_posix())
        zf.writestr("Dataset999_Tiny/nnUNetTrainer__nnUNetPlans__3d_fullres/fold_0/debug.json", "{}")
    out = import_nnunet(archive, tmp_path / "resenc.zip")
    bundle = open_bundle(out)
    cfg = bundle.manifest.plan.configuration()
    assert cfg.network.name == "nnunet_resenc_unet" and cfg.mirror_axes == ()
    x = torch.randn(1, 1, 8, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(bundle.network(0).eval()(x), _raw_network(folder)(x), rtol=1e-5, atol=1e-5)


def test_postprocessing_pkl_translated(tmp_path, nnunet_pp):
    folder = make_model_folder(tmp_path, classes=3, patch_size=(8, 16, 16), postprocessing=nnunet_pp([2, 1]))
    out = import_nnunet(folder, tmp_path / "pp.zip")
    spec = open_bundle(out).manifest.postprocessing
    assert spec.to_json()["classes"] == {
        "1": [{"op": "keep_largest", "connectivity": 26}],
        "2": [{"op": "keep_largest", "connectivity": 26}],
    }
    assert import_nnunet(folder, tmp_path / "nopp.zip", postprocessing="none")
    assert open_bundle(tmp_path / "nopp.zip").manifest.postprocessing.is_identity


def test_folds_and_best_checkpoint_choice(tmp_path):
    folder = make_model_folder(tmp_path, folds=(0, 1, 2), patch_size=(8, 16, 16))
    out = import_nnunet(folder, tmp_path / "f.zip", folds=[2, 0])
    assert open_bundle(out).manifest.folds == (0, 2)
    (folder / "fold_1" / "checkpoint_final.pth").rename(folder / "fold_1" / "checkpoint_best.pth")
    out = import_nnunet(folder.parent, tmp_path / "best.zip", checkpoint="best")  # the Dataset folder above
    assert open_bundle(out).manifest.folds == (1,)
