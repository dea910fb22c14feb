"""Model bundles: package a trained model, share it, install it by name, load it safely.

- :class:`BundleManifest` is ``bundle.json`` (name, version, plan, network spec, folds,
  postprocessing, cross-validation metrics, sha256 of every file, versions);
- :func:`export_bundle` makes a bundle folder or ``.zip`` from a trained work folder;
- :func:`open_bundle` checks an archive's safety and every sha256 before use, :func:`verify_bundle`
  also loads the weights strictly and runs a dry forward pass;
- :func:`install` resolves ``NAME[@VERSION]`` through the model index(es), downloads once (pooch,
  sha256 checked), and works offline afterwards; :func:`list_models` lists installed and available
  models. A ready predictor for a bundle, a name or a work folder comes from :mod:`voxseg.models`.

Weights are safetensors only: nothing is ever unpickled, and this package never imports training
code. Importing it does not import torch. See ``docs/bundles.md``.
"""

from voxseg.bundle.archive import ArchiveLimits
from voxseg.bundle.cache import InstalledModel, install, installed_models, resolve_bundle
from voxseg.bundle.export import export_bundle
from voxseg.bundle.index import IndexEntry, ModelIndex, builtin_index_path, load_index
from voxseg.bundle.listing import ModelInfo, list_models
from voxseg.bundle.load import Bundle, open_bundle
from voxseg.bundle.manifest import BUNDLE_SCHEMA_VERSION, BundleManifest
from voxseg.bundle.verify import verify_bundle

__all__ = [
    "ArchiveLimits",
    "BUNDLE_SCHEMA_VERSION",
    "Bundle",
    "BundleManifest",
    "IndexEntry",
    "InstalledModel",
    "ModelIndex",
    "ModelInfo",
    "builtin_index_path",
    "export_bundle",
    "install",
    "installed_models",
    "list_models",
    "load_index",
    "open_bundle",
    "resolve_bundle",
    "verify_bundle",
]
