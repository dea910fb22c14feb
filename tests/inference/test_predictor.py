"""Predictor: preprocessing -> sliding window -> restore -> labels -> postprocessing, on real components."""

from __future__ import annotations

import numpy as np
import pytest

from tests.inference.helpers import make_plan, sphere, threshold_spec, unet_spec, write_work
from voxseg.errors import ConfigError, InputImageError, VoxsegError
from voxseg.inference.predictor import Prediction, Predictor
from voxseg.io import Volume
from voxseg.nets import build_network
from voxseg.planning import Normalization
from voxseg.postprocessing import PostprocessingSpec, Step

SPACING = (2.0, 0.8, 0.9)
ORIGIN = (-12.5, 30.0, 4.25)
# a rotation about the first axis (columns are axis directions), not the identity
C, S = np.cos(0.4), np.sin(0.4)
DIRECTION = ((1.0, 0.0, 0.0), (0.0, C, -S), (0.0, S, C))


def dice(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))


def ball_volume(shape=(14, 30, 26), centre=(7, 14, 12), radius=8.0, spacing=SPACING, noise=0.05, seed=0):
    truth = sphere(shape, centre, radius, spacing)
    rng = np.random.default_rng(seed)
    arr = (truth.astype(np.float32) + rng.normal(0, noise, shape).astype(np.float32)).clip(-0.2, 1.2)
    return Volume(arr, spacing, ORIGIN, DIRECTION), truth


def predictor_for(plan, **options) -> Predictor:
    net = build_network(plan.configuration().network)
    return Predictor([net], plan, **options)


def test_3d_prediction_on_the_input_grid_exact_without_resampling():
    image, _ = ball_volume()
    plan = make_plan(target_spacing=SPACING)
    pred = predictor_for(plan, precision="fp32").predict(image, probabilities=True)
    assert isinstance(pred, Prediction)
    assert pred.labels.shape == image.shape and pred.labels.same_geometry(image)
    assert pred.labels.dtype == np.uint8
    np.testing.assert_array_equal(pred.labels.array, image.array > 0.5)
    assert pred.probabilities.shape == (2, *image.shape) and pred.probabilities.dtype == np.float16
    np.testing.assert_allclose(pred.probabilities.astype(np.float32).sum(0), 1.0, atol=2e-3)
    assert set(pred.seconds) == {"preprocess", "network", "restore", "postprocess", "total"}
    assert pred.probabilities is not None and not np.shares_memory(pred.labels.array, image.array)


def test_resampled_prediction_overlays_the_input():
    """Anisotropic spacing, non-zero origin, rotated direction, resampled to 1 mm and back."""
    image, truth = ball_volume()
    plan = make_plan(target_spacing=(1.0, 1.0, 1.0))
    pred = predictor_for(plan, precision="fp32").predict(image)
    assert pred.labels.shape == image.shape
    assert pred.labels.spacing == image.spacing and pred.labels.origin == image.origin
    assert pred.labels.direction == image.direction
    assert dice(pred.labels.array, truth) > 0.95
    # the object's centre of mass lands on the same voxel
    com = np.argwhere(pred.labels.array).mean(0)
    np.testing.assert_allclose(com, np.argwhere(truth).mean(0), atol=0.5)


def test_2d_plan_on_2d_image_and_3d_image_is_refused_for_3d_model():
    truth = sphere((40, 36), (20, 17), 9.0)
    image = Volume(truth.astype(np.float32), (0.5, 0.5))
    plan = make_plan(ndim=2, target_spacing=(0.5, 0.5), patch_size=(16, 16))
    pred = predictor_for(plan, precision="fp32").predict(image)
    assert pred.labels.shape == (40, 36)
    np.testing.assert_array_equal(pred.labels.array, truth)
    plan3 = make_plan(target_spacing=(1, 1, 1))
    with pytest.raises(InputImageError) as err:
        predictor_for(plan3).predict(image)
    message = str(err.value)  # one plain sentence: what is wrong, then what to do
    expected = "the image is 2D (40×36) but this model segments 3D images: give it a 3D image or choose a 2D model"
    assert message == expected


def test_2d_configuration_on_3d_data_runs_slice_by_slice():
    image, truth = ball_volume(spacing=(1.0, 1.0, 1.0), noise=0.0)
    plan = make_plan(ndim=2, target_spacing=(1.0, 1.0), patch_size=(16, 16), data_ndim=3)
    ticks = []
    pred = predictor_for(plan, precision="fp32").predict(image, progress=lambda d, t: ticks.append((d, t)))
    np.testing.assert_array_equal(pred.labels.array, truth)
    assert ticks[-1][0] == ticks[-1][1] and ticks[-1][1] % image.shape[0] == 0
    assert [d for d, _ in ticks] == sorted(d for d, _ in ticks)


