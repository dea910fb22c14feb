"""Cohort inference on a real local Ray cluster (127.0.0.1, 2 CPUs): same masks and manifest as the
local engine, a killed worker loses nothing, a failing case is retried once, a re-run skips all."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.distributed.helpers import PHANTOM, SIZE, phantom_folder, unet_work
from voxseg.cli.main import main
from voxseg.dataset.phantoms import generate_case
from voxseg.errors import ConfigError, VoxsegError
from voxseg.inference.batch import predict_folder
from voxseg.io import read_image
from voxseg.models.resolve import resolve_model

ray = pytest.importorskip("ray")

from voxseg.distributed.ray_engine import ACTOR_PREFIX, predict_folder_ray, ray_session  # noqa: E402

OPTIONS = {"tta": False, "precision": "fp32"}  # exact comparisons: fp32, one thread everywhere


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model_and_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    spacing = generate_case(PHANTOM, 0, seed=3, size=SIZE).images[0].spacing
    return unet_work(root / "work", spacing), phantom_folder(root / "in", cases=6)


def _masks(folder, n=6):
    return {k: read_image(folder / f"case{k}.nii.gz").array for k in range(n)}


@pytest.mark.slow
def test_two_workers_give_the_local_engine_masks_and_manifest(cluster, model_and_inputs, tmp_path, capsys):
    work, src = model_and_inputs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = predict_folder(src, tmp_path / "local", resolve_model(work, **OPTIONS))
    finally:
        torch.set_num_threads(threads)
    seen = []
    report = predict_folder_ray(
        src, tmp_path / "ray", work, workers=2, num_threads=1, progress=lambda d, n: seen.append((d, n)), **OPTIONS
    )
    assert report.ok and report.done == local.done and len(report.done) == 6
    assert seen[-1] == (6, 6) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    expected, got = _masks(tmp_path / "local"), _masks(tmp_path / "ray")
    assert any(m.any() for m in expected.values())
    for k in range(6):
        np.testing.assert_array_equal(got[k], expected[k])
    assert report.objects == local.objects
    mine = json.loads((tmp_path / "ray" / "predictions.json").read_text())
    theirs = json.loads((tmp_path / "local" / "predictions.json").read_text())
    assert mine["model"] == theirs["model"] and mine["settings"] == theirs["settings"]
    workers = {e["worker"] for e in mine["cases"].values()}
    assert len(workers) == 2  # both actors took cases
    # the same manifest: the local engine finds every case up to date, and so does a Ray re-run
    assert predict_folder(src, tmp_path / "ray", resolve_model(work, **OPTIONS)).skipped == local.done
    # and a re-run through the CLI (--engine ray) skips every case
    args = ["predict", "-i", str(src), "-o", str(tmp_path / "ray"), "-m", str(work), "--engine", "ray"]
    assert main([*args, "--workers", "2", "--threads", "1", "--no-tta", "--precision", "fp32"]) == 0
    assert "0 predicted, 6 up to date, 0 failed" in " ".join(capsys.readouterr().out.split())


@pytest.mark.slow
def test_killed_workers_lose_no_finished_case_and_a_failing_case_is_retried_once(cluster, model_and_inputs, tmp_path):
    work, src = model_and_inputs
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for k in range(4):
        (folder / f"case{k}_0000.nii.gz").write_bytes((src / f"case{k}_0000.nii.gz").read_bytes())
    (folder / "broken_0000.nii.gz").write_bytes((src / "case4_0000.nii.gz").read_bytes()[:2000])  # truncated
    first: dict = {}

    def kill_after_first(done: int, total: int) -> None:
        if done == 1 and not first:
            manifest = json.loads((out / "predictions.json").read_text())
            (case,) = manifest["cases"]
            first.update(case=case, data=(out / f"{case}.nii.gz").read_bytes() if case != "broken" else b"")
            for name in ray.util.list_named_actors():
                if name.startswith(ACTOR_PREFIX):
                    ray.kill(ray.get_actor(name), no_restart=True)

    report = predict_folder_ray(folder, out, work, workers=2, num_threads=1, progress=kill_after_first, **OPTIONS)
    assert first and report.done == ("case0", "case1", "case2", "case3")
    assert [case for case, _ in report.failed] == ["broken"] and not report.ok
    cases = json.loads((out / "predictions.json").read_text())["cases"]
    if first["data"]:  # the first finished case (almost surely a good one) was not redone
        assert (out / f"{first['case']}.nii.gz").read_bytes() == first["data"]
        assert cases[first["case"]]["attempts"] == 1
    assert all(cases[f"case{k}"]["status"] == "ok" for k in range(4))
    assert any(cases[f"case{k}"]["attempts"] == 2 for k in range(4))  # the killed workers' cases were re-queued
    broken = cases["broken"]  # tried twice (whatever killed it), then recorded; the run went on
    assert broken["status"] == "failed" and broken["attempts"] == 2 and broken["error"]
    assert not [n for n in ray.util.list_named_actors() if n.startswith(ACTOR_PREFIX)]  # no actor left behind


@pytest.mark.slow
def test_unknown_model_is_one_clear_error(cluster, model_and_inputs, tmp_path):
    _, src = model_and_inputs
    with pytest.raises(VoxsegError, match="not found"):
        predict_folder_ray(src, tmp_path / "out", tmp_path / "no-such-model", workers=1, num_threads=1)


@pytest.mark.slow
def test_session_reuses_an_open_cluster(cluster):
    with ray_session() as r:
        assert r.is_initialized()
    assert ray.is_initialized()  # ours was reused, not shut down


def test_cli_refuses_unknown_engine_and_single_file(tmp_path):
    image = phantom_folder(tmp_path / "in", cases=1) / "case0_0000.nii.gz"
    base = ["predict", "-i", str(image), "-o", str(tmp_path / "out.nii.gz"), "-m", str(tmp_path)]
    assert main([*base, "--engine", "spark"]) == 2
    assert main([*base, "--engine", "ray"]) == 2


@pytest.mark.parametrize("kwargs", [{"workers": 0}, {"gpus_per_worker": -1}, {"min_size": 3, "min_volume": 2.0}])
def test_bad_options_are_config_errors(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        predict_folder_ray(tmp_path, tmp_path / "out", tmp_path, **kwargs)


def test_outputs_aimed_at_the_inputs_are_refused_before_ray_starts(model_and_inputs):
    from voxseg.errors import OutputPathError

    work, src = model_and_inputs
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    with pytest.raises(OutputPathError):
        predict_folder_ray(src, src, work, workers=1, num_threads=1)
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
