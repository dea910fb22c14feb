"""Training inputs for click refinement: an imperfect previous mask and the clicks that fix it.

A refinement model sees the image, the extreme-point encoding, its previous mask and two click
channels (positive, negative) and predicts a corrected mask. Training it with the model in the
loop is slow; instead :class:`RefineSampler` makes the previous mask by perturbing the true one
(:func:`perturb_mask`: a grown or shrunk border, a bite taken out, a blob added) and places
clicks on it as the simulated user would (:func:`simulate_clicks`). Input channels:
``image channels, point encoding, previous mask, positive clicks, negative clicks``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from voxseg.errors import ConfigError
from voxseg.interactive.encoding import encode_clicks
from voxseg.interactive.points import Click, corrective_click
from voxseg.interactive.sampling import PromptSampler

__all__ = ["perturb_mask", "simulate_clicks", "RefineSampler"]


def _ball(shape: Sequence[int], centre: Sequence[float], radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing, strict=True))
    return d2 <= radius_mm**2


def perturb_mask(
    mask: np.ndarray,
    *,
    rng: np.random.Generator,
    spacing: Sequence[float] | None = None,
    max_mm: float = 3.0,
) -> np.ndarray:
    """A plausible wrong segmentation of ``mask``: what a first prediction might look like.

    The border moves in or out by up to ``max_mm`` (uniform), then with probability 1/2 a ball
    (radius up to ``2 * max_mm``) centred on the border is cut out, and with probability 1/2
    one is added. Returns a boolean mask of the same shape (possibly empty for tiny objects).
    """
    obj = np.asarray(mask) != 0
    sp = tuple(float(s) for s in spacing) if spacing is not None else (1.0,) * obj.ndim
    if max_mm <= 0:
        raise ConfigError(f"max_mm must be positive, got {max_mm}")
    shift = float(rng.uniform(-max_mm, max_mm))
    if shift >= 0:
        out = ndi.distance_transform_edt(~obj, sampling=sp) <= shift
    else:
        out = ndi.distance_transform_edt(obj, sampling=sp) > -shift
    border = np.argwhere(obj & ~ndi.binary_erosion(obj))
    for keep in (False, True):
        if len(border) and rng.random() < 0.5:
            centre = border[int(rng.integers(len(border)))]
            ball = _ball(obj.shape, centre, float(rng.uniform(max_mm / 2, 2 * max_mm)), sp)
            out = out | ball if keep else out & ~ball
    return out


def simulate_clicks(
    previous: np.ndarray,
    reference: np.ndarray,
    count: int,
    *,
    rng: np.random.Generator | None = None,
    spacing: Sequence[float] | None = None,
    radius_mm: float = 3.0,
) -> list[Click]:
    """Up to ``count`` corrective clicks on a fixed ``previous`` mask, each on a new error.

    The first click is :func:`corrective_click`'s; each next one assumes the errors within
    ``radius_mm`` of the clicks so far were fixed, so clicks spread over the error regions
    (largest first) as a user's would. Stops early when no error is left.
    """
    pred = np.asarray(previous) != 0
    ref = np.asarray(reference) != 0
    sp = tuple(float(s) for s in spacing) if spacing is not None else (1.0,) * ref.ndim
    clicks: list[Click] = []
    for _ in range(int(count)):
        click = corrective_click(pred, ref, rng=rng, spacing=spacing)
        if click is None:
            break
        clicks.append(click)
        fixed = _ball(ref.shape, click.position, radius_mm, sp)
        pred = np.where(fixed, ref, pred)
        if click.positive:  # a click always fixes its own voxel, even where the region is thin
            pred[click.position] = True
        else:
            pred[click.position] = False
    return clicks


class RefineSampler(PromptSampler):
    """:class:`PromptSampler` plus a perturbed previous mask and corrective-click channels.

    ``sample(rng)`` returns a ``(C + 4, *patch)`` input (image channels, point encoding,
    previous mask, positive and negative click maps) and the ``(1, *patch)`` target.

    Parameters
    ----------
    max_clicks
        Each draw has 1 to ``max_clicks`` clicks.
    click_encoding, click_params
        The clicks' encoding (``"gaussian"`` or ``"geodesic"``) and its parameters.
    perturb_mm
        ``max_mm`` of :func:`perturb_mask`.
    Other parameters as :class:`PromptSampler`.
    """

    def __init__(
        self,
        cases: Sequence,
        patch_size: Sequence[int],
        *,
        max_clicks: int = 3,
        click_encoding: str = "gaussian",
        click_params: dict | None = None,
        perturb_mm: float = 3.0,
        **kwargs,
    ):
        super().__init__(cases, patch_size, **kwargs)
        if int(max_clicks) < 1:
            raise ConfigError(f"max_clicks must be at least 1, got {max_clicks}")
        self.max_clicks = int(max_clicks)
        self.click_encoding = click_encoding
        self.click_params = dict(click_params or {"sigma_mm": 3.0})
        self.perturb_mm = float(perturb_mm)

    def _extra_channels(self, image: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        reference = target == 1
        previous = perturb_mask(reference, rng=rng, spacing=self.spacing, max_mm=self.perturb_mm)
        count = int(rng.integers(1, self.max_clicks + 1))
        clicks = simulate_clicks(previous, reference, count, rng=rng, spacing=self.spacing)
        channels = encode_clicks(
            image[self.encoding_channel],
            clicks,
            method=self.click_encoding,
            spacing=self.spacing,
            **self.click_params,
        )
        return np.concatenate([image, previous[None].astype(np.float32), channels], axis=0)
