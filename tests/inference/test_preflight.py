"""The pre-flight check: headers only, before the model loads; real built-in bundles and real files."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import voxseg
from tests.inference.helpers import make_plan, unet_spec, write_work
from voxseg.cli.main import main
from voxseg.errors import InputImageError
from voxseg.inference.inputs import collect_inputs
from voxseg.inference.preflight import PreflightError, PreflightLimits, preflight
from voxseg.inference.rate import RATE_FILE, call_seconds
from voxseg.io import Volume, write_image
from voxseg.io.headers import ImageHeader, read_header
from voxseg.models.resolve import describe_model, resolve_model


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    """A private cache and models folder for this module (the built-in bundles install there)."""
    root = tmp_path_factory.mktemp("homes")
    env = {"VOXSEG_CACHE": str(root / "cache"), "VOXSEG_MODELS": str(root / "models")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def human_ct(tmp_path_factory):
    path = tmp_path_factory.mktemp("ct") / "ct.nii.gz"
    rng = np.random.default_rng(0)
    write_image(Volume(rng.integers(-1000, 400, (12, 128, 128)).astype(np.int16), (5.0, 0.66, 0.66)), path)
    return path


def test_header_matches_the_reader(tmp_path):
    write_image(Volume(np.zeros((7, 9, 11), np.float32), (2.0, 0.5, 0.25)), tmp_path / "a.nrrd")
    h = read_header(tmp_path / "a.nrrd")
    assert h.shape == (7, 9, 11) and h.spacing == pytest.approx((2.0, 0.5, 0.25)) and h.channels == 1
    write_image(Volume(np.zeros((5, 6, 7), np.uint16), (3.0, 0.1, 0.1)), tmp_path / "b.tif")
    h = read_header(tmp_path / "b.tif")
    assert h.shape == (5, 6, 7) and h.spacing == pytest.approx((3.0, 0.1, 0.1)) and h.spacing_known
    with pytest.raises(InputImageError, match="not a readable image"):
        (tmp_path / "bad.nii.gz").write_bytes(b"junk")
        read_header(tmp_path / "bad.nii.gz")


def test_human_ct_into_mouse_model_refused_before_loading(homes, human_ct, tmp_path, capsys):
    out = tmp_path / "seg.nii.gz"
    code = main(["predict", "-i", str(human_ct), "-o", str(out), "-m", "mouse-lung-nodules"])
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    assert "12168 tiles" in err and "300x422x422" in err and "limit 30 min" in err and "--force" in err
    assert "spacing 5x0.66x0.66 mm is far from the model's" in err
    assert "loaded in" not in err and "tiles ━" not in err  # no model load, no progress bar
    assert (homes / "cache" / RATE_FILE).is_file()
    # the measured speed is cached: a fresh process refuses without ever importing torch
    code = (
        "import sys; from voxseg.cli.main import main; "
        f"c = main(['predict', '-i', {str(human_ct)!r}, '-o', {str(out)!r}, '-m', 'mouse-lung-nodules']); "
        "print('torch' in sys.modules, c)"
    )
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ)
    assert r.stdout.split() == ["False", "1"], r.stderr
    assert time.perf_counter() - t0 < 30 and "limit 30 min" in r.stderr and "Traceback" not in r.stderr
    code = main(["predict", "-i", str(human_ct), "-o", str(out), "-m", "mouse-lung-nodules", "--dry-run", "--force"])
    err = capsys.readouterr().err
    assert code == 0 and "pre-flight: 1 case, 12168 tiles of 32x32x32" in err and not out.exists()


def test_api_refuses_the_same(homes, human_ct):
    with pytest.raises(PreflightError, match="12168 tiles"):
        voxseg.predict(human_ct, model="mouse-lung-nodules")


def test_fixed_shape_model_warns_partial_coverage(homes):
    facts = describe_model("brain-microbleeds")
    brain = [ImageHeader.of_volume(Volume(np.zeros((146, 180, 156), np.float32), (1.0, 1.0, 1.0)), "swi")]
    report = preflight([brain], facts, measure=False, mask_given=True)
    (warning,) = [w for w in report.warnings if "fixed" in w]
    assert "80x96x80 mm" in warning and "146x180x156 mm" in warning and "15%" in warning
    small = [ImageHeader.of_volume(Volume(np.zeros((70, 90, 70), np.float32), (1.0, 1.0, 1.0)), "swi")]
    assert not [w for w in preflight([small], facts, measure=False, mask_given=True).warnings if "fixed" in w]


def test_wrong_channels_and_2d_into_3d_refused(homes, tmp_path):
    facts = describe_model("brain-microbleeds")
    one = [ImageHeader.of_volume(Volume(np.zeros((80, 96, 80), np.float32)), "swi")]
    with pytest.raises(InputImageError, match="expects 2 channel"):
        preflight([one], facts, measure=False)
    write_image(Volume(np.zeros((24, 24), np.float32)), tmp_path / "flat.nii.gz")
    with pytest.raises(InputImageError, match=r"2D image.*model is 3D"):
        preflight(collect_inputs(tmp_path / "flat.nii.gz"), describe_model("mouse-lung-nodules"), measure=False)


def test_png_without_spacing_warns_1_mm(tmp_path):
    work = write_work(tmp_path / "work", make_plan(ndim=2, target_spacing=(0.5, 0.5), network=unet_spec(2, 1, 2)))
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "cells.png")
    report = preflight(collect_inputs(tmp_path / "cells.png"), describe_model(work), measure=False)
    assert any("taken as 1 mm per pixel" in w and "cells.png" in w for w in report.warnings)
    assert report.cases[0].resampled_shape == (80, 100)


def test_time_estimate_within_factor_2_and_rate_cached(tmp_path):
    plan = make_plan(target_spacing=(1.0, 1.0, 1.0), patch_size=(32, 32, 32), network=unet_spec(3, 1, 2))
    work = write_work(tmp_path / "work", plan)
    image = Volume(np.random.default_rng(0).normal(size=(64, 64, 64)).astype(np.float32), (1.0, 1.0, 1.0))
    write_image(image, tmp_path / "img.nii.gz")
    cache = tmp_path / "cache"
    facts = describe_model(work, tta=False, num_threads=1)
    report = preflight(collect_inputs(tmp_path / "img.nii.gz"), facts, cache_dir=cache)
    assert not report.rate_cached and report.cases[0].tiles == 27
    predictor = resolve_model(work, tta=False, num_threads=1)
    predictor.predict(image)  # warm-up, as the rate measurement has one
    runs = []
    for _ in range(3):  # the median of three: one run of ~0.1 s is at the mercy of other processes
        t0 = time.perf_counter()
        predictor.predict(image)
        runs.append(time.perf_counter() - t0)
    real = sorted(runs)[1]
    assert real / 2 <= report.seconds <= real * 2, (report.seconds, runs)
    again = preflight(collect_inputs(tmp_path / "img.nii.gz"), facts, cache_dir=cache)
    assert again.rate_cached and again.call_seconds == report.call_seconds
    other, cached = call_seconds(
        plan.configuration(), in_channels=1, batch_size=4, tta=False, threads=2, cache_dir=cache
    )
    assert not cached and other > 0  # another thread count is timed again


def test_limits_memory_and_force():
    plan = make_plan(target_spacing=(1.0, 1.0, 1.0), network=unet_spec(3, 1, 2))
    facts = describe_model(type("P", (), {"plan": plan, "networks": [0], "model_id": "m"})())
    big = [[ImageHeader.of_volume(Volume(np.zeros((4, 4, 4), np.float32), (100.0, 100.0, 100.0)), "big")]]
    report = preflight(big, facts, measure=False, limits=PreflightLimits(max_memory_gb=0.5))
    with pytest.raises(PreflightError, match="memory"):
        report.check()
    preflight(big, facts, measure=False, limits=PreflightLimits(max_memory_gb=0.5, force=True)).check()


def test_many_cases_with_one_finding_give_one_line_that_counts_them(tmp_path):
    """Test tiles smaller than the training images (the real nuclei: 5 lines, one per tile; a
    folder of 1,000 tiles gave 1,000): over 3 cases, one line with the count and the first names."""
    work = write_work(tmp_path / "work", make_plan(ndim=2, target_spacing=(0.5, 0.5), network=unet_spec(2, 1, 2)))
    folder = tmp_path / "pngs"
    folder.mkdir()
    for k in range(6):
        Image.fromarray(np.zeros((40, 50 + k), np.uint8)).save(folder / f"tile_{k}.png")
    report = preflight(collect_inputs(folder), describe_model(work), measure=False)
    # each case keeps its own lines: no spacing in the PNG, and a field of view beyond the model's
    assert all(len(case.warnings) == 2 and "tile_" in case.warnings[0] for case in report.cases)
    spacing, view = report.warnings
    assert spacing.startswith("6 of 6 cases (tile_0.png, tile_1.png, tile_2.png, ...): no spacing recorded")
    assert "tile_0.png.json, ..., tile_5.png.json sidecar" in spacing
    assert view.startswith("6 of 6 cases (tile_0, tile_1, tile_2, ...): field of view 40x50 mm, ..., 40x55 mm is far")
    few = preflight(collect_inputs(folder / "tile_4.png"), describe_model(work), measure=False)
    assert few.warnings == few.cases[0].warnings  # 3 or fewer: each case's line as it is
