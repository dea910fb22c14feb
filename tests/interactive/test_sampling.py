"""PromptSampler on real preprocessed cases, PromptConfig as plan data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from voxseg.dataset.phantoms import generate_case
from voxseg.errors import ConfigError, UnknownNameError
from voxseg.interactive import extreme_points
from voxseg.interactive.config import PromptConfig
from voxseg.interactive.sampling import PromptSampler, find_objects, prompt_inputs
from voxseg.planning import Normalization
from voxseg.preprocessing import preprocess_case
from voxseg.preprocessing.store import write_preprocessed
from voxseg.training.sampling import load_cases

SPACING = (3.0, 1.0, 1.0)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Two soft-tissue phantom cases, preprocessed (z-score, 3 x 1 x 1 mm) and stored."""
    out = tmp_path_factory.mktemp("preprocessed")
    prefixes = []
    for index in range(2):
        raw = generate_case("soft-tissue-mri", index, size=(20, 56, 56))
        case = preprocess_case(raw.images, raw.label, target_spacing=SPACING, normalization=[Normalization("zscore")])
        write_preprocessed(out / f"sts_{index}", case)
        prefixes.append(str(out / f"sts_{index}"))
    return load_cases(prefixes)


def test_prompt_config_round_trips_through_plan_json():
    cfg = PromptConfig(encoding="gaussian", encoding_params={"sigma_mm": 4.0}, inward=(1, 2, 2), margin_mm=8)
    data = json.loads(json.dumps(cfg.to_json()))
    assert data["inward"] == [1.0, 2.0, 2.0] and data["encoding"] == "gaussian"
    assert PromptConfig.from_json(data) == cfg
    assert PromptConfig.from_json({"prompt": "extreme_points", "encoding": "geodesic"}) == PromptConfig()
    with pytest.raises(ConfigError, match="unknown interactive setting"):
        PromptConfig.from_json({"encodng": "geodesic"})
    with pytest.raises(UnknownNameError, match="did you mean gaussian"):
        PromptConfig(encoding="gausian")
    with pytest.raises(ConfigError, match="fit"):
        PromptConfig(fit="stretch")


def test_samples_have_the_patch_shape_an_encoding_channel_and_the_object(cases):
    sampler = PromptSampler(cases, (16, 48, 48), spacing=SPACING)
    rng = np.random.default_rng(0)
    for _ in range(3):
        image, target = sampler.sample(rng)
        assert image.shape == (2, 16, 48, 48) and image.dtype == np.float32
        assert target.shape == (1, 16, 48, 48) and target.dtype == np.int16
        assert set(np.unique(target)) <= {0, 1} and target.sum() > 0
        encoding = image[1]
        assert encoding.min() >= 0.0 and encoding.max() <= 1.0
        # the points (encoding == 1) sit in or next to the object (jitter is 2 mm)
        hot = np.argwhere(encoding == 1.0)
        assert len(hot) >= 1
    batch_x, batch_y = sampler.batch(rng, 2)
    assert batch_x.shape == (2, 2, 16, 48, 48) and batch_y.shape == (2, 1, 16, 48, 48)


def test_fresh_points_every_draw_and_seeded(cases):
    sampler = PromptSampler(cases[:1], (16, 48, 48), spacing=SPACING, config=PromptConfig(fit="resize"))
    a = sampler.sample(np.random.default_rng(1))
    b = sampler.sample(np.random.default_rng(1))
    c = sampler.sample(np.random.default_rng(2))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0][1], c[0][1])  # other jitter, other encoding


def test_resize_keeps_the_whole_object(cases):
    cfg = PromptConfig(fit="resize", jitter_mm=0.0, encoding="gaussian")
    sampler = PromptSampler(cases[:1], (8, 24, 24), spacing=SPACING, config=cfg)
    image, target = sampler.sample(np.random.default_rng(0))
    assert image.shape == (2, 8, 24, 24)
    # the object fills the crop up to the margin: it reaches near every face of the patch
    fg = np.argwhere(target[0])
    assert fg.min(axis=0).max() <= 8 and (np.asarray((8, 24, 24)) - fg.max(axis=0)).max() <= 9


def test_prompt_inputs_matches_inference_use(cases):
    case = cases[0]
    points = extreme_points(case.label, spacing=SPACING)
    x, box = prompt_inputs(np.asarray(case.data), points, config=PromptConfig(margin_mm=5.0), spacing=SPACING)
    assert x.shape[0] == 2 and x.shape[1:] == box.shape
    np.testing.assert_array_equal(x[0], np.asarray(case.data)[0][box.slices])
    local = points - np.asarray(box.start)
    assert np.all(x[1][tuple(local.T)] == 1.0)
    with pytest.raises(ConfigError, match="encoding_channel"):
        prompt_inputs(np.asarray(case.data), points, config=PromptConfig(), spacing=SPACING, encoding_channel=3)


def test_target_is_only_the_prompted_object():
    label = np.zeros((10, 30, 30), np.uint8)
    label[3:7, 3:10, 3:10] = 1
    label[3:7, 14:20, 14:20] = 1  # a second object of the same class, inside the crop
    data = np.random.default_rng(0).normal(size=(1, 10, 30, 30)).astype(np.float32)

    class Case:
        pass

    case = Case()
    case.data, case.label = data, label
    objs = find_objects(label)
    assert len(objs) == 2 and all(o.value == 1 for o in objs)
    cfg = PromptConfig(jitter_mm=0.0, margin_mm=30.0, encoding="gaussian")
    sampler = PromptSampler([case], (10, 30, 30), spacing=(1, 1, 1), config=cfg)
    for seed in range(4):
        _, target = sampler.sample(np.random.default_rng(seed))
        assert target.sum() in (4 * 7 * 7, 4 * 6 * 6)  # one object, never both


def test_cases_without_objects_are_refused():
    class Case:
        data = np.zeros((1, 4, 8, 8), np.float32)
        label = np.zeros((4, 8, 8), np.uint8)

    with pytest.raises(ConfigError, match="no case has a labelled object"):
        PromptSampler([Case()], (4, 8, 8), spacing=(1, 1, 1))
    with pytest.raises(ConfigError, match="patch size"):
        PromptSampler([Case()], (8, 8), spacing=(1, 1, 1))


def test_config_for_spacing():
    cfg = PromptConfig.for_spacing((3.0, 0.8, 0.8), encoding="gaussian")
    assert cfg.inward == (0.0, 1.0, 1.0) and cfg.encoding == "gaussian"  # 1 mm: the last 3 mm slice, 1 voxel in-plane
    assert PromptConfig.for_spacing((3.0, 0.8, 0.8), inward_mm=3.0).inward == (1.0, 4.0, 4.0)
    assert PromptConfig.for_spacing((0.5, 0.5), inward_mm=0.1).inward == (0.0, 0.0)
    assert cfg.clip_mm == 3.0
    with pytest.raises(ConfigError, match="clip_mm"):
        PromptConfig(clip_mm=-1)


def test_2d_cases():
    label = np.zeros((40, 50), np.uint8)
    label[10:25, 12:40] = 1
    data = np.random.default_rng(0).normal(size=(2, 40, 50)).astype(np.float32)

    class Case:
        pass

    case = Case()
    case.data, case.label = data, label
    sampler = PromptSampler([case], (32, 32), spacing=(0.5, 0.5), config=PromptConfig.for_spacing((0.5, 0.5)))
    image, target = sampler.sample(np.random.default_rng(0))
    assert image.shape == (3, 32, 32) and target.shape == (1, 32, 32) and target.any()
