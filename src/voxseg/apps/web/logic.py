"""The web app's logic as plain functions: configuration, models, segmentation, summary, downloads.

``app.py`` (Streamlit) only lays out widgets and calls these, so everything here is testable
without a browser or a Streamlit server. Models are work folders (``voxseg plan`` +
``voxseg train``), bundle folders/zips, or installed ``NAME[@VERSION]`` bundles, loaded with the
library's :class:`~voxseg.inference.Predictor`; nothing is computed differently from
``voxseg predict``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voxseg.apps.web.render import report_png
from voxseg.apps.web.uploads import UploadedImage
from voxseg.errors import ConfigError, InputImageError, VoxsegError
from voxseg.io import Volume, write_image
from voxseg.postprocessing import ObjectRow, connected_components, object_table, write_object_table

if TYPE_CHECKING:
    from voxseg.inference import Predictor

__all__ = [
    "DEFAULT_MAX_UPLOAD_MB",
    "ENV_MODEL",
    "ENV_MAX_UPLOAD_MB",
    "WebConfig",
    "ModelChoice",
    "LoadedModel",
    "Summary",
    "SegmentationResult",
    "model_choices",
    "load_model",
    "segment",
    "SegmentationJob",
    "summarize",
    "mask_file_name",
    "mask_download",
    "table_csv",
    "report_lines",
    "class_name",
    "table_records",
    "report_download",
]

DEFAULT_MAX_UPLOAD_MB = 1024
ENV_MODEL = "VOXSEG_WEB_MODEL"
ENV_MAX_UPLOAD_MB = "VOXSEG_WEB_MAX_UPLOAD_MB"
_MASK_SUFFIX = {"nifti": None, "nrrd": ".nrrd", "mha": ".mha", "tiff": ".tif", "png": ".png", "dicom": ".nii.gz"}
_MIME = {".png": "image/png", ".tif": "image/tiff"}
_log = logging.getLogger(__name__)


# ---- configuration -------------------------------------------------------------------------
@dataclass(frozen=True)
class WebConfig:
    """What ``voxseg web`` hands to the app (through environment variables of its server).

    Parameters
    ----------
    model
        A work folder, bundle folder/zip or installed ``NAME[@VERSION]`` offered first (optional).
    max_upload_mb
        Largest accepted upload in MiB (Streamlit's ``server.maxUploadSize`` and the app's own check).
    """

    model: str | None = None
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB

    def __post_init__(self) -> None:
        if not self.max_upload_mb > 0:
            raise ConfigError(f"max_upload_mb must be positive, got {self.max_upload_mb}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * (1 << 20))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebConfig:
        env = os.environ if environ is None else environ
        text = env.get(ENV_MAX_UPLOAD_MB, "").strip()
        try:
            limit = float(text) if text else DEFAULT_MAX_UPLOAD_MB
        except ValueError:
            raise ConfigError(f"{ENV_MAX_UPLOAD_MB}={text!r}: expected a number of MB") from None
        return cls(model=env.get(ENV_MODEL) or None, max_upload_mb=limit)

    def to_env(self) -> dict[str, str]:
        out = {ENV_MAX_UPLOAD_MB: f"{self.max_upload_mb:g}"}
        if self.model:
            out[ENV_MODEL] = self.model
        return out


# ---- models --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model list: what to show and what to load."""

    label: str
    reference: str


def _installed_choices() -> list[ModelChoice]:
    """Installed bundles from the model registry, when the bundle package is available."""
    try:
        from voxseg.bundle import list_models
    except ImportError:
        return []
    try:
        rows = list_models(offline=True)
    except VoxsegError:
        return []
    out = []
    for row in rows:
        if row.installed:
            text = f"{row.name} {row.version}" + (f": {row.description}" if row.description else "")
            out.append(ModelChoice(text, f"{row.name}@{row.version}"))
    return out


