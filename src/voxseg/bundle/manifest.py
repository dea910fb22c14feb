"""``bundle.json``: a model bundle's manifest, as a frozen dataclass with strict validation.

Facts derived from the plan (input channels and their normalization, spacing, patch and fixed
shape, label names, network spec) are written into the JSON for people and other tools to read,
and checked against the embedded plan when reading, so the two can never disagree. No torch here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from voxseg.bundle._util import check_name, check_version, is_sha256
from voxseg.errors import BundleError, VoxsegError
from voxseg.fingerprint.domain import TrainingDomain
from voxseg.io.safe_json import loads_json
from voxseg.planning import ConfigurationPlan, Plan
from voxseg.postprocessing import PostprocessingSpec

__all__ = ["BundleManifest", "BUNDLE_SCHEMA_VERSION", "MANIFEST_NAME", "TASKS"]

BUNDLE_SCHEMA_VERSION = 1
MANIFEST_NAME = "bundle.json"
#: What a bundle's output is: a label map, an instance map, or an interactive (prompted) label map.
TASKS = ("semantic", "instances", "interactive")

_REQUIRED = (
    "schema_version",
    "name",
    "version",
    "task",
    "plan",
    "configuration",
    "folds",
    "files",
)
_OPTIONAL = {
    "description": "",
    "license": "",
    "intended_use": "",
    "authors": [],
    "modality": "",
    "postprocessing": None,
    "metrics": {},
    "versions": {},
    "created": "",
    "training_domain": None,
    "golden": None,
    "provenance": {},
    "arithmetic": "voxseg",
}
_DERIVED = ("input", "labels", "network")


def _where(field_name: str) -> str:
    return f"{MANIFEST_NAME}: field {field_name!r}"


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, _OPTIONAL.get(key))
    if not isinstance(value, str):
        raise BundleError(f"{_where(key)} must be a string, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class BundleManifest:
    """The contents of ``bundle.json``.

    Parameters
    ----------
    name, version
        ``mouse-lung-nodules``, ``v2``: how the model is installed and referred to (``NAME@VERSION``).
    task
        ``semantic`` (label map), ``instances`` (instance ids) or ``interactive`` (needs prompts).
    plan
        The full :class:`~voxseg.planning.Plan` the model was trained with (preprocessing is data).
    configuration
        The plan configuration of the weights (``3d``, ``2d``).
    folds
        The folds whose weights are in ``weights/fold_K.safetensors`` (averaged at prediction).
    files
        Relative path -> sha256 of every file of the bundle except ``bundle.json`` itself.
    intended_use
        One sentence: what the model is for (shown with the licence at install and first prediction).
    postprocessing
        Applied after prediction (chosen from cross-validation).
    metrics
        Cross-validation figures (``crossval/<cfg>/summary.json`` of the work folder).
    versions
        Versions of voxseg, torch, MONAI and Python that made the bundle.
    training_domain
        Spacing and field-of-view ranges of the training images (from the fingerprint at export;
        None in bundles made before it was recorded: see :meth:`domain`).
    golden
        The golden test (:mod:`voxseg.bundle.golden`): its files, settings and tolerances, or None.
    provenance
        Where the model comes from: ``data_fingerprint_sha256`` (the training data's
        ``fingerprint.json``), ``plan_sha256``, ``parent`` (the model it was fine-tuned from, or None).
    arithmetic
        Which predictor computes it (:mod:`voxseg.inference.arithmetic`): ``voxseg`` (default), or a
        plug-in's, e.g. ``nnunet-exact`` for models imported from nnU-Net. Written only when not the default.
    """

    name: str
    version: str
    task: str
    plan: Plan
    configuration: str
    folds: tuple[int, ...]
    files: Mapping[str, str]
    description: str = ""
    license: str = ""
    intended_use: str = ""
    authors: tuple[str, ...] = ()
    modality: str = ""
    postprocessing: PostprocessingSpec = field(default_factory=PostprocessingSpec)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    training_domain: TrainingDomain | None = None
    golden: Mapping[str, Any] | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    arithmetic: str = "voxseg"
    schema_version: int = BUNDLE_SCHEMA_VERSION

    def __post_init__(self) -> None:
        check_name(self.name, _where("name"))
        check_version(self.version, _where("version"))
        if self.task not in TASKS:
            raise BundleError(f"{_where('task')} must be one of {', '.join(TASKS)}, got {self.task!r}")
        if not isinstance(self.plan, Plan):
            raise BundleError(f"{_where('plan')} must be a Plan")
        if self.configuration not in self.plan.configurations:
            raise BundleError(
                f"{_where('configuration')} {self.configuration!r} is not in the plan "
                f"(it has {', '.join(sorted(self.plan.configurations))})"
            )
        folds = tuple(self.folds)
        if not folds or any(isinstance(f, bool) or not isinstance(f, int) or f < 0 for f in folds):
            raise BundleError(f"{_where('folds')} must be a non-empty list of fold numbers >= 0, got {list(folds)}")
        if len(set(folds)) != len(folds):
            raise BundleError(f"{_where('folds')} lists a fold twice: {list(folds)}")
        object.__setattr__(self, "folds", folds)
        object.__setattr__(self, "files", _check_files(self.files))
        object.__setattr__(self, "authors", _check_authors(self.authors))
        for fold in folds:
            if self.weights_file(fold) not in self.files:
                raise BundleError(f"{_where('files')} lacks {self.weights_file(fold)} (fold {fold} is listed)")
        if not isinstance(self.postprocessing, PostprocessingSpec):
            raise BundleError(f"{_where('postprocessing')} must be a PostprocessingSpec")
        if self.golden is not None:
            check_golden_section(self.golden, self.files, _where("golden"))
        for key in ("metrics", "versions", "provenance"):
            if not isinstance(getattr(self, key), Mapping):
                raise BundleError(f"{_where(key)} must be a JSON object")
        if self.schema_version != BUNDLE_SCHEMA_VERSION:
            raise BundleError(
                f"{_where('schema_version')} is {self.schema_version!r}; this voxseg reads "
                f"{BUNDLE_SCHEMA_VERSION} (upgrade voxseg or re-export the bundle)"
            )

    # ---- derived -----------------------------------------------------------------------
    @property
    def reference(self) -> str:
        """``NAME@VERSION``."""
        return f"{self.name}@{self.version}"

    @property
    def config(self) -> ConfigurationPlan:
        """The plan configuration the weights belong to."""
        return self.plan.configuration(self.configuration)

    def domain(self) -> TrainingDomain:
        """The recorded training domain, or the plan's fallback (target spacing, median shape)."""
        if self.training_domain is not None:
            return self.training_domain
        cfg = self.config
        return TrainingDomain.from_plan(cfg.target_spacing, cfg.median_shape, cfg.patch_size)

    @staticmethod
    def weights_file(fold: int) -> str:
        return f"weights/fold_{int(fold)}.safetensors"

    @staticmethod
    def onnx_file(fold: int) -> str:
        return f"model_fold_{int(fold)}.onnx"

    def derived(self) -> dict[str, Any]:
        """The plan facts repeated in ``bundle.json`` (input, labels, network)."""
        cfg = self.config
        return {
            "input": {
                "channels": [
                    {"index": i, "name": self.plan.channel_names[i], "normalization": n.to_json()}
                    for i, n in zip(sorted(self.plan.channel_names), self.plan.normalization, strict=True)
                ],
                "spatial_dims": cfg.spatial_dims,
                "data_ndim": self.plan.data_ndim,
                "target_spacing": list(cfg.target_spacing),
                "patch_size": list(cfg.patch_size),
                "fixed_shape": None if cfg.fixed_shape is None else list(cfg.fixed_shape),
            },
            "labels": dict(self.plan.labels),
            "network": cfg.network.to_json(),
        }

    # ---- JSON --------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "license": self.license,
            "intended_use": self.intended_use,
            "authors": list(self.authors),
            "task": self.task,
            "modality": self.modality,
            **self.derived(),
            "configuration": self.configuration,
            "folds": list(self.folds),
            "postprocessing": self.postprocessing.to_json(),
            "metrics": json.loads(json.dumps(dict(self.metrics))),
            "plan": self.plan.to_json(),
            "files": dict(sorted(self.files.items())),
            "versions": dict(self.versions),
            "created": self.created,
        }
        if self.training_domain is not None:
            out["training_domain"] = self.training_domain.to_json()
        if self.provenance:
            out["provenance"] = json.loads(json.dumps(dict(self.provenance)))
        if self.golden is not None:
            out["golden"] = json.loads(json.dumps(dict(self.golden)))
        if self.arithmetic != "voxseg":
            out["arithmetic"] = self.arithmetic
        return out

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    @classmethod
    def from_json(cls, data: Any) -> BundleManifest:
        """Validate and build; any problem raises a one-line :class:`BundleError` naming the field."""
        if not isinstance(data, Mapping):
            raise BundleError(f"{MANIFEST_NAME} must hold a JSON object, got {type(data).__name__}")
        known = set(_REQUIRED) | set(_OPTIONAL) | set(_DERIVED)
        unknown = sorted(set(data) - known)
        if unknown:
            names = ", ".join(k if k.isprintable() else repr(k) for k in unknown)  # a key with a newline: one line
            raise BundleError(f"{MANIFEST_NAME}: unknown field(s) {names} (made by a newer voxseg?)")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise BundleError(f"{MANIFEST_NAME}: missing field(s) {', '.join(missing)}")
        if data["schema_version"] != BUNDLE_SCHEMA_VERSION:
            raise BundleError(
                f"{_where('schema_version')} is {data['schema_version']!r}; this voxseg reads "
                f"{BUNDLE_SCHEMA_VERSION} (upgrade voxseg or re-export the bundle)"
            )
        plan = _parse(Plan.from_json, data["plan"], "plan")
        post = data.get("postprocessing")
        spec = PostprocessingSpec() if post is None else _parse(PostprocessingSpec.from_json, post, "postprocessing")
        folds = data["folds"]
        if not isinstance(folds, list):
            raise BundleError(f"{_where('folds')} must be a list of fold numbers, got {folds!r}")
        authors = data.get("authors", [])
        if not isinstance(authors, list):
            raise BundleError(f"{_where('authors')} must be a list of strings, got {authors!r}")
        domain = data.get("training_domain")
        domain = None if domain is None else _parse(TrainingDomain.from_json, domain, "training_domain")
        manifest = cls(
            training_domain=domain,
            name=data["name"],
            version=data["version"],
            task=data["task"],
            plan=plan,
            configuration=_text(data, "configuration"),
            folds=tuple(folds),
            files=data["files"],
            description=_text(data, "description"),
            license=_text(data, "license"),
            intended_use=_text(data, "intended_use"),
            authors=tuple(authors),
            modality=_text(data, "modality"),
            postprocessing=spec,
            metrics=data.get("metrics", {}),
            versions=data.get("versions", {}),
            created=_text(data, "created"),
            golden=data.get("golden"),
            provenance=data.get("provenance", {}),
            arithmetic=_text(data, "arithmetic"),
        )
        manifest._check_derived(data)
        return manifest

    def _check_derived(self, data: Mapping[str, Any]) -> None:
        expected = json.loads(json.dumps(self.derived()))
        for key in _DERIVED:
            if key in data and data[key] != expected[key]:
                raise BundleError(f"{_where(key)} disagrees with the embedded plan (the bundle was edited by hand?)")

    @classmethod
    def loads(cls, text: str | bytes) -> BundleManifest:
        data = loads_json(text, source=MANIFEST_NAME, error=BundleError, fix="export the bundle again")
        return cls.from_json(data)


