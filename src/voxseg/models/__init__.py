"""The one model resolver: what ``-m MODEL`` / ``model=`` may name, turned into a loaded predictor.

A model is a training work folder (``voxseg plan`` + ``voxseg train``), a bundle folder or ``.zip``,
or an installed/installable ``NAME[@VERSION]``; an imported nnU-Net model is a bundle
(``voxseg import-nnunet``). :func:`resolve_model` decides which, once, for the CLI, the Python API
(:func:`voxseg.predict`), napari, the web app, Ray and the interactive code; :func:`load_predictor`
loads a bundle with the backend and arithmetic it asks for (``arithmetic`` in ``bundle.json``,
through :data:`voxseg.inference.arithmetic.ARITHMETIC`, where plug-ins register theirs).

This floor sits above :mod:`voxseg.bundle` (the format) and :mod:`voxseg.inference` (the pipeline).
"""

from voxseg.models.load import load_onnx_predictor, load_predictor
from voxseg.models.resolve import describe_model, resolve_model

__all__ = ["resolve_model", "describe_model", "load_predictor", "load_onnx_predictor"]
