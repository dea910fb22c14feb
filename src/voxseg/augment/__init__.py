"""Training augmentation presets built from MONAI dictionary transforms.

Randomness is separate from application: a preset is built once, and each batch gets its random
state from the training loop's seeded generator (``set_random_state``), so a run is reproducible
for a seed and an interrupted run resumes with the same augmentations.

- ``none``: nothing.
- ``light``: mirroring on every axis.
- ``default``: rotation (±15°, ±180° in-plane for 2D) and scaling 0.85-1.25 (p=0.2), mirroring,
  Gaussian noise, blur, brightness, contrast/gamma (p=0.1-0.15).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from voxseg.errors import ConfigError

__all__ = ["PRESETS", "build_augmentation", "Augmenter"]

PRESETS = ("none", "light", "default")


def _transforms(preset: str, ndim: int, mirror_axes: tuple[int, ...]) -> list:
    from monai import transforms as T

    keys = ("image", "label")
    out: list = []
    if preset == "default":
        rot = (math.pi,) if ndim == 2 else (math.radians(15),) * 3
        out.append(
            T.RandAffined(
                keys,
                prob=0.2,
                rotate_range=rot,
                scale_range=(0.15,) * ndim,
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            )
        )
    if preset in ("light", "default"):
        out += [T.RandFlipd(keys, prob=0.5, spatial_axis=a) for a in mirror_axes]
    if preset == "default":
        out += [
            T.RandGaussianNoised("image", prob=0.1, std=0.1),
            T.RandGaussianSmoothd("image", prob=0.1, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0)),
            T.RandScaleIntensityd("image", prob=0.15, factors=0.25),
            T.RandAdjustContrastd("image", prob=0.15, gamma=(0.7, 1.5)),
        ]
    return out


class Augmenter:
    """Apply a preset to a batch ``(B, C, *spatial)`` image and ``(B, 1, *spatial)`` label."""

    def __init__(self, preset: str, ndim: int, *, mirror_axes: tuple[int, ...] | None = None):
        if preset not in PRESETS:
            raise ConfigError(f"unknown augmentation preset {preset!r} (choose from {', '.join(PRESETS)})")
        from monai.transforms import Compose

        self.preset = preset
        axes = tuple(range(ndim)) if mirror_axes is None else mirror_axes
        self._compose: Callable | None = Compose(_transforms(preset, ndim, axes)) if preset != "none" else None

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        img_t, lab_t = torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(label))
        if self._compose is None:
            return img_t, lab_t
        self._compose.set_random_state(seed=int(rng.integers(2**31)))
        imgs, labs = [], []
        for i in range(img_t.shape[0]):
            d = self._compose({"image": img_t[i], "label": lab_t[i].float()})
            imgs.append(torch.as_tensor(d["image"]).as_subclass(torch.Tensor).float())
            labs.append(torch.as_tensor(d["label"]).as_subclass(torch.Tensor).round().to(torch.int16))
        return torch.stack(imgs), torch.stack(labs)


def build_augmentation(preset: str, ndim: int, *, mirror_axes: tuple[int, ...] | None = None) -> Augmenter:
    return Augmenter(preset, ndim, mirror_axes=mirror_axes)