def model_choices(cli_model: str | None = None) -> list[ModelChoice]:
    """The models to offer: the one given to ``voxseg web --model`` first, then installed bundles."""
    out = []
    if cli_model:
        out.append(ModelChoice(f"{Path(cli_model).name or cli_model} (--model)", str(cli_model)))
    out += [c for c in _installed_choices() if c.reference != cli_model]
    return out


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to segment, with what the app shows about it."""

    reference: str
    name: str
    predictor: Predictor
    card: str
    label_names: dict[int, str] = field(default_factory=dict)
    #: Held while the model predicts: sessions sharing the model take turns (CPU and memory).
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def spatial_dims(self) -> int:
        return self.predictor.config.spatial_dims

    @property
    def num_channels(self) -> int:
        return self.predictor.plan.num_channels

    @property
    def terms(self) -> str:
        """The model's licence and intended use, as shown under the model picker ("" for a work folder)."""
        info = getattr(self.predictor, "model_terms", None) or {}
        parts = []
        if info.get("license"):
            parts.append(f"Licence: {info['license']}.")
        if info.get("intended_use"):
            parts.append(f"Intended use: {info['intended_use']}.")
        return " ".join(parts)

    @property
    def interactive(self) -> bool:
        """A model prompted with extreme points and clicks (see :mod:`voxseg.apps.web.prompts`)."""
        return bool(self.predictor.plan.interactive)


def _work_card(path: Path, predictor: Predictor) -> str:
    plan, cfg = predictor.plan, predictor.config
    names = [plan.channel_names[k] for k in sorted(plan.channel_names)]
    channels = ", ".join(f"{c} ({n.scheme})" for c, n in zip(names, plan.normalization, strict=False))
    labels = ", ".join(f"{v} = {k}" for k, v in plan.labels.items())
    folds = ", ".join(map(str, predictor.folds or ())) or "?"
    return "\n".join(
        [
            f"### {path.name}",
            "",
            f"A work folder (`{path}`), not a released bundle: no cross-validation card.",
            "",
            f"- Dataset: `{plan.dataset_name}`",
            f"- Input channels: {channels}",
            f"- Labels: {labels}",
            f"- Configuration `{cfg.name}`: {cfg.spatial_dims}D `{cfg.network.name}`, target spacing "
            f"{list(cfg.target_spacing)}, patch {list(cfg.patch_size)}",
            f"- Folds: {folds}; test-time mirroring: {'on' if predictor.tta else 'off'}; "
            f"precision {predictor.precision}",
            f"- Postprocessing: {predictor.postprocessing.to_json()}",
        ]
    )


def load_model(reference: str, **options: Any) -> LoadedModel:
    """Load a work folder (has ``plan.json``), a bundle folder/zip, or an installed ``NAME[@VERSION]``.

    ``options`` go to the :class:`~voxseg.inference.Predictor` (``tta``, ``precision``, ``device``...).

    Raises
    ------
    VoxsegError
        No such model, no trained fold, a bundle that fails its checks.
    """
    path = Path(reference).expanduser()
    if not path.exists() and any(c in reference for c in "/\\") and not reference.endswith(".zip"):
        raise ConfigError(
            f"{reference}: no such model (give a work folder, a bundle folder or .zip, or NAME[@VERSION])"
        )
    from voxseg.models import resolve_model

    predictor = resolve_model(reference, offline=True, **options)
    if predictor.model_card is None:  # a work folder: a card made from its plan
        name, card = path.name, _work_card(path, predictor)
    else:
        name, card = predictor.model_id, predictor.model_card
    names = {int(v): str(k) for k, v in predictor.plan.labels.items()}
    return LoadedModel(reference, name, predictor, card, names)


# ---- segmentation --------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    """Objects found and their total size (mm³ in 3D, mm² in 2D), overall and per class."""

    objects: int
    total: float
    unit: str
    per_class: dict[int, tuple[int, float]]  # class -> (objects, total size)

    def lines(self, label_names: Mapping[int, str]) -> list[str]:
        out = [f"{self.objects} object(s), total {self.total:.1f} {self.unit}"]
        for cls, (n, size) in sorted(self.per_class.items()):
            out.append(f"  class {cls} {label_names.get(cls, '')}: {n} object(s), {size:.1f} {self.unit}")
        return out


@dataclass(frozen=True)
class SegmentationResult:
    """Labels on the input grid, the per-object table and its summary, and the timings."""

    labels: Volume
    rows: tuple[ObjectRow, ...]
    summary: Summary
    seconds: dict[str, float]
    label_names: Mapping[int, str] = field(default_factory=dict)  # the model's: the table's class names
    warnings: tuple[str, ...] = ()  # the pre-flight check's (spacing or field of view far from the model's, ...)


