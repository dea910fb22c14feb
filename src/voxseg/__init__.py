"""voxseg: train, package and run segmentation models for 2D/3D biomedical images.

The public API is loaded lazily: ``import voxseg`` is cheap and never imports torch; the first
use of a name imports the module that defines it.

>>> import voxseg
>>> vol = voxseg.read_image("ct.nii.gz")            # doctest: +SKIP
>>> voxseg.make_phantom("mouse-lung-ct", "data/", cases=4)   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from voxseg._version import __version__

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "Volume": "voxseg.io",
    "Geometry": "voxseg.io",
    "read_image": "voxseg.io",
    "read_channels": "voxseg.io",
    "write_image": "voxseg.io",
    "Dataset": "voxseg.dataset",
    "read_dataset": "voxseg.dataset",
    "verify_dataset": "voxseg.dataset",
    "make_splits": "voxseg.dataset",
    "make_phantom": "voxseg.dataset.phantoms",
    "plan_experiment": "voxseg.experiment.plan",
    "train_folds": "voxseg.experiment.train",
    "crossval": "voxseg.experiment.crossval",
    "PHANTOMS": "voxseg.dataset.phantoms",
    "predict": "voxseg.models.api",
    "postprocess": "voxseg.postprocessing",
    "instances": "voxseg.postprocessing",
    "object_table": "voxseg.postprocessing",
    "export_bundle": "voxseg.bundle",
    "install": "voxseg.bundle",
    "load_predictor": "voxseg.models",
    "segment_from_points": "voxseg.interactive.pipeline",
    "refine": "voxseg.interactive.pipeline",
    "VoxsegError": "voxseg.errors",
    "InputImageError": "voxseg.errors",
    "DatasetFormatError": "voxseg.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'voxseg' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from voxseg.bundle import export_bundle, install  # noqa: F401
    from voxseg.dataset import Dataset, make_splits, read_dataset, verify_dataset  # noqa: F401
    from voxseg.dataset.phantoms import PHANTOMS, make_phantom  # noqa: F401
    from voxseg.errors import DatasetFormatError, InputImageError, VoxsegError  # noqa: F401
    from voxseg.experiment.crossval import crossval  # noqa: F401
    from voxseg.experiment.plan import plan_experiment  # noqa: F401
    from voxseg.experiment.train import train_folds  # noqa: F401
    from voxseg.interactive.pipeline import refine, segment_from_points  # noqa: F401
    from voxseg.io import Geometry, Volume, read_channels, read_image, write_image  # noqa: F401
    from voxseg.models import load_predictor  # noqa: F401
    from voxseg.models.api import predict  # noqa: F401
    from voxseg.postprocessing import instances, object_table, postprocess  # noqa: F401
