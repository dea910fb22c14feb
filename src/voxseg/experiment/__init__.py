"""Experiments in a work folder: plan (fingerprint + plan + preprocess), train folds, cross-validate.

Thin orchestration over the pure stages (fingerprint, planning, preprocessing, training,
inference, postprocessing); the CLI calls these functions. See :mod:`voxseg.workdir.layout`.
"""

from voxseg.workdir.layout import WorkDir

__all__ = ["WorkDir"]
