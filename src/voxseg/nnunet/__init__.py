"""Run nnU-Net v2 models in voxseg: import a trained-model folder (or export zip) as a bundle.

>>> from voxseg.nnunet import import_nnunet
>>> import_nnunet("Dataset001_Lung/nnUNetTrainer__nnUNetPlans__3d_fullres", "lung.zip")  # doctest: +SKIP

Modules: :mod:`~voxseg.nnunet.model_folder` (find plans/dataset/folds, read export zips),
:mod:`~voxseg.nnunet.plans` (plans.json -> voxseg Plan), :mod:`~voxseg.nnunet.checkpoint` (safe
checkpoint loading), :mod:`~voxseg.nnunet.postprocessing` (postprocessing.pkl without unpickling),
:mod:`~voxseg.nnunet.network` (nnU-Net's U-Nets), :mod:`~voxseg.nnunet.importer`. Names are loaded
lazily: importing this package does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["import_nnunet", "load_checkpoint", "translate_plans", "read_postprocessing_pkl", "find_model_folder"]

_LAZY = {
    "import_nnunet": "voxseg.nnunet.importer",
    "load_checkpoint": "voxseg.nnunet.checkpoint",
    "translate_plans": "voxseg.nnunet.plans",
    "read_postprocessing_pkl": "voxseg.nnunet.postprocessing",
    "find_model_folder": "voxseg.nnunet.model_folder",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'voxseg.nnunet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
