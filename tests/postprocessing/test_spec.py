"""PostprocessingSpec: JSON round trip, validation with teaching messages, application."""

from __future__ import annotations

import json

import numpy as np
import pytest

from voxseg.errors import ConfigError, UnknownNameError
from voxseg.io import Volume
from voxseg.postprocessing import (
    OPS,
    PostprocessingSpec,
    Step,
    apply_postprocessing,
    fill_holes,
    instances,
    keep_largest,
    remove_small_objects,
)

from .helpers import ball

SPEC_JSON = {
    "schema_version": 1,
    "classes": {
        "1": [{"op": "keep_largest"}, {"op": "fill_holes"}],
        "2": [{"op": "remove_small", "min_size": 20}],
    },
    "final": [{"op": "instances", "min_size": 150}],
}


def test_json_round_trip(tmp_path):
    spec = PostprocessingSpec.from_json(SPEC_JSON)
    assert spec.to_json() == SPEC_JSON
    assert spec.steps_for(1) == (Step.of("keep_largest"), Step.of("fill_holes"))
    assert spec.steps_for(3) == ()
    assert spec.makes_instances and not spec.is_identity
    path = spec.save(tmp_path / "postprocessing.json")
    assert json.loads(path.read_text()) == SPEC_JSON
    assert PostprocessingSpec.load(path) == spec
    assert hash(PostprocessingSpec.load(path)) == hash(spec)
    built = PostprocessingSpec(
        classes={2: [Step.of("remove_small", min_size=np.int64(20))], 1: [Step.of("keep_largest"), "fill_holes"]},
        final=[Step.of("instances", min_size=150)],
    )
    assert built == spec and json.dumps(built.to_json())  # numpy ints become plain ints
    assert PostprocessingSpec().is_identity and PostprocessingSpec.from_json({}).to_json() == {
        "schema_version": 1,
        "classes": {},
        "final": [],
    }


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        ({"classes": {"1": [{"op": "keep_larges"}]}}, UnknownNameError, "did you mean keep_largest"),
        ({"classes": {"1": [{"op": "remove_small", "minsize": 3}]}}, ConfigError, "takes min_size"),
        ({"classes": {"1": [{"op": "remove_small"}]}}, ConfigError, "exactly one"),
        ({"classes": {"1": [{"op": "remove_small", "min_size": -1}]}}, ConfigError, "integer >= 0"),
        ({"classes": {"1": [{"op": "keep_largest", "connectivity": 5}]}}, ConfigError, "connectivity"),
        ({"classes": {"1": [{"op": "instances"}]}}, ConfigError, "put it in 'final'"),
        ({"final": [{"op": "instances"}, {"op": "fill_holes"}]}, ConfigError, "last final step"),
        ({"classes": {"0": [{"op": "fill_holes"}]}}, ConfigError, "foreground label"),
        ({"classes": {"liver": [{"op": "fill_holes"}]}}, ConfigError, "keyed by label value"),
        ({"classes": {"1": {"op": "fill_holes"}}}, ConfigError, "list of steps"),
        ({"schema_version": 2}, ConfigError, "newer"),
        ({"clases": {}}, ConfigError, "unknown key"),
    ],
)
def test_invalid_specs_are_refused_with_a_hint(data, error, message):
    with pytest.raises(error, match=message):
        PostprocessingSpec.from_json(data)


def test_load_bad_file(tmp_path):
    bad = tmp_path / "pp.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read"):
        PostprocessingSpec.load(bad)


def _labels() -> np.ndarray:
    lab = np.zeros((16, 40, 40), np.uint8)
    lab[ball(lab.shape, (8, 12, 12), 6)] = 1
    lab[8, 12, 12] = 0  # a hole in class 1
    lab[2, 30, 30] = 1  # a stray voxel of class 1
    lab[ball(lab.shape, (8, 28, 28), 5)] = 2
    lab[14, 2:4, 2:4] = 2  # a 4-voxel blob of class 2
    return lab


def test_apply_matches_the_functions_step_by_step():
    lab = _labels()
    before = lab.copy()
    spec = PostprocessingSpec.from_json({k: v for k, v in SPEC_JSON.items() if k != "final"})
    out = apply_postprocessing(lab, spec)
    expected = keep_largest(lab, classes=[1])
    expected = fill_holes(expected, classes=[1])
    expected = remove_small_objects(expected, min_size=20, classes=[2])
    assert np.array_equal(out, expected) and np.array_equal(lab, before)
    assert out[8, 12, 12] == 1 and out[2, 30, 30] == 0 and out[14, 2, 2] == 0
    assert out.dtype == lab.dtype
    with_instances = apply_postprocessing(lab, PostprocessingSpec.from_json(SPEC_JSON))
    assert np.array_equal(with_instances, instances(expected, min_size=150))
    identity = apply_postprocessing(lab, PostprocessingSpec())
    assert np.array_equal(identity, lab) and identity is not lab


def test_apply_min_volume_uses_volume_spacing():
    vol = Volume(_labels(), (2.0, 1.0, 1.0))
    spec = PostprocessingSpec(final=[Step.of("remove_small", min_volume=10.0)])  # 4-voxel blob = 8 mm³
    out = apply_postprocessing(vol, spec)
    assert isinstance(out, Volume) and out.same_geometry(vol)
    assert out.array[14, 2, 2] == 0 and out.array[8, 28, 28] == 2 and out.array[2, 30, 30] == 0
    with pytest.raises(ConfigError, match="pass spacing"):
        apply_postprocessing(vol.array, spec)


def test_registry_lists_ops():
    assert OPS.names() == ["fill_holes", "instances", "keep_largest", "remove_small", "split_instances"]
    assert OPS.get("instances").final_only
    assert OPS.get("split_instances").final_only
