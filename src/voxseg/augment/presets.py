"""Training augmentation presets built from MONAI dictionary transforms.

Randomness is separate from application: a preset is built once, and each batch gets its random
state from the training loop's seeded generator (``set_random_state``), so a run is reproducible
for a seed and an interrupted run resumes with the same augmentations.

- ``none``: nothing.
- ``light``: mirroring on every axis.
- ``default``: rotation (±15°, ±180° in-plane for 2D) and scaling 0.85-1.25 (p=0.2), mirroring,
  Gaussian noise, blur, brightness, contrast/gamma (p=0.1-0.15).

Prompt channels (the last ``prompt_channels`` input channels of an interactive model: a point
encoding, click maps) move with the image under the spatial transforms but never get the
intensity ones: noise or a gamma curve on a point map would teach the network that the prompt
is unreliable.
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

    keys = ("image", "prompt", "label")
    out: list = []
    if preset == "default":
        rot = (math.pi,) if ndim == 2 else (math.radians(15),) * 3
        out.append(
            T.RandAffined(
                keys,
                prob=0.2,
                rotate_range=rot,
                scale_range=(0.15,) * ndim,
                mode=("bilinear", "bilinear", "nearest"),
                padding_mode="zeros",
                allow_missing_keys=True,
            )
        )
    if preset in ("light", "default"):
        out += [T.RandFlipd(keys, prob=0.5, spatial_axis=a, allow_missing_keys=True) for a in mirror_axes]
    if preset == "default":
        out += [
            T.RandGaussianNoised("image", prob=0.1, std=0.1),
            T.RandGaussianSmoothd("image", prob=0.1, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0)),
            T.RandScaleIntensityd("image", prob=0.15, factors=0.25),
            T.RandAdjustContrastd("image", prob=0.15, gamma=(0.7, 1.5)),
        ]
    return out


class Augmenter:
    """Apply a preset to a batch ``(B, C, *spatial)`` image and ``(B, 1, *spatial)`` label.

    The last ``prompt_channels`` of the ``C`` channels get the spatial transforms only.
    """

    def __init__(self, preset: str, ndim: int, *, mirror_axes: tuple[int, ...] | None = None, prompt_channels: int = 0):
        if preset not in PRESETS:
            raise ConfigError(f"unknown augmentation preset {preset!r} (choose from {', '.join(PRESETS)})")
        if int(prompt_channels) < 0:
            raise ConfigError(f"prompt_channels must be 0 or more, got {prompt_channels}")
        from monai.transforms import Compose

        self.preset = preset
        self.prompt_channels = int(prompt_channels)
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
        k = self.prompt_channels
        if k >= img_t.shape[1]:
            raise ConfigError(f"{k} prompt channel(s) leave no image channel in an input of {img_t.shape[1]}")
        for i in range(img_t.shape[0]):
            item = {"image": img_t[i, : img_t.shape[1] - k], "label": lab_t[i].float()}
            if k:
                item["prompt"] = img_t[i, img_t.shape[1] - k :]
            d = self._compose(item)
            parts = [d["image"], d["prompt"]] if k else [d["image"]]
            imgs.append(torch.cat([torch.as_tensor(x).as_subclass(torch.Tensor).float() for x in parts]))
            labs.append(torch.as_tensor(d["label"]).as_subclass(torch.Tensor).round().to(torch.int16))
        return torch.stack(imgs), torch.stack(labs)


def build_augmentation(
    preset: str, ndim: int, *, mirror_axes: tuple[int, ...] | None = None, prompt_channels: int = 0
) -> Augmenter:
    return Augmenter(preset, ndim, mirror_axes=mirror_axes, prompt_channels=prompt_channels)