def test_multichannel_model_uses_the_right_channel():
    image, _ = ball_volume(spacing=(1.0, 1.0, 1.0))
    other = image.with_array(np.zeros(image.shape, np.float32) + 0.1)
    plan = make_plan(channels=("T1", "T2"), network=threshold_spec(3, 2, 2, channel=1))
    pred = predictor_for(plan, precision="fp32").predict([other, image])
    np.testing.assert_array_equal(pred.labels.array, image.array > 0.5)
    with pytest.raises(InputImageError, match="expects 2 channel"):
        predictor_for(plan).predict(image)
    with pytest.raises(InputImageError, match="expects 2 channel"):
        predictor_for(plan).predict([image, image, image])


def test_fixed_shape_crops_and_pads_and_comes_back():
    image, truth = ball_volume(shape=(12, 40, 22), centre=(6, 20, 11), radius=5.0, spacing=(1, 1, 1), noise=0.0)
    plan = make_plan(fixed_shape=(16, 32, 32), patch_size=(16, 32, 32))
    pred = predictor_for(plan, precision="fp32").predict(image, probabilities=True)
    assert pred.labels.shape == image.shape
    np.testing.assert_array_equal(pred.labels.array, truth)
    # voxels cropped away before the network are background with probability 1
    assert float(pred.probabilities[0, :, :4].min()) == 1.0


def test_mask_zeroes_outside_and_must_match_geometry():
    image, _ = ball_volume(spacing=(1.0, 1.0, 1.0))
    keep = np.zeros(image.shape, np.uint8)
    keep[:, :14] = 1
    mask = image.with_array(keep)
    pred = predictor_for(make_plan(), precision="fp32").predict(image, mask=mask)
    np.testing.assert_array_equal(pred.labels.array, (image.array > 0.5) & (keep > 0))
    shifted = Volume(keep, image.spacing, (0.0, 0.0, 5.0), image.direction)
    with pytest.raises(InputImageError, match="mask geometry differs"):
        predictor_for(make_plan()).predict(image, mask=shifted)
    with pytest.raises(InputImageError, match="mask has shape"):
        predictor_for(make_plan()).predict(image, mask=Volume(keep[:-1], image.spacing))


def test_mask_channel_of_the_plan_comes_from_mask_and_restricts_normalization():
    rng = np.random.default_rng(1)
    arr = rng.uniform(0, 100, (10, 24, 24)).astype(np.float32)
    arr[:, :, 12:] += 1000  # very bright outside the brain: would dominate whole-image statistics
    brain = np.zeros(arr.shape, np.uint8)
    brain[:, :, :12] = 1
    image, mask = Volume(arr), Volume(brain)
    norms = [Normalization("percentile_minmax", percentile=99.0, mask_channel=1), Normalization("mask")]
    plan = make_plan(channels=("SWI", "mask"), normalization=norms, network=threshold_spec(3, 2, 2))
    pred = predictor_for(plan, precision="fp32").predict(image, mask=mask, probabilities=True)
    inside = arr[:, :, :12]
    lo, hi = inside.min(), np.percentile(inside, 99.0)
    expected = ((arr - lo) / (hi - lo)).clip(0, 1) > 0.5
    np.testing.assert_array_equal(pred.labels.array, expected & (brain > 0))
    with pytest.raises(InputImageError) as err:
        predictor_for(plan).predict(image)
    assert "expects 2 channel(s) (SWI, mask), got 1" in str(err.value)
    assert "give the 'mask' channel as a mask file with -b/--mask" in str(err.value)  # the CLI option that fixes it


def test_threshold_for_softmax_and_sigmoid_models():
    image, _ = ball_volume(spacing=(1.0, 1.0, 1.0), noise=0.0)
    arr = np.linspace(0, 1, image.array.size, dtype=np.float32).reshape(image.shape)
    ramp = image.with_array(arr)
    soft = make_plan(network=threshold_spec(3, 1, 2, scale=4.0))
    sig = make_plan(network=threshold_spec(3, 1, 1, centers=[0.5], scale=4.0))
    default = predictor_for(soft, precision="fp32").predict(ramp).labels.array
    np.testing.assert_array_equal(default, arr > 0.5)
    high = predictor_for(soft, precision="fp32", threshold=0.9).predict(ramp).labels.array
    assert 0 < np.count_nonzero(high) < np.count_nonzero(default)
    p_sig = predictor_for(sig, precision="fp32", threshold=0.9).predict(ramp, probabilities=True)
    assert p_sig.probabilities.shape == (1, *ramp.shape)
    np.testing.assert_array_equal(p_sig.labels.array, p_sig.probabilities[0].astype(np.float32) > 0.9)
    multi = make_plan(labels={"background": 0, "a": 1, "b": 2})
    with pytest.raises(ConfigError, match="threshold applies to binary"):
        predictor_for(multi, threshold=0.3)


