"""Training augmentation presets built from MONAI dictionary transforms (:mod:`voxseg.augment.presets`)."""

from voxseg.augment.presets import PRESETS, Augmenter, build_augmentation

__all__ = ["PRESETS", "build_augmentation", "Augmenter"]
