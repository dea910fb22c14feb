"""install / list_models / load_predictor against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from voxseg.bundle import install, installed_models, list_models, load_index, open_bundle
from voxseg.bundle._util import sha256_file
from voxseg.errors import BundleError

from .conftest import write_index


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def _publish(server, bundle_zip: Path, tmp_path: Path) -> tuple[Path, str]:
    """Serve a good, a corrupted (bytes flipped) and a truncated copy of the bundle; write the index."""
    www = server.folder
    shutil.copy(bundle_zip, www / "good.zip")
    data = bytearray(bundle_zip.read_bytes())
    for i in range(100, len(data), 997):
        data[i] ^= 0xFF
    (www / "corrupt.zip").write_bytes(bytes(data))
    (www / "truncated.zip").write_bytes(bundle_zip.read_bytes()[: len(data) // 2])
    digest, size = sha256_file(bundle_zip), bundle_zip.stat().st_size
    entry = {"sha256": digest, "size": size}
    models = {
        "tiny-nodules": {"description": "tiny", "versions": {"v1": {"urls": [f"{server.url}/good.zip"], **entry}}},
        "corrupt": {"versions": {"v1": {"urls": [f"{server.url}/corrupt.zip"], **entry}}},
        "truncated": {"versions": {"v1": {"urls": [f"{server.url}/truncated.zip"], **entry}}},
        "dropped": {"versions": {"v1": {"urls": [f"{server.url}/drop/good.zip"], **entry}}},
    }
    return write_index(tmp_path / "index.json", models), digest


def test_install_downloads_verifies_and_then_works_offline(server, bundle_zip, tmp_path):
    index, digest = _publish(server, bundle_zip, tmp_path)
    cache, models = tmp_path / "cache", tmp_path / "models"
    seen = []
    got = install("tiny-nodules", index=index, cache=cache, models=models, progress=lambda d, t: seen.append((d, t)))
    assert (got.name, got.version, got.sha256) == ("tiny-nodules", "v1", digest)
    assert got.path == models / "tiny-nodules" / "v1"
    assert json.loads((got.path / "installed.json").read_text())["source"] == f"{server.url}/good.zip"
    assert seen and seen[-1] == (bundle_zip.stat().st_size, bundle_zip.stat().st_size)
    assert open_bundle(got.path).manifest.reference == "tiny-nodules@v1"
    assert [p.name for p in _files(cache / "downloads")] == [f"tiny-nodules-v1-{digest[:12]}.zip"]

    server.stop()  # from here on the network is gone
    t0 = time.perf_counter()
    again = install("tiny-nodules", index=index, cache=cache, models=models)
    pinned = install("tiny-nodules@v1", cache=cache, models=models, offline=True)
    assert again == got == pinned
    assert time.perf_counter() - t0 < 1.0
    assert [m.reference for m in installed_models(models)] == ["tiny-nodules@v1"]


@pytest.mark.parametrize("name", ["corrupt", "truncated", "dropped"])
def test_bad_downloads_are_refused_and_deleted(name, server, bundle_zip, tmp_path):
    index, digest = _publish(server, bundle_zip, tmp_path)
    cache, models = tmp_path / "cache", tmp_path / "models"
    with pytest.raises(BundleError) as err:
        install(name, index=index, cache=cache, models=models, retries=0)
    message = str(err.value)
    assert f"expected sha256 {digest}" in message or f"expected {digest}" in message
    assert "\n" not in message
    if name != "dropped":  # the dropped connection never gives a complete file to hash
        actual = sha256_file(server.folder / f"{name}.zip")
        assert f"has sha256 {actual}" in message and "deleted" in message
        assert _files(cache / "downloads") == []
    else:  # what arrived is kept for the next attempt, never as a finished download
        assert "kept" in message
        assert [p.name for p in _files(cache / "downloads")] == [f"dropped-v1-{digest[:12]}.zip.part"]
    assert _files(models) == []


def _flaky_index(server, bundle_zip, tmp_path) -> tuple[Path, str]:
    """The index of ``_publish`` with tiny-nodules served by ``/drop/`` (the first request breaks)."""
    index, digest = _publish(server, bundle_zip, tmp_path)
    data = json.loads(index.read_text())
    data["models"]["tiny-nodules"]["versions"]["v1"]["urls"] = [f"{server.url}/drop/good.zip"]
    index.write_text(json.dumps(data))
    return index, digest


def test_interrupted_download_resumes_where_it_stopped(server, bundle_zip, tmp_path):
    index, digest = _flaky_index(server, bundle_zip, tmp_path)
    cache, models, size = tmp_path / "cache", tmp_path / "models", bundle_zip.stat().st_size
    with pytest.raises(BundleError, match="kept"):
        install("tiny-nodules", index=index, cache=cache, models=models, retries=0)
    part = cache / "downloads" / f"tiny-nodules-v1-{digest[:12]}.zip.part"
    assert part.stat().st_size == size // 2
    seen = []
    got = install("tiny-nodules", index=index, cache=cache, models=models, progress=lambda d, t: seen.append((d, t)))
    assert got.sha256 == digest and not part.exists()
    assert server.requests[-1] == ("/drop/good.zip", f"bytes={size // 2}-")  # only the missing half was asked for
    assert seen[0][0] > size // 2 and seen[-1] == (size, size)
    assert [p.name for p in _files(cache / "downloads")] == [f"tiny-nodules-v1-{digest[:12]}.zip"]


def test_retries_resume_and_a_bad_resumed_file_is_deleted(server, bundle_zip, tmp_path):
    index, digest = _flaky_index(server, bundle_zip, tmp_path)
    cache, models = tmp_path / "cache", tmp_path / "models"
    got = install("tiny-nodules", index=index, cache=cache, models=models, retries=1)  # the retry resumes
    half = bundle_zip.stat().st_size // 2
    assert got.sha256 == digest and [r for _, r in server.requests] == [None, f"bytes={half}-"]
    # a part that does not belong to the file (here: garbage) gives a hash mismatch, and is not kept
    part = cache / "downloads" / f"corrupt-v1-{digest[:12]}.zip.part"
    part.write_bytes(b"x" * 100)
    with pytest.raises(BundleError, match="deleted"):
        install("corrupt", index=index, cache=cache, models=models, retries=0)
    assert not part.exists() and not list((cache / "downloads").glob("corrupt*"))


def test_mirrors_are_tried_in_order(server, bundle_zip, tmp_path):
    index, digest = _publish(server, bundle_zip, tmp_path)
    data = json.loads(index.read_text())
    data["models"]["tiny-nodules"]["versions"]["v1"]["urls"] = [f"{server.url}/missing.zip", f"{server.url}/good.zip"]
    index.write_text(json.dumps(data))
    got = install("tiny-nodules@v1", index=index, cache=tmp_path / "c", models=tmp_path / "m", retries=0)
    assert got.sha256 == digest and got.source == f"{server.url}/good.zip"


def test_index_name_must_match_the_bundle(server, bundle_zip, tmp_path):
    index, _ = _publish(server, bundle_zip, tmp_path)
    data = json.loads(index.read_text())
    data["models"]["other"] = {"versions": {"v1": data["models"]["tiny-nodules"]["versions"]["v1"]}}
    index.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"holds tiny-nodules@v1 but the index lists it as other@v1"):
        install("other", index=index, cache=tmp_path / "c", models=tmp_path / "m")
    assert _files(tmp_path / "m") == []


def test_local_file_install_and_relative_index_urls(bundle_zip, tmp_path):
    models = tmp_path / "models"
    got = install(bundle_zip, cache=tmp_path / "cache", models=models)
    assert got.reference == "tiny-nodules@v1" and got.source == str(bundle_zip.resolve())
    assert install(str(bundle_zip), cache=tmp_path / "cache", models=models) == got
    # a package-style index: a relative path next to the index file, like the built-in models
    shelf = tmp_path / "shelf"
    (shelf / "models").mkdir(parents=True)
    shutil.copy(bundle_zip, shelf / "models" / "tiny.zip")
    digest = sha256_file(bundle_zip)
    index = write_index(
        shelf / "index.json", {"tiny-nodules": {"versions": {"v1": {"urls": ["models/tiny.zip"], "sha256": digest}}}}
    )
    other = install("tiny-nodules", index=index, cache=tmp_path / "c2", models=tmp_path / "m2", offline=True)
    assert other.source == str(shelf / "models" / "tiny.zip")
    assert _files(tmp_path / "c2") == []  # local files are verified in place, not copied


def test_offline_and_unknown_names(server, bundle_zip, tmp_path):
    index, _ = _publish(server, bundle_zip, tmp_path)
    kw = dict(cache=tmp_path / "c", models=tmp_path / "m")
    with pytest.raises(BundleError, match="offline mode forbids downloading"):
        install("tiny-nodules", index=index, offline=True, **kw)
    with pytest.raises(BundleError, match="did you mean 'tiny-nodules'"):
        install("tiny-nodule", index=index, **kw)
    with pytest.raises(BundleError, match=r"has no version 'v9' \(available: v1\)"):
        install("tiny-nodules@v9", index=index, **kw)
    with pytest.raises(BundleError, match="no such file"):
        install(tmp_path / "nope.zip", **kw)


def test_versions_latest_and_list_models(server, bundle_zip, tmp_path):
    index, _ = _publish(server, bundle_zip, tmp_path)
    data = json.loads(index.read_text())
    versions = data["models"]["tiny-nodules"]["versions"]
    versions["v10"] = dict(versions["v1"], description="newest")
    versions["v2"] = dict(versions["v1"])
    index.write_text(json.dumps(data))
    idx = load_index(index)
    assert idx.versions("tiny-nodules") == ["v1", "v2", "v10"]
    assert idx.resolve("tiny-nodules").version == "v10"
    kw = dict(cache=tmp_path / "c", models=tmp_path / "m")
    install("tiny-nodules@v1", index=index, **kw)
    rows = {(r.name, r.version): r for r in list_models(index=index, **kw)}
    assert rows["tiny-nodules", "v1"].installed and rows["tiny-nodules", "v1"].available
    assert not rows["tiny-nodules", "v10"].installed and rows["tiny-nodules", "v10"].latest
    assert rows["tiny-nodules", "v10"].description == "newest"
    assert rows["corrupt", "v1"].size == bundle_zip.stat().st_size
    # with the built-in index only, installed models are still listed
    only = [r for r in list_models(**kw) if r.name == "tiny-nodules"]  # built-in models are listed too
    assert [(r.name, r.version, r.installed, r.available) for r in only] == [("tiny-nodules", "v1", True, False)]


def test_remote_index_is_cached_for_offline_use(server, bundle_zip, tmp_path):
    index, _ = _publish(server, bundle_zip, tmp_path)
    shutil.copy(index, server.folder / "index.json")
    url = f"{server.url}/index.json"
    cache = tmp_path / "c"
    got = install("tiny-nodules", index=url, cache=cache, models=tmp_path / "m")
    server.stop()
    assert load_index(url, cache=cache).resolve("tiny-nodules").version == "v1"  # cached copy
    assert install("tiny-nodules", index=url, cache=cache, models=tmp_path / "m", offline=True) == got


def test_bad_indexes_are_explained(tmp_path):
    bad = write_index(tmp_path / "i.json", {"x": {"versions": {"v1": {"urls": ["a.zip"], "sha256": "abc"}}}})
    with pytest.raises(BundleError, match=r"x@v1 needs 'sha256'"):
        load_index(bad)
    bad = write_index(tmp_path / "i.json", {"x": {"versions": {"v1": {"urls": [], "sha256": "a" * 64}}}})
    with pytest.raises(BundleError, match="needs 'urls'"):
        load_index(bad)
    bad = write_index(tmp_path / "i.json", {"x": {"versions": {"v1": {"urls": ["s3://b/x.zip"], "sha256": "a" * 64}}}})
    with pytest.raises(BundleError, match="unsupported URL scheme 's3'"):
        load_index(bad)
    with pytest.raises(BundleError, match="no such index file"):
        load_index(tmp_path / "missing.json")
    assert load_index().names() == [] or all(load_index().names())  # the built-in index is valid


def test_load_predictor_installs_on_first_use_and_predicts(server, bundle_zip, tmp_path):
    import numpy as np

    from voxseg.io import Volume
    from voxseg.models import load_predictor

    index, _ = _publish(server, bundle_zip, tmp_path)
    kw = dict(cache=tmp_path / "c", models=tmp_path / "m")
    predictor = load_predictor("tiny-nodules", index=index, tta=False, precision="fp32", **kw)
    assert predictor.model_id == "tiny-nodules@v1" and predictor.folds == (0, 1)
    assert predictor.postprocessing.makes_instances
    assert [m.reference for m in installed_models(tmp_path / "m")] == ["tiny-nodules@v1"]
    image = Volume(np.random.default_rng(0).normal(0, 1, (12, 20, 18)).astype(np.float32), (1.0, 1.0, 1.0))
    result = predictor.predict(image)
    assert result.labels.shape == image.shape and result.labels.spacing == image.spacing
    one = load_predictor(bundle_zip, folds=[1], tta=False, precision="fp32", cache=tmp_path / "c2", models=kw["models"])
    assert one.folds == (1,) and len(one.networks) == 1
    with pytest.raises(BundleError, match=r"has folds \[0, 1\]; fold\(s\) \[3\] requested"):
        load_predictor(bundle_zip, folds=[3], cache=tmp_path / "c2", models=kw["models"])


def _cli_install(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), "VOXSEG_INDEX": ""}
    return subprocess.Popen(
        [sys.executable, "-m", "voxseg", "install", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_concurrent_installs_of_one_model_take_turns(server, bundle_zip, tmp_path):
    """Two real `voxseg install NAME` processes at once: both succeed, one download, one install
    (they used to share the .part file and one failed with a sha256 mismatch)."""
    shutil.copy(bundle_zip, server.folder / "good.zip")
    digest, size = sha256_file(bundle_zip), bundle_zip.stat().st_size
    versions = {"v1": {"urls": [f"{server.url}/slow/good.zip"], "sha256": digest, "size": size}}
    index = write_index(tmp_path / "index.json", {"tiny-nodules": {"versions": versions}})
    cache, models = tmp_path / "cache", tmp_path / "models"
    (cache / "downloads").mkdir(parents=True)
    leftover = cache / "downloads" / "tmpk1ll3d00"  # what a killed install leaves behind
    leftover.write_bytes(b"half a download")
    args = ["tiny-nodules", "--index", str(index), "--cache", str(cache), "--models", str(models)]
    procs = [_cli_install(args) for _ in range(2)]
    results = [(p.wait(timeout=240), *p.communicate()) for p in procs]
    for code, _out, err in results:
        assert code == 0, err
    downloads = [r for r in server.requests if r[0].startswith("/slow/")]
    assert len(downloads) == 1  # the second process waited, then found the model installed
    assert [m.reference for m in installed_models(models)] == ["tiny-nodules@v1"]
    assert [p.name for p in _files(cache / "downloads")] == [f"tiny-nodules-v1-{digest[:12]}.zip"]
    assert not leftover.exists()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_install_killed_at_a_random_moment_resumes_to_a_verified_model(server, bundle_zip, tmp_path, seed):
    """kill -9 of `voxseg install NAME` during the (slowed) download, the verification or the
    unpacking; the rerun installs a model that verifies, and no partial file or staging folder is left."""
    import random
    import signal

    shutil.copy(bundle_zip, server.folder / "good.zip")
    digest, size = sha256_file(bundle_zip), bundle_zip.stat().st_size
    versions = {"v1": {"urls": [f"{server.url}/slow/good.zip"], "sha256": digest, "size": size}}
    index = write_index(tmp_path / "index.json", {"tiny-nodules": {"versions": versions}})
    cache, models = tmp_path / "cache", tmp_path / "models"
    args = ["tiny-nodules", "--index", str(index), "--cache", str(cache), "--models", str(models)]
    proc = _cli_install(args)
    time.sleep(random.Random(seed).uniform(0.5, 3.0))  # start-up ~1-2 s, then 1 s of download, then unpacking
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    rerun = _cli_install(args)
    code, (_out, err) = rerun.wait(timeout=240), rerun.communicate()
    assert code == 0, err
    (model,) = installed_models(models)
    assert model.reference == "tiny-nodules@v1"
    open_bundle(model.path)  # hashes of every file checked
    assert [p.name for p in _files(cache / "downloads")] == [f"tiny-nodules-v1-{digest[:12]}.zip"]
    hidden = [p for p in models.rglob("*") if p.name.startswith(".") and not p.name.startswith(".voxseg")]
    assert not hidden, hidden  # no staging folder or temporary left by the killed run


def test_staging_folders_of_killed_installs_are_swept_and_live_ones_kept(bundle_zip, tmp_path):
    """A kill between unpacking and clean-up leaves a hidden staging folder; the next install removes
    it when its process is gone, and never touches the staging folder of an install still running."""
    models = tmp_path / "models"
    dead = [models / ".install.99999999.k1ll3d.part", models / "tiny-nodules" / ".v1.99999999.k1ll3d.part"]
    live = models / f".install.{os.getpid()}.running.part"
    for folder in (*dead, live):
        (folder / "bundle").mkdir(parents=True)
    install(bundle_zip, models=models, cache=tmp_path / "cache")
    assert [m.reference for m in installed_models(models)] == ["tiny-nodules@v1"]
    assert not any(p.exists() for p in dead) and live.is_dir()
    hidden = [p.name for p in models.rglob("*") if p.name.startswith(".") and p != live and p.parent != live]
    assert hidden == [] or all(n.startswith(".voxseg") for n in hidden)
