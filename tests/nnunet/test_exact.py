"""nnU-Net's inference arithmetic (NnunetExactPredictor and its pieces)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dynamic_network_architectures")

from tests.nnunet.synthetic import make_model_folder
from voxseg.io import Volume
from voxseg.nnunet import import_nnunet
from voxseg.nnunet.exact import NnunetExactPredictor, nnunet_gaussian, nnunet_steps, resample_like_nnunet


def test_steps_follow_nnunets_rule():
    assert nnunet_steps(110, 64) == [0, 23, 46]  # nnU-Net's own documented example
    assert nnunet_steps(64, 64) == [0]
    assert nnunet_steps(96, 32) == [0, 16, 32, 48, 64]


def test_gaussian_keeps_its_tails_in_float16():
    g = nnunet_gaussian((16, 32, 32))
    assert g.dtype == np.float16 and float(g.max()) == 10.0 and float(g.min()) > 0
    assert float(g.min()) < 1e-3  # voxseg's sliding window floors at 1e-3; nnU-Net does not
    assert tuple(int(i) for i in np.unravel_index(int(g.argmax()), g.shape)) == (8, 16, 16)


def test_separate_low_res_axis_is_nearest_and_dtype_kept():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(1, 4, 10, 10)).astype(np.float32)
    out = resample_like_nnunet(data, (16, 10, 10), (4.0, 1.0, 1.0), (1.0, 1.0, 1.0), order=3)
    assert out.dtype == np.float32 and out.shape == (1, 16, 10, 10)
    for z in range(16):  # order_z 0: every output slice is one of the input slices
        assert any(np.allclose(out[0, z], data[0, k]) for k in range(4))
    same = resample_like_nnunet(data, (4, 10, 10), (3.0, 1.0, 1.0), (3.0, 1.0, 1.0), order=3)
    assert same is data
    up = resample_like_nnunet(data, (4, 20, 20), (1.0, 1.0, 1.0), (1.0, 0.5, 0.5), order=3)
    assert up.min() >= data.min() and up.max() <= data.max()  # clipped like skimage's resize


@pytest.mark.slow
def test_exact_predictor_runs_3d_and_2d(tmp_path):
    folder = make_model_folder(tmp_path / "a", patch_size=(8, 16, 16), classes=3, folds=(0, 1))
    predictor = NnunetExactPredictor.from_bundle(import_nnunet(folder, tmp_path / "a.zip"), tta=True)
    image = Volume(np.random.default_rng(1).normal(size=(6, 20, 18)).astype(np.float32), (2.0, 0.9, 0.9))
    pred = predictor.predict(image, probabilities=True)
    assert pred.labels.shape == image.shape and pred.labels.array.max() <= 2
    assert pred.probabilities.shape == (3, *image.shape)
    np.testing.assert_allclose(pred.probabilities.astype(np.float32).sum(0), 1, atol=1e-2)
    folder2d = make_model_folder(tmp_path / "b", configuration="2d", channels=2, mirror_axes=(0, 1))
    predictor = NnunetExactPredictor.from_bundle(import_nnunet(folder2d, tmp_path / "b.zip"), tta=False)
    images = [Volume(np.random.default_rng(k).normal(size=(40, 30)).astype(np.float32), (1.0, 1.0)) for k in range(2)]
    assert predictor.predict(images).labels.shape == (40, 30)
    volume = [Volume(np.random.default_rng(k).normal(size=(3, 40, 30)).astype(np.float32), (3, 1, 1)) for k in range(2)]
    assert predictor.predict(volume).labels.shape == (3, 40, 30)  # a 2D model on 3D data, slice by slice
