"""The hostile-file corpus: every crafted file is refused through the real CLI in one line.

Each case of :mod:`tests.reliability.corpus` is fed to ``voxseg`` in a subprocess: exit code
non-zero, exactly one (non-blank) line on stderr naming the file and no traceback, every input
file byte-for-byte unchanged, nothing written to the output location. Then the library loaders
are fuzzed with hypothesis: random JSON for dataset.json / bundle.json / points files and
random safetensors headers may only raise VoxsegError subclasses.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voxseg.bundle._util import safetensors_problem
from voxseg.bundle.manifest import BundleManifest
from voxseg.bundle.safetensors_header import HeaderProblem, parse_safetensors_header
from voxseg.dataset import DatasetSpec
from voxseg.errors import VoxsegError
from voxseg.interactive.pointfile import read_points
from voxseg.io.safe_json import loads_json, read_json
from voxseg.nets.bounds import network_spec_problem

from .corpus import ALL, DEEP

SRC = Path(__file__).resolve().parents[2] / "src"


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _voxseg(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "400", "VOXSEG_INDEX": ""}
    cmd = [sys.executable, "-m", "voxseg", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("name", sorted(ALL))
def test_hostile_file_is_refused_in_one_line(name, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    case = ALL[name](inputs)
    before = _digests(inputs)
    done = _voxseg(case.args, tmp_path)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode != 0, f"{name}: exit 0\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, f"{name}: stderr has {len(lines)} lines:\n{done.stderr}"
    assert str(case.names) in lines[0], f"{name}: {lines[0]!r} does not name {case.names}"
    assert ".install." not in lines[0], f"{name}: names a deleted staging folder"
    assert _digests(inputs) == before, f"{name}: an input file changed"
    out = case.output
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*")), f"{name}: wrote into {out}"
    cache = tmp_path / "in" / "cache"
    assert not cache.exists() or not any(p.is_file() for p in (cache / "bundles").rglob("*"))


def test_the_corpus_is_large_enough():
    assert len(ALL) >= 40


# -- the shared JSON loader ---------------------------------------------------------------------------


def test_safe_json_refuses_depth_size_nan_and_bad_utf8(tmp_path):
    cases = {
        "deep.json": (DEEP, "nested 1000 levels"),
        "big.json": (b'"' + b"x" * 5000 + b'"', "larger than the 4000-byte cap"),
        "nan.json": (b'{"a": NaN}', "NaN is not valid JSON"),
        "inf.json": (b"[-Infinity]", "-Infinity is not valid JSON"),
        "latin1.json": (b'{"a": "\xe9"}', "not UTF-8"),
        "broken.json": (b'{"a": ', "not valid JSON"),
    }
    for fname, (data, needle) in cases.items():
        path = tmp_path / fname
        path.write_bytes(data)
        with pytest.raises(VoxsegError) as err:
            read_json(path, max_bytes=4000)
        assert needle in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
    # brackets inside strings do not count, and ordinary JSON passes
    text = json.dumps({"a": "[" * 100 + '\\"{'})
    assert loads_json(text, source="x") == {"a": "[" * 100 + '\\"{'}
    assert read_json(_write(tmp_path / "ok.json", {"a": [1, 2.5, None]})) == {"a": [1, 2.5, None]}


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


# -- hypothesis: structured fuzzing of the library loaders --------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
KEYS = st.sampled_from(
    ["channel_names", "labels", "numTraining", "file_ending", "files", "network", "plan", "points", "name", "0"]
)
OBJECTS = st.dictionaries(KEYS, JSON, max_size=6)
FUZZ = settings(
    max_examples=int(os.environ.get("VOXSEG_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(data=OBJECTS | JSON)
def test_random_dataset_json_gives_only_voxseg_errors(data, tmp_path):
    try:
        DatasetSpec.from_json(data, tmp_path / "dataset.json")
    except VoxsegError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(data=OBJECTS | JSON)
def test_random_bundle_json_gives_only_voxseg_errors(data):
    try:
        BundleManifest.loads(json.dumps(data))
    except VoxsegError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(data=OBJECTS | JSON)
def test_random_points_file_gives_only_voxseg_errors(data, tmp_path):
    path = tmp_path / "points.json"
    path.write_text(json.dumps(data))
    try:
        read_points(path)
    except VoxsegError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(
    kwargs=st.dictionaries(
        st.sampled_from(
            ["spatial_dims", "in_channels", "out_channels", "filters", "channels", "kernel_size", "strides"]
        ),
        JSON,
        max_size=7,
    )
)
def test_random_network_kwargs_give_a_problem_or_none(kwargs):
    problem = network_spec_problem(kwargs, weights_numel=1000)
    assert problem is None or isinstance(problem, str)


TENSOR = st.fixed_dictionaries(
    {},
    optional={
        "dtype": st.sampled_from(["F32", "F16", "I64", "BOOL", "F128", 3]) | JSON,
        "shape": st.lists(st.integers(-2, 2**40), max_size=3) | JSON,
        "data_offsets": st.lists(st.integers(-5, 2**40) | st.floats(allow_nan=False), max_size=3) | JSON,
    },
)


@FUZZ
@given(header=st.dictionaries(st.text(max_size=4), TENSOR | JSON, max_size=3), data=st.binary(max_size=64))
def test_random_safetensors_headers_give_a_problem_not_a_crash(header, data):
    text = json.dumps(header).encode()
    raw = struct.pack("<Q", len(text)) + text + data
    problem = safetensors_problem(raw, len(raw))
    try:
        tensors = parse_safetensors_header(raw, len(raw))
    except HeaderProblem:
        assert problem is not None
        return
    assert problem is None
    assert sum(t.end - t.begin for t in tensors.values()) == len(data)


# -- every loader of a JSON file gives one VoxsegError line on a crafted one -------------------------


def _loaders():
    from voxseg.bundle.index import load_index
    from voxseg.dataset.splits import read_splits
    from voxseg.fingerprint.model import Fingerprint
    from voxseg.planning import Plan
    from voxseg.postprocessing import PostprocessingSpec

    return {
        "plan.json": Plan.load,
        "fingerprint.json": Fingerprint.load,
        "postprocessing.json": PostprocessingSpec.load,
        "splits.json": read_splits,
        "points.json": read_points,
        "index.json": lambda p: load_index(p, offline=True),
    }


@pytest.mark.parametrize("content", [DEEP, b'{"a": NaN}', b"\xff\xfe{}", b'{"a": [1, 2'])
def test_json_loaders_refuse_crafted_files_in_one_line(content, tmp_path):
    for name, load in _loaders().items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(VoxsegError) as err:
            load(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value), name


def test_a_crafted_predictions_manifest_means_redo_every_case(tmp_path):
    from voxseg.inference.batch import load_manifest

    path = tmp_path / "predictions.json"
    path.write_bytes(b'{"cases": ' + DEEP + b"}")
    assert load_manifest(path) == {}


def test_network_bounds_accept_the_built_in_models_and_refuse_absurd_specs():
    from voxseg.bundle import open_bundle

    from .corpus import BASE_BUNDLE

    kwargs = dict(open_bundle(BASE_BUNDLE).manifest.config.network.kwargs)
    assert network_spec_problem(kwargs, weights_numel=10**6) is None
    assert "channels must be in" in network_spec_problem({**kwargs, "filters": [1 << 20, 16]})
    assert "weights hold 1,000" in network_spec_problem({**kwargs, "filters": [512, 1024]}, weights_numel=1000)
    assert "kernel sizes" in network_spec_problem({**kwargs, "kernel_size": [[1 << 10] * 3] * 4})
    assert "levels" in network_spec_problem({**kwargs, "filters": [8] * 40})
    assert "spatial_dims" in network_spec_problem({**kwargs, "spatial_dims": 7})
