"""Many-class models predict with memory that does not grow with the classes on the input grid
(issue 20: 116 AAL regions). Labels come from a running argmax over classes restored one at a time;
they equal the labels of the all-classes path, and the pre-flight counts the classes that way."""

from __future__ import annotations

import numpy as np

from tests.inference.helpers import make_plan, threshold_spec
from voxseg.inference.predictor import Predictor
from voxseg.inference.preflight import ModelFacts, _peak_bytes
from voxseg.io import Volume
from voxseg.io.headers import ImageHeader
from voxseg.nets import build_network
from voxseg.preprocessing import preprocess_case, restore_argmax, restore_probabilities

VALUES = (0, 1, 2, 5, 7, 9)  # label values of the 6 classes: not 0..5, so the lookup table is used


def _case(seed: int = 0) -> Volume:
    """Smooth values in 0..5 inside an ellipsoid, zero outside (so preprocessing crops)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:20, :36, :30]
    inside = ((z - 10) / 8.0) ** 2 + ((y - 18) / 15.0) ** 2 + ((x - 15) / 12.0) ** 2 <= 1
    field = 2.5 + 2.5 * np.sin(y / 5.0 + rng.uniform(0, 3)) * np.cos(x / 6.0) + 0.3 * np.cos(z / 3.0)
    return Volume(np.where(inside, np.clip(field, 0.05, 5), 0).astype(np.float32), spacing=(2.0, 0.7, 0.7))


def _predictor() -> Predictor:
    labels = {"background": 0, **{f"c{v}": v for v in VALUES[1:]}}
    plan = make_plan(labels=labels, target_spacing=(1.5, 1.0, 1.0), network=threshold_spec(3, 1, len(VALUES)))
    net = build_network(plan.configuration().network)
    return Predictor([net], plan, tta=False, precision="fp32")


def test_restore_argmax_equals_the_argmax_of_the_restored_classes() -> None:
    vol = _case()
    case = preprocess_case([vol], target_spacing=(1.5, 1.0, 1.0), normalization=make_plan().normalization)
    props = case.properties
    assert tuple(props.shape_after_resampling) != tuple(props.original_shape)  # a real restore
    rng = np.random.default_rng(1)
    probs = rng.random((6, *props.shape_after_resampling)).astype(np.float32)
    before = probs.copy()
    full = restore_probabilities(probs, props, dtype=np.float32, background_channel=0)
    assert np.array_equal(restore_argmax(probs, props, background_channel=0), full.argmax(axis=0))
    assert np.array_equal(probs, before)  # the input is left alone


def test_labels_only_prediction_equals_the_all_classes_path() -> None:
    predictor, vol = _predictor(), _case()
    fast = predictor.predict(vol)
    full = predictor.predict(vol, probabilities=True)
    assert full.probabilities.shape == (len(VALUES), *vol.shape)
    assert fast.labels.geometry == vol.geometry and fast.labels.array.dtype == np.uint8
    expected = np.asarray(VALUES, dtype=np.uint8)[full.probabilities.argmax(axis=0)]
    assert np.mean(fast.labels.array == expected) > 0.999  # float16 probabilities may tie
    assert np.mean(fast.labels.array == full.labels.array) > 0.999
    assert set(np.unique(fast.labels.array)) >= {0, 1, 5, 9}


def test_preflight_memory_counts_classes_on_the_preprocessed_grid_only() -> None:
    labels = {"background": 0, **{f"r{i}": i for i in range(1, 117)}}
    plan = make_plan(labels=labels, patch_size=(40, 48, 32), network=threshold_spec(3, 1, 117))
    header = ImageHeader(path=None, shape=(181, 217, 181), spacing=(1.0, 1.0, 1.0))
    labels_only = _peak_bytes([header], ModelFacts("toy", plan, "3d", 1, tta=False), (181, 217, 181))
    kept = _peak_bytes([header], ModelFacts("toy", plan, "3d", 1, tta=False, probabilities=True), (181, 217, 181))
    voxels = 181 * 217 * 181
    assert labels_only < 117 * voxels * 2 + 80 * voxels  # classes once, in float16; 4 tiles and volumes besides
    assert kept - labels_only > 117 * voxels * 2 * 0.9  # keeping the probabilities costs them all
    assert labels_only < 2.2e9 < kept  # was 5.7 GB (float32 for all, every class restored)
