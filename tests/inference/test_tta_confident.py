"""Confident-tile mirror TTA: confident tiles keep their un-flipped pass, the others run every flip."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pytest
import torch

from tests.inference.helpers import make_plan
from voxseg.errors import ConfigError
from voxseg.inference import MirrorTTA
from voxseg.inference.options import PredictOptions
from voxseg.inference.tiling import CONFIDENT_PROBABILITY, confident_tiles
from voxseg.inference.wrappers import _confident


def ramp_net(x: torch.Tensor) -> torch.Tensor:
    """Two-class logits that are not flip-equivariant (a ramp along the last axis)."""
    ramp = torch.linspace(0.5, 1.5, x.shape[-1])
    return torch.cat([-x * ramp, x * ramp], dim=1)


class Counting:
    def __init__(self, fn):
        self.fn, self.batches = fn, []

    def __call__(self, x):
        self.batches.append(x.shape[0])
        return self.fn(x)


def test_confident_tiles_keep_the_first_pass_and_the_others_match_full_tta():
    torch.manual_seed(0)
    x = torch.randn(3, 1, 6, 6, 6) * 0.1
    x[0] = 5.0  # confident everywhere: |logit difference| >= 5
    x[2] = -5.0
    counting = Counting(ramp_net)
    tta = MirrorTTA(counting, confident=CONFIDENT_PROBABILITY)
    out = tta(x)
    full = MirrorTTA(ramp_net)(x)
    torch.testing.assert_close(out[[0, 2]], ramp_net(x)[[0, 2]])
    torch.testing.assert_close(out[1], full[1])
    assert not torch.allclose(full[0], ramp_net(x)[0])  # full TTA would have changed the confident tiles
    # the first pass of the three tiles, then the 7 other flips of tile 1 only (small tiles: one call)
    assert counting.batches == [3, 7] and tta.tiles == [3, 2]


def test_no_confident_tile_gives_exactly_full_tta():
    x = torch.randn(2, 1, 5, 6, 7) * 0.1
    torch.testing.assert_close(MirrorTTA(ramp_net, confident=0.95)(x), MirrorTTA(ramp_net)(x))
    with pytest.raises(ConfigError, match="confidence level"):
        MirrorTTA(ramp_net, confident=0.4)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_numpy_and_torch_confidence_tests_agree(k):
    rng = np.random.default_rng(k)
    logits = rng.normal(scale=4.0, size=(64, k, 3, 3)).astype(np.float32)
    logits[:8] *= 20  # some tiles confident
    mine = confident_tiles(logits, 0.95)
    assert mine.any() and not mine.all()
    assert np.array_equal(mine, _confident(torch.from_numpy(logits), 0.95).numpy())
    t = torch.from_numpy(logits).double()
    top = torch.sigmoid(t[:, 0].abs()) if k == 1 else torch.softmax(t, dim=1).amax(dim=1)
    top = top.numpy()
    assert np.array_equal(mine, top.reshape(64, -1).min(axis=1) >= 0.95)  # a 3x3 tile has no border to ignore
    logits[8, :, 0, 0] = 0.0  # an unsure voxel: in the core of a 3x3 tile, on the border of a 16x16 one
    assert not confident_tiles(logits[8:9], 0.95)[0]
    big = np.repeat(np.repeat(logits[8:9], 6, axis=2), 6, axis=3)[:, :, :16, :16]
    big[:, :, 0, 0] = 0.0
    assert confident_tiles(big, 0.95)[0] == confident_tiles(big[:, :, 2:14, 2:14], 0.95)[0]


def test_onnx_runner_path_skips_flips_of_confident_tiles():
    from voxseg.bundle.onnx_backend import OnnxPredictor

    calls = []

    def runner(x):
        calls.append(x.shape[0])
        return ramp_net(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    plan = make_plan(patch_size=(8, 8, 8))
    x = (np.random.default_rng(0).normal(size=(2, 1, 8, 8, 8)) * 0.1).astype(np.float32)
    x[0] = 6.0
    full = OnnxPredictor([runner], plan, configuration="3d", tta=True).patch_runner()(x)
    assert calls == [2] * 8
    calls.clear()
    sure = OnnxPredictor([runner], plan, configuration="3d", tta=True, tta_confident=True)
    out = sure.patch_runner()(x)
    assert calls == [2] + [1] * 7 and sure.tiles == [2, 1]
    np.testing.assert_allclose(out[1], full[1], rtol=1e-6, atol=1e-7)
    first = ramp_net(torch.from_numpy(x[:1])).softmax(1).numpy()[0]
    np.testing.assert_allclose(out[0], first, rtol=1e-6, atol=1e-7)


def test_option_needs_tta_and_reaches_both_backends():
    with pytest.raises(ConfigError, match="needs mirror TTA"):
        PredictOptions(tta=False, tta_confident=True)
    opts = PredictOptions(tta_confident=True)
    assert opts.predictor_kwargs()["tta_confident"] and opts.onnx_kwargs()["tta_confident"]
    assert not PredictOptions().predictor_kwargs()["tta_confident"]


def test_builtin_bundle_with_confident_tta_agrees_with_full_tta_on_its_golden_case_in_air():
    from voxseg.bundle import open_bundle
    from voxseg.bundle.golden import read_golden
    from voxseg.bundle.onnx_backend import OnnxPredictor
    from voxseg.io import Volume

    bundle = open_bundle(files("voxseg.bundle") / "models" / "mouse-lung-nodules-v1.zip")
    _, images, _ = read_golden(bundle)
    # a longer field of view (air before and after the golden CT): background tiles are confident
    padded = [Volume(np.pad(v.array, ((160, 160), (0, 0), (0, 0)), constant_values=-1024.0), v.spacing) for v in images]
    full = OnnxPredictor.from_bundle(bundle, num_threads=1, tta=True).predict(padded).labels.array
    fast = OnnxPredictor.from_bundle(bundle, num_threads=1, tta=True, tta_confident=True)
    labels = fast.predict(padded).labels.array
    assert 0 < fast.tiles[1] < fast.tiles[0]  # some tiles kept their first pass, not all
    assert np.count_nonzero(labels != full) <= labels.size * 1e-3


def test_cli_flag_runs_and_needs_tta(tmp_path, capsys):
    from tests.cli.test_predict import ball
    from tests.inference.helpers import write_work
    from voxseg.cli.main import main
    from voxseg.io import read_image, write_image

    work = write_work(tmp_path / "work", make_plan(target_spacing=(1.0, 1.0, 1.0)))
    write_image(ball(), tmp_path / "img.nii.gz")
    base = ["predict", "-i", str(tmp_path / "img.nii.gz"), "-m", str(work), "--threads", "1"]
    assert main([*base, "-o", str(tmp_path / "full.nii.gz")]) == 0
    assert main([*base, "-o", str(tmp_path / "sure.nii.gz"), "--tta-confident"]) == 0
    full, sure = read_image(tmp_path / "full.nii.gz").array, read_image(tmp_path / "sure.nii.gz").array
    assert np.count_nonzero(full != sure) <= full.size * 1e-3
    assert main([*base, "-o", str(tmp_path / "no.nii.gz"), "--no-tta", "--tta-confident"]) == 2
    assert "needs mirror TTA" in capsys.readouterr().err and not (tmp_path / "no.nii.gz").exists()
