"""Interactive pipeline: plan --interactive, training with the prompt sampler, inference from points."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from voxseg.dataset.phantoms import make_phantom
from voxseg.errors import ConfigError
from voxseg.inference.predictor import Predictor
from voxseg.interactive import Click, extreme_points
from voxseg.interactive.pipeline import constrain, load_interactive_model, refine, segment_from_points
from voxseg.interactive.planning import interactive_plan
from voxseg.io import Volume
from voxseg.planning import ConfigurationPlan, Normalization, Plan

SIZE = (16, 48, 48)


def interactive_work(root, *, cases: int = 4, train: bool = True):
    """A real work folder: soft-tissue phantom, `plan --interactive`, one fold trained for 2 steps."""
    from voxseg.experiment.plan import plan_experiment
    from voxseg.experiment.train import train_fold

    data = make_phantom("soft-tissue-mri", root / "Dataset001_STS", cases=cases, size=SIZE)
    work = root / "work"
    plan_experiment(data, work, interactive="extreme-points", folds=2, num_workers=1)
    summary = None
    if train:
        overrides = {"epochs": 1, "iterations_per_epoch": 2, "batch_size": 1, "precision": "fp32"}
        summary = train_fold(work, 0, config_overrides=overrides, patch_validation=0)
    return data, work, summary


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return interactive_work(tmp_path_factory.mktemp("interactive"))


@pytest.mark.slow
def test_plan_and_train_an_interactive_model(trained):
    data, work, summary = trained
    plan = json.loads((work / "plan.json").read_text())
    assert plan["interactive"]["prompt"] == "extreme_points" and plan["interactive"]["encoding"] == "geodesic"
    assert list(plan["configurations"]) == ["3d"]
    kwargs = plan["configurations"]["3d"]["network"]["kwargs"]
    assert kwargs["in_channels"] == 2 and kwargs["out_channels"] == 2  # MRI + the point encoding; object/background
    assert plan["interactive"]["inward"][0] < plan["interactive"]["inward"][1]  # 1 mm: 0 of 3 mm, 1 of 0.8 mm
    assert plan["interactive"]["encoding_params"]["lamb"] == 0.5  # planned mixed geodesic distance
    # trained through the loop's sampler hook (a PatchSampler would feed 1 channel and fail)
    assert summary["status"] == "finished" and summary["steps"] == 2
    assert 0.0 <= summary["val_dice"] <= 1.0
    run = json.loads((work / "runs/3d/fold_0/run.json").read_text())
    assert run["validation"]["prompt"] == "six points"
    metrics = json.loads((work / "runs/3d/fold_0/validation/metrics.json").read_text())
    assert len(metrics["cases"]) == 2 and "extreme points" in metrics["prompt"]
    # the work folder is an interactive model for segment_from_points
    from voxseg.io import read_image

    image = read_image(sorted((data / "imagesTr").iterdir())[0])
    label = read_image(sorted((data / "labelsTr").iterdir())[0])
    points = extreme_points(label.array != 0)
    mask = segment_from_points(image, points, model=work, tta=False)
    assert mask.shape == image.shape and mask.geometry == image.geometry
    # exported as a bundle, it is the same interactive model
    from voxseg.bundle import export_bundle

    bundle = export_bundle(work, work.parent / "sts-interactive.zip", name="sts-interactive", version="v1", folds=[0])
    again = segment_from_points(image, points, model=bundle, tta=False)
    np.testing.assert_array_equal(again.array, mask.array)


def test_interactive_plan_needs_objects_and_3d(tmp_path):
    from voxseg.experiment.plan import plan_experiment

    data = make_phantom("soft-tissue-mri", tmp_path / "Dataset001_STS", cases=2, size=SIZE)
    with pytest.raises(ConfigError, match="3D images and a 3d configuration"):
        plan_experiment(data, tmp_path / "w2d", interactive="extreme-points", configurations=("2d",), folds=2)
    with pytest.raises(ConfigError, match="unknown interactive prompt"):
        plan_experiment(data, tmp_path / "wbad", interactive="scribbles", folds=2)
    assert not (tmp_path / "w2d").exists() and not (tmp_path / "wbad").exists()  # refused before any work


def _always_object() -> torch.nn.Module:
    """A real 1x1x1 convolution that calls every voxel the object (to see where the mask can be)."""
    net = torch.nn.Conv3d(2, 2, 1)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.copy_(torch.tensor([0.0, 5.0]))
    return net


def _plan(spacing=(2.0, 0.5, 0.7), margin_mm=3.0) -> Plan:
    network = {"name": "unet", "kwargs": {"spatial_dims": 3, "in_channels": 2, "out_channels": 2, "channels": [4, 8]}}
    network["kwargs"].update(strides=[2], num_res_units=0)
    conf = ConfigurationPlan("3d", spacing, (8, 16, 16), 1, network, mirror_axes=())
    return Plan(
        dataset_name="t",
        channel_names={0: "MRI"},
        labels={"background": 0, "tumor": 1},
        normalization=(Normalization("zscore"),),
        configurations={"3d": conf},
        default_configuration="3d",
        interactive={"encoding": "gaussian", "margin_mm": margin_mm, "jitter_mm": 0.0},
    )


DIRECTION = ((0.0, 0.0, 1.0), (0.0, -1.0, 0.0), (1.0, 0.0, 0.0))


def _image() -> Volume:
    rng = np.random.default_rng(0)
    array = rng.normal(100, 10, size=(20, 40, 36)).astype(np.float32)
    return Volume(array, (2.5, 0.6, 0.8), (5.0, -20.0, 7.5), DIRECTION)


POINTS = np.array([[6, 20, 18], [12, 21, 17], [9, 14, 18], [9, 26, 19], [9, 20, 12], [9, 20, 24]])


def test_segment_from_points_keeps_the_geometry_and_the_margin_box():
    image = _image()
    model = Predictor([_always_object()], _plan(), tta=False)
    mask = segment_from_points(image, POINTS, model=model)
    assert mask.geometry == image.geometry and mask.array.dtype == np.uint8
    assert mask.array[tuple(POINTS.T)].all()
    pad = np.ceil(3.0 / np.asarray(image.spacing)).astype(int)
    lo, hi = POINTS.min(0) - pad, POINTS.max(0) + pad
    inside = np.zeros(image.shape, bool)
    inside[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1] = True
    assert mask.array[~inside].sum() == 0  # nothing outside the points' box plus the margin
    assert mask.array[inside].mean() > 0.6  # and the box is (mostly) reached
    world = np.array([image.index_to_world(p) for p in POINTS])
    same = segment_from_points(image, world, model=model, space="world")
    np.testing.assert_array_equal(same.array, mask.array)


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (POINTS[:4], "fewer than the 6 needed"),
        (np.vstack([POINTS[:5], [[9, 20, 99]]]), "outside the image"),
        (np.repeat(POINTS[:1], 6, axis=0), "all 6 points are the same voxel"),
    ],
)
def test_bad_points_are_refused(points, message):
    model = Predictor([_always_object()], _plan(), tta=False)
    with pytest.raises(ConfigError, match=message):
        segment_from_points(_image(), points, model=model)


def test_an_automatic_model_is_refused():
    plan = _plan().replace(interactive=None)
    with pytest.raises(ConfigError, match="not an interactive model"):
        load_interactive_model(Predictor([_always_object()], plan, tta=False))


def test_refine_adds_positive_and_removes_negative_clicks():
    image = _image()
    model = Predictor([_always_object()], _plan(), tta=False)
    negative = (9, 20, 14)  # inside the box, nearer to it than to any extreme point
    outside = (9, 35, 18)  # beyond the margin: a positive click grows the box to reach it
    clicks = [Click(negative, False), Click(outside, True)]
    mask = refine(image, None, clicks, model=model, points=POINTS)
    assert mask.geometry == image.geometry
    assert mask.array[negative] == 0 and mask.array[outside] == 1
    assert mask.array[tuple(POINTS.T)].all()


def test_constrain_removes_only_the_negative_clicks_cell():
    mask = np.zeros((1, 1, 20), np.uint8)
    mask[0, 0, 2:18] = 1
    out = constrain(mask, np.zeros((0, 3), int), np.array([[0, 0, 16]]), np.array([[0, 0, 4]]), spacing=(1, 1, 1))
    assert out[0, 0, 2:10].all() and not out[0, 0, 11:18].any()


def test_interactive_plan_patch_covers_the_object(tmp_path):
    from voxseg.fingerprint import compute_fingerprint
    from voxseg.planning import make_plan

    data = make_phantom("soft-tissue-mri", tmp_path / "Dataset001_STS", cases=2, size=SIZE)
    fingerprint = compute_fingerprint(data, num_workers=1)
    plan = interactive_plan(make_plan(fingerprint), fingerprint, settings={"encoding": "gaussian"})
    assert plan.interactive["encoding"] == "gaussian"
    conf = plan.configuration()
    assert conf.network.in_channels == 2 and conf.patch_size[0] <= SIZE[0] + 4
