import numpy as np
import pytest

from voxseg.errors import ConfigError
from voxseg.io import Volume
from voxseg.planning import Normalization
from voxseg.preprocessing import preprocess_case
from voxseg.preprocessing.store import write_preprocessed
from voxseg.training.sampling import CaseData, PatchSampler, load_cases, patch_start_bounds


def _write_case(tmp_path, name, label_arr, ignore=None):
    rng = np.random.default_rng(0)
    img = Volume(rng.normal(100, 5, label_arr.shape).astype(np.float32) + 50 * (label_arr == 1), (1, 1, 1))
    case = preprocess_case(
        [img], Volume(label_arr, (1, 1, 1)), target_spacing=(1, 1, 1), normalization=[Normalization("zscore")]
    )
    write_preprocessed(tmp_path / name, case, ignore_label=ignore)
    return str(tmp_path / name)


def _small_object_label(shape=(24, 40, 40)):
    lab = np.zeros(shape, np.uint8)
    lab[10:13, 30:33, 5:8] = 1  # 27 voxels: rare foreground
    return lab


def test_foreground_oversampling_and_determinism(tmp_path):
    prefix = _write_case(tmp_path, "a", _small_object_label())
    sampler = PatchSampler(load_cases([prefix]), (16, 16, 16), oversample_foreground=0.5)
    img, seg = sampler.batch(np.random.default_rng(3), 40)
    assert img.shape == (40, 1, 16, 16, 16) and img.dtype == np.float32
    assert seg.shape == (40, 1, 16, 16, 16)
    with_fg = np.mean([np.any(s == 1) for s in seg])
    assert with_fg >= 0.45  # forced half, plus any uniform hit
    img2, seg2 = sampler.batch(np.random.default_rng(3), 40)
    assert np.array_equal(img, img2) and np.array_equal(seg, seg2)
    none = PatchSampler(load_cases([prefix]), (16, 16, 16), oversample_foreground=0.0)
    _, seg0 = none.batch(np.random.default_rng(3), 40)
    assert np.mean([np.any(s == 1) for s in seg0]) < with_fg


@pytest.mark.parametrize(("batch", "fraction", "forced"), [(2, 0.33, 1), (10, 0.33, 3), (4, 0.5, 2), (2, 0.0, 0)])
def test_every_batch_holds_foreground(tmp_path, batch, fraction, forced):
    prefix = _write_case(tmp_path, "a", _small_object_label())
    sampler = PatchSampler(load_cases([prefix]), (16, 16, 16), oversample_foreground=fraction)
    assert sampler.forced_count(batch) == forced
    for seed in range(20):  # the forced patches are the last ones of each batch, never left to chance
        _, seg = sampler.batch(np.random.default_rng(seed), batch)
        assert all(np.any(s == 1) for s in seg[batch - forced :])


def test_patch_larger_than_case_is_padded(tmp_path):
    prefix = _write_case(tmp_path, "b", _small_object_label((8, 12, 12)))
    img, seg = PatchSampler(load_cases([prefix]), (16, 16, 16)).sample(np.random.default_rng(0))
    assert img.shape == (1, 16, 16, 16) and np.count_nonzero(img) <= 8 * 12 * 12
    assert seg.shape == (1, 16, 16, 16) and set(np.unique(seg)) <= {0, 1}


def test_slices_from_sparse_annotation(tmp_path):
    lab = np.full((20, 24, 24), 3, np.uint8)  # 3 = ignore everywhere...
    for z in (4, 11, 17):  # ...but three annotated slices
        lab[z] = 0
        lab[z, 8:16, 8:16] = 1
    prefix = _write_case(tmp_path, "c", lab, ignore=3)
    sampler = PatchSampler(load_cases([prefix]), (16, 16), oversample_foreground=0.0, ignore_label=3)
    _, seg = sampler.batch(np.random.default_rng(1), 30)
    assert seg.shape == (30, 1, 16, 16)
    assert all(np.any(s != 3) for s in seg)  # every 2D patch comes from an annotated slice


def test_bad_patch_dims(tmp_path):
    prefix = _write_case(tmp_path, "d", _small_object_label())
    with pytest.raises(ConfigError, match="does not fit"):
        PatchSampler(load_cases([prefix]), (16,))


def _coded_case(shape, label):
    """A case whose image holds each voxel's flat index + 1, so a patch shows where it came from."""
    data = (np.arange(np.prod(shape), dtype=np.float32) + 1).reshape((1, *shape))
    locs = {1: np.argwhere(label == 1)} if np.any(label == 1) else {}
    return CaseData("coded", data, label, locs)


@pytest.mark.parametrize("force", [False, True])
def test_patches_lie_inside_the_case_like_prediction_tiles(force):
    """Training patches are placed as prediction places its tiles: never across the border of an
    axis that holds the patch (zero padding there is what no tile ever shows), flush with the
    border as often as the uniform rule gives, and the forced ones still hold their voxel."""
    shape, patch = (24, 40, 40), (16, 16, 16)
    label = _small_object_label(shape)  # object at [10:13, 30:33, 5:8]: near two borders
    sampler = PatchSampler([_coded_case(shape, label)], patch, oversample_foreground=1.0 if force else 0.0)
    rng = np.random.default_rng(0)
    starts = []
    for _ in range(400):
        img, seg = sampler.sample(rng, force_fg=force)
        assert np.all(img > 0), "a patch crossed the case's border"
        first = int(img[0, 0, 0, 0]) - 1
        start = np.unravel_index(first, shape)
        window = tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))
        assert np.array_equal(img[0], sampler.cases[0].data[0][window])
        starts.append(start)
        if force:
            assert np.any(seg == 1)
    starts = np.asarray(starts)
    assert np.all(starts >= 0) and np.all(starts <= np.asarray(shape) - patch)
    if not force:  # uniform: both flush positions of every axis are drawn
        for axis, (size, p) in enumerate(zip(shape, patch, strict=True)):
            assert {0, size - p} <= set(starts[:, axis].tolist())


def test_start_bounds_match_the_tiles_of_a_short_axis():
    from voxseg.inference.tiling import tile_grid

    shape, patch = (8, 12, 40), (16, 16, 16)
    low, high = patch_start_bounds(shape, patch)
    assert low.tolist() == [-4, -2, 0] and high.tolist() == [-4, -2, 24]
    per_axis = tile_grid(shape, patch, 0.5)
    assert per_axis[0] == (low[0],) and per_axis[1] == (low[1],)  # the one tile of a short axis
    assert min(per_axis[2]) == low[2] and max(per_axis[2]) == high[2]
