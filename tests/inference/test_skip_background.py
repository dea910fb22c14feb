"""Background-tile skipping (``--skip-background``): pure-air tiles are not run, on every backend."""

from __future__ import annotations

import logging
from importlib.resources import files

import numpy as np
import pytest

from voxseg.inference.options import PredictOptions
from voxseg.inference.skip import background_tile_test
from voxseg.io import Volume
from voxseg.planning.plan import Normalization


def _padded_golden():
    from voxseg.bundle import open_bundle
    from voxseg.bundle.golden import read_golden

    bundle = open_bundle(files("voxseg.bundle") / "models" / "mouse-lung-nodules-v1.zip")
    _, images, _ = read_golden(bundle)
    # a longer field of view: air before and after the golden CT, as in a real scan
    padded = [Volume(np.pad(v.array, ((128, 128), (0, 0), (0, 0)), constant_values=-1024.0), v.spacing) for v in images]
    return bundle, padded


def _skipped(caplog) -> int:
    counts = [int(r.getMessage().split()[2]) for r in caplog.records if "background tiles skipped" in r.getMessage()]
    return sum(counts)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_air_tiles_are_skipped_and_the_labels_do_not_change(backend, caplog):
    from voxseg.models import load_predictor

    bundle, padded = _padded_golden()
    opts = PredictOptions(tta=False, backend=backend, num_threads=1)
    full = load_predictor(bundle.source, opts).predict(padded).labels.array
    skipping = load_predictor(bundle.source, opts.replace(skip_background=True))
    assert skipping.skip_background and skipping.settings()["skip_background"]
    with caplog.at_level(logging.DEBUG, logger="voxseg.inference.window"):
        labels = skipping.predict(padded).labels.array
    assert _skipped(caplog) > 0  # the 128 slices of air at each end were not run
    assert np.count_nonzero(labels != full) <= labels.size * 1e-4


def test_the_tile_test_needs_every_ct_channel_at_air_and_other_channels_constant():
    ct = Normalization(scheme="ct", mean=0.0, std=1000.0, clip_low=-1024.0, clip_high=3071.0)
    mr = Normalization(scheme="zscore")
    test = background_tile_test([ct, mr])
    air = np.full((2, 4, 4, 4), -1.0, np.float32)
    air[1] = 0.0
    assert test(air)
    body = air.copy()
    body[0, 0, 0, 0] = -0.4  # -400 HU: above air
    assert not test(body)
    varying = air.copy()
    varying[1, 0, 0, 0] = 0.5  # the other channel is not constant
    assert not test(varying)


def test_option_is_off_by_default_and_reaches_both_backends():
    assert not PredictOptions().predictor_kwargs()["skip_background"]
    opts = PredictOptions(skip_background=True)
    assert opts.predictor_kwargs()["skip_background"] and opts.onnx_kwargs()["skip_background"]


def test_cli_flag_is_recorded_in_the_folder_manifest(tmp_path):
    import json

    from voxseg.cli.main import main
    from voxseg.io import write_image

    bundle, padded = _padded_golden()
    (tmp_path / "in").mkdir()
    write_image(padded[0], tmp_path / "in" / "case_0000.nii.gz")
    args = ["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", str(bundle.source)]
    assert main([*args, "--fast", "--threads", "1", "--skip-background"]) == 0
    manifest = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert '"skip_background": true' in json.dumps(manifest)
