"""Predictor wrappers: mirror TTA, ensembles, autocast, and labels from probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.networks.nets import UNet

from voxseg.errors import ConfigError
from voxseg.inference import (
    AutocastPredictor,
    Ensemble,
    MirrorTTA,
    cpu_supports_bf16,
    probabilities_to_labels,
    sliding_window,
)


def box_filter(x: torch.Tensor) -> torch.Tensor:
    """A symmetric 3×3(×3) mean: flipping the input flips the output (flip-equivariant)."""
    pool = F.avg_pool3d if x.ndim == 5 else F.avg_pool2d
    return torch.cat([pool(x, 3, stride=1, padding=1), 2 * x], dim=1)


class CountingPredictor:
    def __init__(self, fn):
        self.fn, self.inputs = fn, []

    def __call__(self, x):
        self.inputs.append(x.clone())
        return self.fn(x)


@pytest.mark.parametrize("shape", [(2, 1, 6, 7, 8), (3, 2, 9, 5)])
def test_mirror_tta_of_a_flip_equivariant_predictor_is_the_predictor(shape):
    x = torch.randn(shape)
    counting = CountingPredictor(box_filter)
    out = MirrorTTA(counting)(x)
    torch.testing.assert_close(out, box_filter(x), rtol=1e-5, atol=1e-6)
    # small tiles: every flip combination (identity included) in one call, in order, batch after batch
    assert len(counting.inputs) == 1
    seen = torch.split(counting.inputs[0], shape[0])
    assert len(seen) == 2 ** (len(shape) - 2)
    assert torch.equal(seen[0], x) and torch.equal(seen[-1], x.flip(list(range(2, len(shape)))))


def test_mirror_tta_splits_flips_to_bound_the_call_size():
    from voxseg.inference.tiling import TILE_BATCH_VOXELS

    side = round((TILE_BATCH_VOXELS / 2) ** (1 / 3)) + 1  # two flips of this tile exceed the bound
    x = torch.randn(1, 1, side, side, side)
    counting = CountingPredictor(box_filter)
    out = MirrorTTA(counting)(x)
    assert [len(t) for t in counting.inputs] == [1] * 8  # one flip per call
    torch.testing.assert_close(out, box_filter(x), rtol=1e-5, atol=1e-6)


def test_mirror_tta_averages_flipped_back_outputs():
    x = torch.arange(10.0).reshape(1, 1, 10)
    out = MirrorTTA(lambda t: t.cumsum(-1), axes=(0,))(x)
    torch.testing.assert_close(out, (x.cumsum(-1) + x.flip(-1).cumsum(-1).flip(-1)) / 2)
    y = torch.randn(2, 1, 4, 5, 6)
    only_x = MirrorTTA(lambda t: t.cumsum(-1), axes=[2])
    assert only_x.flips(3) == [(), (4,)]
    torch.testing.assert_close(only_x(y), (y.cumsum(-1) + y.flip(-1).cumsum(-1).flip(-1)) / 2)


def test_mirror_tta_never_aliases_input_or_output():
    x = torch.randn(1, 1, 4, 4)
    keep = x.clone()
    out = MirrorTTA(lambda t: t)(x)
    torch.testing.assert_close(out, x)
    out += 1
    assert torch.equal(x, keep)


def test_mirror_tta_checks_axes():
    with pytest.raises(ConfigError, match="distinct spatial axis"):
        MirrorTTA(box_filter, axes=(0, 0))
    with pytest.raises(ConfigError, match="do not exist in a 2D input"):
        MirrorTTA(box_filter, axes=(2,))(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ConfigError, match="callable"):
        MirrorTTA("net")


def logits(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, -x, 0.5 * x], dim=1)


def test_ensemble_of_identical_predictors_equals_one():
    x = torch.randn(2, 1, 5, 6, 7)
    for activation, expected in [
        ("softmax", torch.softmax(logits(x), 1)),
        ("sigmoid", torch.sigmoid(logits(x))),
        (None, logits(x)),
    ]:
        out = Ensemble([logits, logits, logits], activation=activation)(x)
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-7)
        assert out.dtype == torch.float32


def test_ensemble_averages_probabilities_not_logits():
    x = torch.randn(1, 1, 4, 4)

    def other(t):
        return 3 * logits(t)

    out = Ensemble([logits, other], activation="softmax")(x)
    torch.testing.assert_close(out, (torch.softmax(logits(x), 1) + torch.softmax(other(x), 1)) / 2)
    torch.testing.assert_close(out.sum(1), torch.ones(1, 4, 4))


def test_ensemble_errors():
    with pytest.raises(ConfigError, match="non-empty"):
        Ensemble([])
    with pytest.raises(ConfigError, match="unknown activation 'relu'"):
        Ensemble([logits], activation="relu")
    with pytest.raises(ConfigError, match="use activation='sigmoid'"):
        Ensemble([lambda t: t], activation="softmax")(torch.zeros(1, 1, 2, 2))
    with pytest.raises(ConfigError, match="disagree on the output shape"):
        Ensemble([logits, lambda t: t], activation=None)(torch.zeros(1, 1, 2, 2))


def test_ensemble_does_not_modify_a_members_output():
    stored = torch.ones(1, 2, 3, 3)
    Ensemble([lambda t: stored, lambda t: stored], activation=None)(torch.zeros(1, 1, 3, 3))
    assert torch.equal(stored, torch.ones(1, 2, 3, 3))


def tiny_unet(seed=0, dims=3):
    torch.manual_seed(seed)
    return UNet(dims, 1, 2, channels=(4, 8), strides=(2,), num_res_units=0, dropout=0.5)


def test_wrappers_compose_inside_sliding_window():
    nets = [AutocastPredictor(tiny_unet(seed)) for seed in (0, 1)]
    image = torch.randn(1, 20, 18, 22)
    predictor = Ensemble([MirrorTTA(net) for net in nets], activation="softmax")
    probs = sliding_window(image, predictor, (16, 16, 16), overlap=0.5, batch_size=2)
    assert probs.shape == (2, 20, 18, 22)
    torch.testing.assert_close(probs.sum(0), torch.ones(20, 18, 22))
    one = sliding_window(image, Ensemble([MirrorTTA(nets[0])]), (16, 16, 16), overlap=0.5)
    two = sliding_window(image, Ensemble([MirrorTTA(nets[0])] * 2), (16, 16, 16), overlap=0.5)
    torch.testing.assert_close(one, two)
    labels = probabilities_to_labels(probs)
    assert labels.dtype == torch.uint8 and torch.equal(labels, probs.argmax(0).to(torch.uint8))


def test_autocast_predictor_fp32_is_the_model_in_eval_mode():
    model = tiny_unet().train()
    predictor = AutocastPredictor(model, precision="fp32")
    assert not model.training and predictor.precision == "fp32" and predictor.device == torch.device("cpu")
    x = torch.randn(2, 1, 16, 16, 16)
    out = predictor(x)
    with torch.no_grad():
        expected = model(x)
    assert out.dtype == torch.float32 and torch.equal(out, expected)
    torch.testing.assert_close(predictor(x), out)  # dropout is off: deterministic


@pytest.mark.skipif(not cpu_supports_bf16(), reason="CPU without native bf16")
def test_autocast_predictor_bf16_is_close_and_returns_float32():
    model = tiny_unet()
    x = torch.randn(1, 1, 16, 16, 16)
    fp32 = AutocastPredictor(model, precision="fp32")(x)
    predictor = AutocastPredictor(model, precision="bf16")
    out = predictor(x)
    assert predictor.precision == "bf16" and out.dtype == torch.float32
    assert not torch.equal(out, fp32)  # really ran in bf16
    torch.testing.assert_close(out, fp32, rtol=0.05, atol=0.05)


def test_autocast_predictor_takes_the_first_deep_supervision_output_and_checks_arguments():
    class Deep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 1)

        def forward(self, x):
            y = self.conv(x)
            return [y, y[..., ::2, ::2]]

    model = Deep()
    x = torch.randn(1, 1, 8, 8)
    torch.testing.assert_close(AutocastPredictor(model)(x), model.conv(x).detach())
    with pytest.raises(ConfigError, match=r"torch\.nn\.Module"):
        AutocastPredictor(lambda t: t)
    with pytest.raises(ConfigError, match="unknown precision 'fp16'"):
        AutocastPredictor(model, precision="fp16")


def test_labels_from_one_or_two_channels_use_the_threshold():
    p = np.array([[[0.2, 0.5, 0.51, 0.9]]], np.float32)  # (1, 1, 4)
    np.testing.assert_array_equal(probabilities_to_labels(p), [[0, 0, 1, 1]])
    np.testing.assert_array_equal(probabilities_to_labels(p, threshold=0.3), [[0, 1, 1, 1]])
    two = np.concatenate([1 - p, p])
    out = probabilities_to_labels(two)
    assert out.dtype == np.uint8 and out.shape == (1, 4)
    np.testing.assert_array_equal(out, [[0, 0, 1, 1]])
    np.testing.assert_array_equal(probabilities_to_labels(two, threshold=0.8), [[0, 0, 0, 1]])


def test_labels_argmax_in_slabs_equals_plain_argmax():
    probs = torch.softmax(torch.randn(4, 7, 5, 6), 0)
    expected = probs.argmax(0).to(torch.uint8)
    for chunk in (1, 30, 1 << 24):
        assert torch.equal(probabilities_to_labels(probs, chunk_voxels=chunk), expected)
    assert probabilities_to_labels(probs.half()).dtype == torch.uint8
    many = torch.zeros(300, 2, 3)
    many[299] = 1
    assert probabilities_to_labels(many.numpy()).dtype == np.int32 and (probabilities_to_labels(many) == 299).all()


def test_labels_errors():
    with pytest.raises(ConfigError, match="1 or 2 output channels, got 3"):
        probabilities_to_labels(np.zeros((3, 4, 4)), threshold=0.5)
    with pytest.raises(ConfigError, match=r"threshold must be in \[0, 1\]"):
        probabilities_to_labels(np.zeros((1, 4)), threshold=2)
    with pytest.raises(ConfigError, match="at least one spatial axis"):
        probabilities_to_labels(np.zeros(3))
