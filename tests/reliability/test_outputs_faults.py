"""Faults around outputs and inputs, caused for real: killed processes, outputs aimed at inputs
(same file, folder, symlink, hard link), two predicts into one folder, a full disk (a real 2 MB
tmpfs), a NIfTI larger than the limit. See docs/reliability.md, "Outputs and inputs"."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.inference.helpers import make_plan, sphere, unet_spec, write_work
from voxseg.cli.main import main
from voxseg.errors import DiskFullError, InputImageError, OutputPathError
from voxseg.io import Volume, read_image, write_image
from voxseg.io.atomic import clean_stale_parts

SPACING = (2.0, 0.8, 0.8)


def ball(seed=0, shape=(10, 24, 24)) -> Volume:
    truth = sphere(shape, (5, 12, 12), 5.0, SPACING)
    noise = np.random.default_rng(seed).normal(0, 0.05, shape)
    return Volume((truth + noise).astype(np.float32), SPACING, (1.0, 2.0, 3.0))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The deterministic test network (this process only): refusals happen before it loads anyway."""
    return write_work(tmp_path_factory.mktemp("faults") / "work", make_plan(target_spacing=(1.0, 1.0, 1.0)))


@pytest.fixture(scope="module")
def unet_work(tmp_path_factory):
    """A registry network, so that ``python -m voxseg`` subprocesses can load it."""
    return write_work(tmp_path_factory.mktemp("faults_unet") / "work", make_plan(network=unet_spec(3, 1, 2)))


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones included) with its sha256."""
    return {str(p.relative_to(folder)): sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def refused(argv, capsys) -> str:
    """Run the CLI in this process; assert exit 1 with one error line, return it."""
    code = main(argv)
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


# ---- -o == -i, in every disguise: refused, inputs unchanged, nothing written ----------------------
def _folder(root: Path, names) -> Path:
    for k, name in enumerate(names):
        write_image(ball(k), root / name)
    return root


@pytest.mark.parametrize(
    "layout",
    ["same_file", "same_folder_plain", "same_folder_nnunet", "symlink", "hard_link", "dot_path", "next_to_channels"],
)
def test_output_aimed_at_an_input_is_refused(work, tmp_path, capsys, layout):
    data = tmp_path / "data"
    if layout == "same_file":
        _folder(data, ["scan.nii.gz"])
        src, out = data / "scan.nii.gz", data / "scan.nii.gz"
    elif layout == "dot_path":  # another spelling of the same file
        _folder(data, ["scan.nii.gz"])
        src, out = data / "scan.nii.gz", data / "." / ".." / "data" / "scan.nii.gz"
    elif layout == "same_folder_plain":
        _folder(data, ["a.nii.gz", "b.nii.gz"])
        src, out = data, data
    elif layout == "same_folder_nnunet":
        _folder(data, ["case1_0000.nii.gz", "case2_0000.nii.gz"])
        src, out = data, data
    elif layout == "symlink":
        _folder(data, ["scan.nii.gz"])
        (tmp_path / "link.nii.gz").symlink_to(data / "scan.nii.gz")
        src, out = data / "scan.nii.gz", tmp_path / "link.nii.gz"
    elif layout == "hard_link":
        _folder(data, ["scan.nii.gz"])
        os.link(data / "scan.nii.gz", tmp_path / "twin.nii.gz")
        src, out = data / "scan.nii.gz", tmp_path / "twin.nii.gz"
    else:  # next_to_channels: CASE.nii.gz beside CASE_0000.nii.gz would make the folder unreadable
        _folder(data, ["case1_0000.nii.gz"])
        src, out = data / "case1_0000.nii.gz", data / "case1.nii.gz"
    before = tree(tmp_path)
    line = refused(["predict", "-i", str(src), "-o", str(out), "-m", str(work)], capsys)
    assert str(out) in line or str(out.name) in line
    assert str(data) in line  # the input (file or folder) is named too
    assert tree(tmp_path) == before  # inputs' sha256 unchanged, nothing written


def test_folder_output_inside_a_list_files_folder_overwriting_an_input_is_refused(work, tmp_path, capsys):
    data = _folder(tmp_path / "data", ["scan.nii.gz"])
    listing = tmp_path / "cases.txt"
    listing.write_text("data/scan.nii.gz\n")
    before = tree(tmp_path)
    line = refused(["predict", "-i", str(listing), "-o", str(data), "-m", str(work)], capsys)
    assert "is the input file" in line
    assert tree(tmp_path) == before


def test_output_folder_equal_to_the_mask_folder_is_refused(work, tmp_path, capsys):
    images = _folder(tmp_path / "images", ["case1_0000.nii.gz"])
    masks = tmp_path / "masks"
    write_image(Volume(np.ones((10, 24, 24), np.uint8), SPACING, (1.0, 2.0, 3.0)), masks / "case1.nii.gz")
    before = tree(tmp_path)
    line = refused(["predict", "-i", str(images), "-o", str(masks), "-b", str(masks), "-m", str(work)], capsys)
    assert str(masks) in line
    assert tree(tmp_path) == before


def test_foreign_file_refused_unless_overwrite_and_own_outputs_replaced(work, tmp_path, capsys):
    src = _folder(tmp_path / "in", ["a.nii.gz", "b.nii.gz"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.nii.gz").write_bytes(b"the user's own file")
    line = refused(["predict", "-i", str(src), "-o", str(out), "-m", str(work)], capsys)
    assert "was not written by voxseg" in line and "--overwrite" in line and str(out / "a.nii.gz") in line
    assert sorted(p.name for p in out.iterdir()) == ["a.nii.gz"]  # nothing written
    assert main(["predict", "-i", str(src), "-o", str(out), "-m", str(work), "--overwrite"]) == 0
    assert read_image(out / "a.nii.gz").array.max() == 1
    capsys.readouterr()
    # voxseg's own outputs (listed in predictions.json) are replaced without --overwrite
    assert main(["predict", "-i", str(src), "-o", str(out), "-m", str(work), "--no-resume"]) == 0
    assert "2 predicted" in capsys.readouterr().out


# ---- temporaries: never an image name, stale ones removed by the next run -----------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_dead_writers_are_removed_live_ones_kept(work, tmp_path, capsys):
    src = _folder(tmp_path / "in", ["a.nii.gz"])
    out = tmp_path / "out"
    out.mkdir()
    dead, alive = _dead_pid(), os.getppid()
    stale_file = out / f".a.nii.gz.{dead}.k2j3h4.part"
    stale_file.write_bytes(b"half a mask")
    stale_dir = out / f".a.nii.gz.{dead}.zz9.part"
    stale_dir.mkdir()
    (stale_dir / "a.nii.gz").write_bytes(b"half")
    assert not list(out.glob("*.nii.gz"))  # no temporary of this voxseg looks like an image
    legacy = out / ".a.nii.gz.abcd1234.tmp.nii.gz"  # an older voxseg's temporary, hours old
    legacy.write_bytes(b"old")
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))
    live = out / f".a.nii.gz.{alive}.live01.part"  # a running writer's: kept
    live.write_bytes(b"in progress")
    assert main(["predict", "-i", str(src), "-o", str(out), "-m", str(work)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["a.nii.gz", "predictions.json", live.name])
    assert clean_stale_parts(out) == []  # the live writer's file stays


# ---- a full disk: one line naming the file, nothing partial ---------------------------------------
@pytest.fixture
def tiny_fs(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    try:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a small tmpfs here ({exc}): needs root or CAP_SYS_ADMIN")
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.decode().strip()}): needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False, timeout=30)


def _noise(shape=(64, 64, 64)) -> Volume:
    return Volume(np.random.default_rng(0).random(shape, dtype=np.float32), SPACING)


@pytest.mark.parametrize("name", ["big.nii.gz", "big.nii", "big.nrrd", "big.tif"])
def test_disk_full_one_line_and_nothing_partial(tiny_fs, name):
    (tiny_fs / "keep.txt").write_text("kept")
    with pytest.raises(DiskFullError) as info:
        write_image(_noise(), tiny_fs / name)  # 1 MiB of noise, twice: the second cannot fit
        write_image(_noise((96, 96, 96)), tiny_fs / f"second_{name}")
    message = str(info.value)
    assert "\n" not in message and "disk full" in message and "free disk space" in message
    assert name in message
    leftovers = [p.name for p in tiny_fs.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no .part file or folder
    for p in tiny_fs.iterdir():  # whatever is there is complete
        if p.name != "keep.txt" and not p.name.endswith(".json"):
            read_image(p)


def test_disk_full_during_batch_predict_cli(work, tiny_fs, tmp_path, capsys):
    src = _folder(tmp_path / "in", ["a.nii.gz"])
    write_image(_noise((48, 64, 64)), src / "b.nii.gz")
    (tiny_fs / "filler").write_bytes(os.urandom(2 * 1024 * 1024 - 40 * 1024))  # leave ~40 KiB
    code = main(["predict", "-i", str(src), "-o", str(tiny_fs), "-m", str(work), "--probabilities"])
    captured = capsys.readouterr()
    assert code == 1
    assert "disk full" in captured.err + captured.out
    assert [p.name for p in tiny_fs.iterdir() if p.name.startswith(".")] == []
    for p in tiny_fs.glob("*.nii.gz"):
        read_image(p)  # complete or absent


# ---- a NIfTI too large for the limit is called too large, not corrupt ----------------------------
def test_too_large_nifti_names_the_limit_and_how_to_raise_it(tmp_path, monkeypatch):
    path = write_image(Volume(np.zeros((64, 64, 64), np.int16)), tmp_path / "ok.nii.gz")
    monkeypatch.setenv("VOXSEG_MAX_IMAGE_GB", "0.0001")  # ~107 kB; the image holds 512 kB
    with pytest.raises(InputImageError) as info:
        read_image(path)
    text = str(info.value)
    assert "too large" in text and "VOXSEG_MAX_IMAGE_GB" in text and "0.00 GiB" in text
    assert "truncated" not in text and "corrupt" not in text
    monkeypatch.setenv("VOXSEG_MAX_IMAGE_GB", "1")
    assert read_image(path).shape == (64, 64, 64)


def test_sparse_huge_nifti_is_refused_before_reading(tmp_path, monkeypatch):
    """A 32 GiB uncompressed NIfTI (sparse on disk) is refused from its header in milliseconds."""
    small = write_image(Volume(np.zeros((2, 2, 2), np.uint8)), tmp_path / "small.nii")
    header = bytearray(small.read_bytes()[:352])
    header[40:56] = np.array([3, 4096, 4096, 2048, 1, 1, 1, 1], "<i2").tobytes()
    big = tmp_path / "huge.nii"
    with open(big, "wb") as fh:
        fh.write(header)
        fh.truncate(352 + 4096 * 4096 * 2048)
    monkeypatch.setenv("VOXSEG_MAX_IMAGE_GB", "4")
    t0 = time.perf_counter()
    with pytest.raises(InputImageError, match=r"too large.*32.00 GiB.*4.00 GiB"):
        read_image(big)
    assert time.perf_counter() - t0 < 2.0


# ---- killed for real, rerun, compared with an uninterrupted run -----------------------------------
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "voxseg", *args]


def _arrays(out: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(np.ascontiguousarray(read_image(p).array).tobytes()).hexdigest()
        for p in sorted(out.glob("*.nii.gz"))
    }


@pytest.fixture(scope="module")
def batch(tmp_path_factory, unet_work):
    """Four small cases, and the outputs and time of an uninterrupted run."""
    root = tmp_path_factory.mktemp("batch")
    src = root / "in"
    for k in range(4):
        write_image(ball(k, shape=(20, 40, 40)), src / f"case{k}_0000.nii.gz")
    out = root / "reference"
    t0 = time.perf_counter()
    run = subprocess.run(
        _cli("predict", "-i", str(src), "-o", str(out), "-m", str(unet_work), "--threads", "1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    return src, _arrays(out), time.perf_counter() - t0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_9_at_a_random_moment_then_rerun_gives_the_uninterrupted_outputs(batch, unet_work, tmp_path, seed):
    src, reference, seconds = batch
    out = tmp_path / "out"
    argv = _cli("predict", "-i", str(src), "-o", str(out), "-m", str(unet_work), "--threads", "1")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    delay = np.random.default_rng(seed).uniform(0.3, 0.8) * seconds  # model load ... last writes
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed, not finished
    for p in out.glob("*.nii.gz") if out.exists() else []:
        read_image(p)  # every visible output is complete, whatever the moment of the kill
    assert not (out.exists() and list(out.glob("*.nii.gz.*")))  # no temporary with an image name
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert _arrays(out) == reference
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # the killed run's .part removed
    manifest = json.loads((out / "predictions.json").read_text())
    assert sorted(manifest["cases"]) == [f"case{k}" for k in range(4)]
    assert all(entry["status"] == "ok" for entry in manifest["cases"].values())


@pytest.mark.slow
def test_two_predicts_into_one_folder_share_the_work_and_lose_no_entry(batch, unet_work, tmp_path):
    src, reference, _ = batch
    out = tmp_path / "out"
    argv = _cli("predict", "-i", str(src), "-o", str(out), "-m", str(unet_work), "--threads", "1")
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    predicted = [int(stdout.split(" predicted")[0].split()[-1]) for stdout, _ in results]
    assert sum(predicted) == 4  # every case predicted once, by one of the two
    assert _arrays(out) == reference
    manifest = json.loads((out / "predictions.json").read_text())
    assert sorted(manifest["cases"]) == [f"case{k}" for k in range(4)]
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_guard_refuses_before_writing_in_the_library_api(work, tmp_path):
    from voxseg.inference.batch import predict_folder
    from voxseg.models.resolve import resolve_model

    src = _folder(tmp_path / "in", ["x_0000.nii.gz"])
    before = tree(tmp_path)
    with pytest.raises(OutputPathError, match="input folder"):
        predict_folder(src, src, resolve_model(work))
    assert tree(tmp_path) == before
