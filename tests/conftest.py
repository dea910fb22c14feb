"""Shared fixtures: tiny synthetic datasets written to real files on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voxseg.dataset import DatasetSpec, DatasetWriter
from voxseg.io import Volume

SPACING = (2.0, 0.8, 0.8)
ORIGIN = (-10.0, 5.0, 3.0)


def make_case(rng: np.random.Generator, shape=(12, 20, 20), n_channels=1, empty=False):
    zz, yy, xx = np.indices(shape)
    c = [s // 2 + int(rng.integers(-2, 3)) for s in shape]
    sphere = ((zz - c[0]) * 2.0) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 < rng.uniform(9, 25)
    label = np.zeros(shape, np.uint8) if empty else sphere.astype(np.uint8)
    images = []
    for k in range(n_channels):
        img = rng.normal(100 + 10 * k, 10, shape).astype(np.float32) + 80 * label
        images.append(Volume(img, SPACING, ORIGIN))
    return images, Volume(label, SPACING, ORIGIN)


def write_tiny_dataset(
    root: Path,
    *,
    cases: int = 4,
    n_channels: int = 1,
    seed: int = 0,
    file_ending: str = ".nii.gz",
    empty: tuple[int, ...] = (),
) -> Path:
    rng = np.random.default_rng(seed)
    channels = {k: ("CT" if k == 0 else f"MR{k}") for k in range(n_channels)}
    spec = DatasetSpec("tiny", channels, {"background": 0, "tumor": 1}, file_ending)
    with DatasetWriter(root, spec) as writer:
        for i in range(cases):
            images, label = make_case(rng, n_channels=n_channels, empty=i in empty)
            writer.add_case(f"case_{i:03d}", images, label)
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """A valid 4-case, 1-channel 3D dataset in nnU-Net v2 layout."""
    return write_tiny_dataset(tmp_path / "Dataset001_Tiny")


# ---- the end of a whole-suite run ---------------------------------------------------------------
# The full suite (1,363 tests in one process: torch, Qt/napari, OpenVINO, onnxruntime, Ray, MLflow
# loaded together) passed and printed its summary, then the interpreter crashed with SIGSEGV while
# finalizing (exit 139, 2026-12-07); no subset reproduced it (napari + OpenVINO + runners, golden
# tests, benchmark tests: exit 0). So that `make test` reports the tests' own status, the session ends
# with os._exit(status) after pytest has written everything (summary, caches, temporary folders),
# skipping only the native libraries' teardown. VOXSEG_TEST_FINALIZE=1 keeps the normal exit (to debug).
_STATUS: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    _STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    import os
    import sys

    if _STATUS and os.environ.get("VOXSEG_TEST_FINALIZE") != "1" and not hasattr(config, "workerinput"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_STATUS[-1])
