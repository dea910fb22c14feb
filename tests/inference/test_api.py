"""voxseg.predict: arrays in -> arrays out, Volumes in -> Volumes out, paths in -> Volumes out."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import voxseg
from tests.inference.helpers import make_plan, sphere, write_work
from voxseg.errors import VoxsegError
from voxseg.inference.predictor import Predictor
from voxseg.io import Volume, write_image
from voxseg.models.resolve import resolve_model


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return write_work(tmp_path_factory.mktemp("api") / "work", make_plan(target_spacing=(1.0, 1.0, 1.0)))


def test_array_volume_and_path_inputs(work, tmp_path):
    truth = sphere((10, 24, 20), (5, 12, 10), 6.0, (2.0, 1.0, 1.0))
    arr = truth.astype(np.float32)
    mask = voxseg.predict(arr, model=work, spacing=(2.0, 1.0, 1.0), precision="fp32")
    assert isinstance(mask, np.ndarray) and mask.shape == arr.shape and mask.dtype == np.uint8
    assert 2 * np.count_nonzero((mask > 0) & truth) / (np.count_nonzero(mask) + np.count_nonzero(truth)) > 0.95
    vol = Volume(arr, (2.0, 1.0, 1.0), (5.0, -3.0, 1.0))
    out = voxseg.predict(vol, model=str(work), precision="fp32", tta=False)
    assert isinstance(out, Volume) and out.same_geometry(vol)
    write_image(vol, tmp_path / "x.nii.gz")
    from_file = voxseg.predict(tmp_path / "x.nii.gz", model=work, precision="fp32", tta=False)
    assert isinstance(from_file, Volume) and np.array_equal(from_file.array, out.array)
    keep = np.zeros(arr.shape, np.uint8)
    keep[:5] = 1
    masked = voxseg.predict(arr, model=work, spacing=(2.0, 1.0, 1.0), mask=keep, tta=False)
    assert not masked[5:].any() and masked[:5].any()
    instances = voxseg.postprocess(mask, min_size=10)
    assert instances.max() == 1


def test_a_predictor_can_be_passed_as_the_model(work):
    predictor = resolve_model(work, folds=[0], precision="fp32")
    assert isinstance(predictor, Predictor) and resolve_model(predictor) is predictor
    arr = np.zeros((8, 16, 16), np.float32)
    assert not voxseg.predict(arr, model=predictor).any()
    with pytest.raises(VoxsegError, match="cannot change an existing Predictor"):
        resolve_model(predictor, tta=False)


def test_missing_model_lists_what_was_tried(tmp_path):
    with pytest.raises(VoxsegError, match=r"model '.*nope' not found: tried a work folder .* \(no such folder\)"):
        resolve_model(tmp_path / "nope")
    (tmp_path / "dir").mkdir()
    with pytest.raises(VoxsegError, match=r"no plan\.json"):
        voxseg.predict(np.zeros((4, 4, 4)), model=tmp_path / "dir")


def test_import_voxseg_stays_light():
    code = "import sys, voxseg; assert 'predict' in voxseg.__all__; assert 'torch' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