def test_multiclass_with_non_consecutive_label_values():
    arr = np.zeros((8, 20, 20), np.float32)
    arr[:, 2:8] = 1.0
    arr[:, 12:18] = 2.0
    plan = make_plan(labels={"background": 0, "a": 1, "b": 5})
    pred = predictor_for(plan, precision="fp32").predict(Volume(arr))
    expected = np.where(arr == 1, 1, np.where(arr == 2, 5, 0))
    np.testing.assert_array_equal(pred.labels.array, expected)


def test_ensemble_of_two_folds_averages_probabilities(tmp_path):
    image, _ = ball_volume(spacing=(1.0, 1.0, 1.0))
    plan = make_plan()
    work = write_work(tmp_path / "work", plan, folds=(0, 1), fold_kwargs={1: {"centers": [0.0, 0.6]}})
    both = Predictor.from_work(work, precision="fp32").predict(image, probabilities=True)
    one = [Predictor.from_work(work, folds=[k], precision="fp32").predict(image, probabilities=True) for k in (0, 1)]
    mean = (one[0].probabilities.astype(np.float32) + one[1].probabilities.astype(np.float32)) / 2
    np.testing.assert_allclose(both.probabilities.astype(np.float32), mean, atol=2e-3)
    assert not np.allclose(one[0].probabilities.astype(np.float32), one[1].probabilities.astype(np.float32), atol=0.05)


def test_from_work_folds_postprocessing_and_errors(tmp_path):
    image, _ = ball_volume(spacing=(1.0, 1.0, 1.0))
    plan = make_plan()
    spec = PostprocessingSpec(final=[Step.of("instances", min_size=1)])
    work = write_work(tmp_path / "work", plan, folds=(0, 1, 2), unfinished=(2,), postprocessing=spec)
    predictor = Predictor.from_work(work, precision="fp32", tta=False)
    assert predictor.folds == (0, 1) and predictor.postprocessing == spec
    assert predictor.settings()["folds"] == [0, 1] and predictor.settings()["tta"] is False
    labels = predictor.predict(image).labels.array
    assert labels.dtype == np.uint16 and labels.max() == 1  # instance ids
    with pytest.raises(VoxsegError, match=r"fold\(s\) 2 .* not trained"):
        Predictor.from_work(work, folds=[2])
    with pytest.raises(ConfigError, match="no configuration '2d'"):
        Predictor.from_work(work, configuration="2d")
    with pytest.raises(ConfigError, match="not a voxseg work folder"):
        Predictor.from_work(tmp_path / "nothing")
    empty = write_work(tmp_path / "empty", plan, folds=(0,), unfinished=(0,))
    with pytest.raises(VoxsegError, match="no trained fold"):
        Predictor.from_work(empty)


def test_from_weights_refuses_weights_of_another_network(tmp_path):
    work = write_work(tmp_path / "work", make_plan(network=unet_spec()), folds=(0,))
    other = make_plan(network=unet_spec(out_channels=3), labels={"background": 0, "a": 1, "b": 2})
    weights = work / "runs" / "3d" / "fold_0" / "checkpoint" / "model.safetensors"
    with pytest.raises(VoxsegError, match="weights do not fit"):
        Predictor.from_weights(other, [weights])
    with pytest.raises(VoxsegError, match="weight file not found"):
        Predictor.from_weights(other, [tmp_path / "nope.safetensors"])


def test_real_unet_with_tta_and_bf16_request(tmp_path):
    image, _ = ball_volume(spacing=(1.0, 1.0, 1.0))
    plan = make_plan(network=unet_spec(), normalization=[Normalization("zscore")])
    work = write_work(tmp_path / "work", plan, folds=(0,))
    predictor = Predictor.from_work(work, precision="bf16", batch_size=2)
    assert predictor.precision in ("bf16", "fp32")
    pred = predictor.predict(image, probabilities=True)
    assert pred.labels.same_geometry(image)
    np.testing.assert_allclose(pred.probabilities.astype(np.float32).sum(0), 1.0, atol=5e-3)


def test_bad_options():
    plan = make_plan()
    with pytest.raises(ConfigError, match="overlap"):
        predictor_for(plan, overlap=1.0)
    with pytest.raises(ConfigError, match="precision"):
        predictor_for(plan, precision="fp8")
    with pytest.raises(ConfigError, match="batch_size"):
        predictor_for(plan, batch_size=0)
    with pytest.raises(ConfigError, match="non-empty list"):
        Predictor([], plan)
