import pytest
import torch

from voxseg.errors import ConfigError
from voxseg.training.losses import LossSpec, build_loss


def _grads(loss_fn, logits, target):
    x = logits.clone().requires_grad_(True)
    loss = loss_fn(x, target)
    loss.backward()
    return loss.detach(), x.grad.detach()


@pytest.mark.parametrize("name", ["dice_ce", "dice_focal", "dice", "ce"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_ignored_voxels_change_nothing(name, ndim):
    """Changing the class of ignored voxels (and the logits there) leaves loss and gradients unchanged."""
    g = torch.Generator().manual_seed(0)
    shape = (2, 3, *([12] * ndim))
    logits = torch.randn(shape, generator=g)
    target = torch.randint(0, 3, (2, 1, *([12] * ndim)), generator=g)
    ignore = torch.zeros_like(target, dtype=torch.bool)
    ignore[..., :5] = True  # columns 0-4 are unannotated
    t1 = torch.where(ignore, torch.full_like(target, 3), target)
    loss_fn = build_loss(LossSpec(name), ignore_label=3)
    l1, g1 = _grads(loss_fn, logits, t1)
    # whatever the network predicts on ignored voxels must not matter
    t2 = t1.clone()
    logits2 = logits.clone()
    logits2[ignore.expand_as(logits)] = torch.randn(int(ignore.expand_as(logits).sum()), generator=g)
    l2, g2 = _grads(loss_fn, logits2, t2)
    torch.testing.assert_close(l1, l2)
    torch.testing.assert_close(g1[~ignore.expand_as(g1)], g2[~ignore.expand_as(g2)])
    assert torch.all(g1[ignore.expand_as(g1)] == 0)
    # and the ignored region is really excluded: a loss without ignore on the same data differs
    plain = build_loss(LossSpec(name))
    assert not torch.isclose(plain(logits, torch.where(ignore, torch.zeros_like(t1), t1)), l1)


def test_perfect_prediction_has_low_loss_and_weights_apply():
    target = torch.zeros(1, 1, 8, 8, 8, dtype=torch.long)
    target[..., 2:6, 2:6, 2:6] = 1
    logits = torch.cat([(target == 0).float(), (target == 1).float()], dim=1) * 20 - 10
    for name in ("dice_ce", "dice_focal"):
        assert build_loss(LossSpec(name))(logits, target) < 1e-3
    bad = -logits
    l1 = build_loss(LossSpec("dice_focal", 1, 1))(bad, target)
    l10 = build_loss(LossSpec("dice_focal", 1, 10))(bad, target)
    assert l10 > l1 * 3


def test_bad_spec():
    with pytest.raises(ConfigError, match="unknown loss"):
        LossSpec("dice_cee")
    with pytest.raises(ConfigError, match="invalid loss spec"):
        build_loss({"name": "dice_ce", "weight": 3})


def _monai_reference(name, logits, target, ignore_label, include_background, gamma=2.0):
    """The loss as MONAI's own classes compute it (one-hot targets), ignored voxels masked out."""
    import torch.nn.functional as F
    from monai.losses import FocalLoss, MaskedDiceLoss

    valid = target != ignore_label
    t = torch.where(valid, target, torch.zeros_like(target))
    w = valid.to(logits.dtype)
    n = valid.sum().clamp_min(1)
    total = logits.new_zeros(())
    if name in ("dice_ce", "dice_focal", "dice"):
        dice = MaskedDiceLoss(include_background=include_background, to_onehot_y=True, softmax=True, batch=True)
        if include_background:  # MONAI one-hots the masked target into background: mask that channel too
            probs = torch.softmax(logits, 1) * w
            truth = F.one_hot(t[:, 0], logits.shape[1]).movedim(-1, 1).to(logits.dtype) * w
            axes = [0, *range(2, logits.ndim)]
            tp = (probs * truth).sum(axes)
            score = (2 * tp + 1e-5) / (probs.sum(axes) + truth.sum(axes) + 1e-5)
            total = total + (1 - score).mean()
        else:
            total = total + dice(logits, t, mask=w)
    if name in ("dice_ce", "ce"):
        total = total + (F.cross_entropy(logits, t[:, 0], reduction="none") * w[:, 0]).sum() / n
    if name == "dice_focal":
        focal = FocalLoss(include_background=True, to_onehot_y=True, gamma=gamma, use_softmax=True, reduction="none")
        total = total + (focal(logits, t).sum(dim=1, keepdim=True) * w).sum() / n
    return total


@pytest.mark.parametrize("name", ["dice_ce", "dice_focal", "dice", "ce"])
@pytest.mark.parametrize("include_background", [False, True])
@pytest.mark.parametrize("classes", [2, 5, 117])
def test_values_and_gradients_equal_monais_one_hot_formulation(name, include_background, classes):
    """The loss without one-hot targets (sums indexed by class) is MONAI's loss."""
    g = torch.Generator().manual_seed(classes)
    logits = torch.randn(2, classes, 6, 7, 5, generator=g, dtype=torch.float64) * 3
    target = torch.randint(0, classes + 1, (2, 1, 6, 7, 5), generator=g)  # `classes` is the ignore label
    ours = build_loss(LossSpec(name, include_background=include_background), ignore_label=classes)
    l1, g1 = _grads(ours, logits, target)
    x = logits.clone().requires_grad_(True)
    ref = _monai_reference(name, x, target, classes, include_background)
    ref.backward()
    torch.testing.assert_close(l1, ref.detach(), rtol=1e-7, atol=1e-9)  # MONAI rounds a little in float32
    torch.testing.assert_close(g1, x.grad, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 3.0])
def test_focal_term_equals_monai_for_any_gamma_and_stays_finite_when_certain(gamma):
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(1, 4, 5, 6, 7, generator=g, dtype=torch.float64)
    target = torch.randint(0, 4, (1, 1, 5, 6, 7), generator=g)
    ours = build_loss(LossSpec("dice_focal", focal_gamma=gamma))
    l1, g1 = _grads(ours, logits, target)
    x = logits.clone().requires_grad_(True)
    ref = _monai_reference("dice_focal", x, target, ignore_label=-1, include_background=False, gamma=gamma)
    ref.backward()
    torch.testing.assert_close(l1, ref.detach(), rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(g1, x.grad, rtol=1e-6, atol=1e-9)
    certain = torch.nn.functional.one_hot(target[:, 0], 4).movedim(-1, 1).to(torch.float64) * 200 - 100
    value, grad = _grads(ours, certain, target)  # p of the target class is exactly 1.0
    assert torch.isfinite(value) and torch.isfinite(grad).all()