def summarize(rows: list[ObjectRow] | tuple[ObjectRow, ...], ndim: int) -> Summary:
    per_class: dict[int, tuple[int, float]] = {}
    for r in rows:
        cls = r.label if r.label is not None else 1
        n, size = per_class.get(cls, (0, 0.0))
        per_class[cls] = (n + 1, size + r.volume)
    unit = "mm³" if ndim == 3 else "mm²"
    return Summary(len(rows), float(sum(r.volume for r in rows)), unit, per_class)


def _objects(labels: Volume, image: Volume, *, instances: bool) -> list[ObjectRow]:
    """Objects of the label map: its ids when it holds instances, else connected components per class."""
    if instances:
        return object_table(labels, image=image)
    components = connected_components(labels)
    return object_table(labels.with_array(components), image=image, class_map=labels)


def check_channels(model: LoadedModel, upload: UploadedImage) -> None:
    """Refuse an upload whose channel count is not the model's (one line naming the upload)."""
    if len(upload.channels) != model.num_channels:
        raise InputImageError(
            upload.name,
            f"the image has {len(upload.channels)} channel(s), the model {model.name!r} expects {model.num_channels}",
            "upload an image with the model's channels (see its card)",
        )


def segment(
    model: LoadedModel, upload: UploadedImage, *, progress: Callable[[int, int], None] | None = None
) -> SegmentationResult:
    """Predict the upload with the model and measure the objects.

    Raises
    ------
    InputImageError
        The image does not fit the model (channels, 2D image for a 3D model), naming the upload.
    """
    check_channels(model, upload)
    channels = list(upload.channels)
    report = preflight(model, upload)
    try:
        with model.lock:
            prediction = model.predictor.predict(channels, progress=progress)
    except InputImageError as exc:
        raise exc.naming(upload.name) from None
    labels = prediction.labels
    instances = model.predictor.postprocessing.makes_instances
    rows = _objects(labels, upload.image, instances=instances)
    foreground = [k for k, name in model.label_names.items() if k != 0 and name != "ignore"]
    if instances and len(foreground) == 1:  # one class: every instance is of it
        rows = [replace(r, label=foreground[0]) if r.label is None else r for r in rows]
    summary = summarize(rows, labels.ndim)
    return SegmentationResult(
        labels, tuple(rows), summary, dict(prediction.seconds), dict(model.label_names), tuple(report.warnings)
    )


def preflight(model: LoadedModel, upload: UploadedImage) -> Any:
    """The pre-flight check of an upload, before any tile: its report (warnings, stated work);
    :class:`~voxseg.inference.preflight.PreflightError` when it would take over 30 min or more
    memory than is free (the web app has no "run anyway": use the command line's ``--force``)."""
    from voxseg.inference.preflight import PreflightLimits
    from voxseg.models.api import preflight_volumes

    limits = PreflightLimits(
        force_hint="run it from the command line with --force",
        time_limit_hint="limit 30 min per image here",
        memory_limit_hint="the free memory",
    )
    spacing_known = upload.kind not in ("png",)
    try:
        report = preflight_volumes(
            list(upload.channels), model.predictor, spacing_known=spacing_known, limits=limits, name=upload.name
        )
    except InputImageError as exc:
        raise exc.naming(upload.name) from None
    report.check()
    return report


def class_name(row: ObjectRow, label_names: Mapping[int, str]) -> str:
    """The name of an object's class ("" when the class is unknown; the number when it has no name)."""
    if row.label is None:
        return ""
    return label_names.get(row.label, str(row.label))


class SegmentationJob:
    """One :func:`segment` call in a background thread, so that a page rerun does not cancel it.

    Parameters
    ----------
    model, upload
        What to segment with what.
    key
        Identifies the inputs (the app compares it with the current model and upload).
    lock
        An acquired lock, released when the job ends (the session's "one job at a time" guard).

    Attributes
    ----------
    done, total
        Sliding-window tiles predicted so far, and in all (0 until the network starts).
    result, error
        The result, or a one-line error message, once the job has ended.
    """

    def __init__(
        self, model: LoadedModel, upload: UploadedImage, *, key: Any = None, lock: threading.Lock | None = None
    ):
        self.key = key
        self.done = 0
        self.total = 0
        self.result: SegmentationResult | None = None
        self.error: str | None = None
        self._lock = lock
        self._thread = threading.Thread(target=self._run, args=(model, upload), name="voxseg-web-job", daemon=True)

    def start(self) -> SegmentationJob:
        self._thread.start()
        return self

    def _progress(self, done: int, total: int) -> None:
        self.done, self.total = int(done), int(total)

    def _run(self, model: LoadedModel, upload: UploadedImage) -> None:
        try:
            self.result = segment(model, upload, progress=self._progress)
        except VoxsegError as exc:
            self.error = " ".join(str(exc).split())
        except Exception as exc:  # a bug: keep the app alive, show one line, log the traceback
            _log.exception("segmentation of %s failed", upload.name)
            self.error = f"{upload.name}: segmentation failed ({type(exc).__name__}: {exc})"
        finally:
            if self._lock is not None:
                self._lock.release()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the end (at most ``timeout`` seconds); whether it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()