def _parse(fn, value: Any, key: str):
    try:
        return fn(value)
    except VoxsegError as exc:
        raise BundleError(f"{_where(key)} is invalid: {exc}") from None


def _check_files(files: Any) -> dict[str, str]:
    if not isinstance(files, Mapping):
        raise BundleError(f"{_where('files')} must map relative paths to sha256 digests")
    out = {}
    for rel, digest in files.items():
        if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel or ".." in rel.split("/"):
            raise BundleError(f"{_where('files')} has an invalid relative path {rel!r}")
        if rel == MANIFEST_NAME:
            raise BundleError(f"{_where('files')} must not list {MANIFEST_NAME} itself")
        if not is_sha256(digest):
            raise BundleError(f"{_where('files')}: {rel!r} has no valid sha256 (64 lower-case hex digits)")
        out[rel] = digest
    return out


def _check_authors(authors: Any) -> tuple[str, ...]:
    if isinstance(authors, str):
        authors = (authors,)
    authors = tuple(authors)
    if any(not isinstance(a, str) for a in authors):
        raise BundleError(f"{_where('authors')} must be a list of strings, got {list(authors)!r}")
    return authors


def check_golden_section(section: Any, files: Mapping[str, str], where: str) -> None:
    """Validate ``bundle.json``'s ``golden`` section (shape of the JSON; files listed)."""
    if not isinstance(section, Mapping):
        raise BundleError(f"{where} must be a JSON object")
    for key in ("input", "expected", "settings", "tolerances"):
        if key not in section:
            raise BundleError(f"{where} lacks {key!r}")
    for key in ("input", "expected"):
        if section[key] not in files:
            raise BundleError(f"{where}: {section[key]!r} is not listed in 'files'")
    tol = section["tolerances"]
    if not isinstance(tol, Mapping) or not all(
        isinstance(v, Mapping) and {"labels_per_million", "probability_max_error"} <= set(v) for v in tol.values()
    ):
        raise BundleError(f"{where}: 'tolerances' must map backends to labels_per_million and probability_max_error")
