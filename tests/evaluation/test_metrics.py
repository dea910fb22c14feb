"""Dice, HD95 and surface Dice: crafted cases, edge cases, and agreement with MONAI's metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from voxseg.errors import ConfigError, InputImageError
from voxseg.evaluation import dice, hd95, surface_dice
from voxseg.io import Volume

from ..postprocessing.helpers import ball, box, random_blobs


def test_dice_crafted_and_edge_cases():
    ref = np.zeros((4, 10, 10), np.uint8)
    ref[0:2, 0:5, 0:5] = 1  # 50 voxels
    ref[3, 0:4, 0:4] = 2  # 16 voxels
    pred = np.zeros_like(ref)
    pred[0:2, 0:5, 0:3] = 1  # 30 voxels, all inside
    pred[3, 6:8, 6:8] = 3  # class 3: absent from the reference
    assert dice(pred, ref, labels=[1, 2, 3, 4]) == {1: 2 * 30 / 80, 2: 0.0, 3: 0.0, 4: 1.0}
    assert dice(pred, ref) == {1: 0.75, 2: 0.0, 3: 0.0}  # default: labels present in either
    assert dice(pred, ref, labels={"background": 0, "a": 1}) == {1: 0.75}
    assert dice(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == {}
    assert dice(np.zeros((3, 3), bool), np.zeros((3, 3), bool), labels=[1]) == {1: 1.0}
    assert dice(ref > 0, ref > 0) == {1: 1.0}
    with pytest.raises(InputImageError, match="differs"):
        dice(pred[:2], ref)
    with pytest.raises(ConfigError, match="integers > 0"):
        dice(pred, ref, labels=[0])


def test_dice_ignore_label():
    ref = np.zeros((10, 10), np.uint8)
    ref[0:5] = 9  # unannotated
    ref[5:8, 0:4] = 1
    pred = np.zeros_like(ref)
    pred[0:5, 0:4] = 1  # predicted in the unannotated part: not counted
    pred[5:8, 0:4] = 1
    assert dice(pred, ref, labels=[1]) == {1: pytest.approx(2 * 12 / 44)}
    assert dice(pred, ref, labels=[1], ignore_label=9) == {1: 1.0}
    assert dice(pred, ref, labels={"background": 0, "a": 1, "ignore": 9}) == {1: 1.0}
    assert dice(pred, ref, ignore_label=9) == {1: 1.0}  # 9 is not scored as a class
    with pytest.raises(ConfigError, match="ignore label"):
        dice(pred, ref, labels=[1, 9], ignore_label=9)


def test_hd95_and_surface_dice_crafted():
    # two cubes shifted by 2 voxels along x with 0.5 mm spacing there
    a = box((12, 12, 16), (2, 2, 2), (10, 10, 10))
    b = box((12, 12, 16), (2, 2, 4), (10, 10, 12))
    spacing = (1.0, 1.0, 0.5)
    hd = hd95(a, b, spacing=spacing)[1]
    assert hd == pytest.approx(1.0)  # 2 voxels x 0.5 mm: the far faces are 1 mm apart
    assert hd95(a, b, spacing=spacing, percentile=100)[1] == pytest.approx(1.0)
    assert hd95(a, a, spacing=spacing) == {1: 0.0}
    assert surface_dice(a, b, tolerance_mm=1.0, spacing=spacing)[1] == 1.0
    assert surface_dice(a, a, tolerance_mm=0.0, spacing=spacing)[1] == 1.0
    assert 0 < surface_dice(a, b, tolerance_mm=0.4, spacing=spacing)[1] < 1
    # spacing comes from a Volume
    assert hd95(Volume(a.astype(np.uint8), spacing), Volume(b.astype(np.uint8), spacing))[1] == pytest.approx(1.0)


def test_surface_metrics_empty_cases():
    empty = np.zeros((8, 8, 8), np.uint8)
    full = empty.copy()
    full[2:5, 2:5, 2:5] = 1
    assert hd95(empty, empty, labels=[1]) == {1: 0.0}
    assert hd95(full, empty) == {1: math.inf} and hd95(empty, full) == {1: math.inf}
    assert surface_dice(empty, empty, tolerance_mm=1, labels=[1]) == {1: 1.0}
    assert surface_dice(full, empty, tolerance_mm=1) == {1: 0.0}
    with pytest.raises(ConfigError, match="tolerance_mm"):
        surface_dice(full, full, tolerance_mm=-1)
    with pytest.raises(ConfigError, match="spacing"):
        hd95(full, full, spacing=(1, 1))


def _one_hot(labels: np.ndarray, n: int):
    torch = pytest.importorskip("torch")
    t = torch.as_tensor(labels.astype(np.int64))
    return torch.nn.functional.one_hot(t, n).movedim(-1, 0)[None].float()


def _random_pair(seed: int, shape, n_classes: int):
    rng = np.random.default_rng(seed)
    ref = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    for c in range(1, n_classes + 1):
        ref[random_blobs(rng, shape, 3)] = c
        pred[random_blobs(rng, shape, 3) | (ref == c) & (rng.random(shape) < 0.7)] = c
    return pred, ref


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI's own deprecation notice
@pytest.mark.parametrize(
    ("seed", "shape", "spacing"),
    [(0, (24, 32, 28), (2.0, 0.8, 0.6)), (1, (20, 20, 20), (1.0, 1.0, 1.0)), (2, (48, 40), (0.5, 1.5))],
)
def test_agreement_with_monai(seed, shape, spacing):
    metrics = pytest.importorskip("monai.metrics")
    pred, ref = _random_pair(seed, shape, 2)
    yp, y = _one_hot(pred, 3), _one_hot(ref, 3)
    ours_dice = dice(pred, ref, labels=[1, 2])
    monai_dice = metrics.compute_dice(yp, y, include_background=False)[0].numpy()
    assert [ours_dice[1], ours_dice[2]] == pytest.approx(monai_dice.tolist(), abs=1e-6)
    ours_hd = hd95(pred, ref, spacing=spacing, labels=[1, 2])
    monai_hd = metrics.compute_hausdorff_distance(yp, y, percentile=95, spacing=list(spacing))[0].numpy()
    assert [ours_hd[1], ours_hd[2]] == pytest.approx(monai_hd.tolist(), rel=1e-5)
    ours_max = hd95(pred, ref, spacing=spacing, labels=[1, 2], percentile=100)
    monai_max = metrics.compute_hausdorff_distance(yp, y, spacing=list(spacing))[0].numpy()
    assert [ours_max[1], ours_max[2]] == pytest.approx(monai_max.tolist(), rel=1e-5)
    for tol in (0.5, 1.5):
        ours_nsd = surface_dice(pred, ref, tolerance_mm=tol, spacing=spacing, labels=[1, 2])
        monai_nsd = metrics.compute_surface_dice(yp, y, [tol, tol], spacing=list(spacing))[0].numpy()
        assert [ours_nsd[1], ours_nsd[2]] == pytest.approx(monai_nsd.tolist(), abs=1e-6)


def test_metrics_do_not_modify_inputs_and_handle_touching_border():
    pred = np.ones((6, 6, 6), np.uint8)  # fills the whole image: its surface is the image border
    ref = ball((6, 6, 6), (3, 3, 3), 2.5).astype(np.uint8)
    before = pred.copy(), ref.copy()
    assert hd95(pred, ref)[1] > 0
    assert np.array_equal(pred, before[0]) and np.array_equal(ref, before[1])