# ---- downloads -----------------------------------------------------------------------------
def mask_file_name(upload: UploadedImage) -> str:
    """``STEM_mask`` + the input's suffix (``.nii.gz`` for a DICOM series)."""
    return f"{upload.stem}_mask{_MASK_SUFFIX[upload.kind] or upload.suffix}"


def mask_download(labels: Volume, upload: UploadedImage) -> tuple[str, bytes, str]:
    """``(file name, bytes, MIME type)`` of the mask in the input's format and geometry (NIfTI for DICOM)."""
    name = mask_file_name(upload)
    suffix = _MASK_SUFFIX[upload.kind] or upload.suffix
    if upload.kind in ("png", "tiff") and labels.array.dtype.itemsize > 2:
        labels = labels.with_array(labels.array.astype(np.uint16))
    with tempfile.TemporaryDirectory(prefix="voxseg-web-") as tmp:
        path = write_image(labels, Path(tmp) / name)
        data = path.read_bytes()
    return name, data, _MIME.get(suffix, "application/octet-stream")


def table_csv(
    rows: list[ObjectRow] | tuple[ObjectRow, ...], ndim: int, *, label_names: Mapping[int, str] | None = None
) -> bytes:
    """The per-object table as CSV bytes, written by :func:`voxseg.postprocessing.write_object_table`;
    with ``label_names`` its ``class`` column holds class names."""
    with tempfile.TemporaryDirectory(prefix="voxseg-web-") as tmp:
        data = write_object_table(list(rows), Path(tmp) / "objects.csv", ndim=ndim).read_bytes()
    if label_names is None or not rows:
        return data
    lines = data.decode("utf-8").splitlines(keepends=True)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    out.write(lines[0])
    for row, cells in zip(rows, csv.reader(lines[1:]), strict=True):
        writer.writerow([cells[0], class_name(row, label_names), *cells[2:]])  # columns: id, class, ...
    return out.getvalue().encode("utf-8")


def table_records(
    rows: list[ObjectRow] | tuple[ObjectRow, ...],
    *,
    label_names: Mapping[int, str] | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """The first ``limit`` rows as dicts with rounded numbers, for display (with ``label_names``, class names)."""
    out = []
    for row in rows[:limit]:
        record = {k: round(v, 2) if isinstance(v, float) else v for k, v in row.as_dict().items()}
        if label_names is not None:
            record["class"] = class_name(row, label_names)
        out.append(record)
    return out


def report_lines(upload: UploadedImage, result: SegmentationResult, model: LoadedModel) -> list[str]:
    """The report's text: image, model, summary per class, the largest objects."""
    spacing = " × ".join(f"{v:.4g}" for v in upload.image.spacing)  # float32 headers: 0.1, not 0.10000000149011612
    shape = " × ".join(str(n) for n in upload.image.shape)
    lines = [f"Image: {upload.name}  shape {shape}  spacing {spacing} mm"]
    lines.append(f"Model: {model.name}  ({result.seconds.get('total', 0.0):.1f} s)")
    lines += result.summary.lines(model.label_names)
    largest = sorted(result.rows, key=lambda r: -r.volume)[:10]
    if largest:
        lines.append(f"Largest objects (id, class, size {result.summary.unit}):")
        lines += [f"  {r.id}  {class_name(r, model.label_names) or '-'}  {r.volume:.1f}" for r in largest]
    return lines


def report_download(upload: UploadedImage, result: SegmentationResult, model: LoadedModel) -> tuple[str, bytes]:
    """``(file name, PNG bytes)`` of the report: overview slices, summary, largest objects."""
    lines = report_lines(upload, result, model)
    title = f"voxseg: {upload.name} segmented with {model.name}"
    data = report_png(upload.channels, result.labels, title=title, lines=lines, label_names=model.label_names)
    return f"{upload.stem}_report.png", data
