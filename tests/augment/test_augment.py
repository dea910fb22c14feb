import numpy as np
import pytest
import torch

from voxseg.augment import build_augmentation
from voxseg.errors import ConfigError


def _batch(ndim=3, n=3):
    rng = np.random.default_rng(0)
    img = rng.random((n, 1, *([20] * ndim))).astype(np.float32)
    lab = (img > 0.6).astype(np.int16)
    lab[img < 0.05] = 3  # an ignore label survives augmentation as a value
    return img, lab


@pytest.mark.parametrize("ndim", [2, 3])
def test_spatial_transforms_move_image_and_label_together(ndim):
    img, lab = _batch(ndim)
    aug = build_augmentation("light", ndim)
    x, y = aug(img, lab, np.random.default_rng(4))
    assert type(x) is torch.Tensor and x.dtype == torch.float32 and y.dtype == torch.int16
    expected = (x > 0.6).to(torch.int16)
    expected[x < 0.05] = 3
    assert torch.equal(expected, y)  # flips applied identically to both
    assert not torch.equal(x, torch.from_numpy(img))  # something happened


def test_default_preset_is_seeded_and_keeps_label_values():
    img, lab = _batch(3)
    aug = build_augmentation("default", 3)
    x1, y1 = aug(img, lab, np.random.default_rng(7))
    x2, y2 = aug(img, lab, np.random.default_rng(7))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert set(torch.unique(y1).tolist()) <= {0, 1, 3}
    x3, _ = aug(img, lab, np.random.default_rng(8))
    assert not torch.equal(x1, x3)


def test_none_is_identity_and_unknown_is_refused():
    img, lab = _batch(2)
    x, y = build_augmentation("none", 2)(img, lab, np.random.default_rng(0))
    assert np.array_equal(x.numpy(), img) and np.array_equal(y.numpy(), lab)
    with pytest.raises(ConfigError, match="unknown augmentation"):
        build_augmentation("heavy", 3)


def test_prompt_channels_move_with_the_image_but_get_no_intensity_transform():
    rng = np.random.default_rng(1)
    n, c = 4, 0.8
    img = np.full((n, 2, 12, 16, 16), c, dtype=np.float32)  # channel 0 image, channel 1 prompt
    lab = (rng.random((n, 1, 12, 16, 16)) > 0.5).astype(np.int16)
    aug = build_augmentation("default", 3, prompt_channels=1)
    image_changed = 0
    for seed in range(30):
        x, _ = aug(img, lab, np.random.default_rng(seed))
        prompt, image = x[:, 1], x[:, 0]
        # spatial moves only: zero padding and interpolation between 0 and c, never noise or gamma
        assert float(prompt.max()) <= c + 1e-5 and float(prompt.min()) >= -1e-6
        image_changed += int(float(image.max()) > c + 1e-3 or float((image - c).abs().min()) > 1e-3)
    assert image_changed > 0  # the image channel itself did get intensity transforms


def test_prompt_channels_are_flipped_with_the_label():
    rng = np.random.default_rng(2)
    lab = (rng.random((3, 1, 10, 12, 14)) > 0.5).astype(np.int16)
    img = np.concatenate([rng.random((3, 1, 10, 12, 14)), lab], axis=1).astype(np.float32)
    x, y = build_augmentation("light", 3, prompt_channels=1)(img, lab, np.random.default_rng(5))
    assert torch.equal(x[:, 1:].to(torch.int16), y)
    assert not torch.equal(y, torch.from_numpy(lab))
    with pytest.raises(ConfigError, match="prompt channel"):
        build_augmentation("light", 3, prompt_channels=2)(img, lab, np.random.default_rng(5))
