"""Batch prediction over files: one model load, resumable, a ``predictions.json`` manifest.

Inputs are a file, a folder or a list file (:mod:`voxseg.inference.inputs`).

For each case :func:`predict_case` writes ``OUT/CASE<ending>`` (and ``CASE_objects.csv`` with
``instances``, ``CASE_probabilities.npz`` with ``probabilities``), every file atomically, and
returns its manifest entry. :func:`predict_folder` is the thin loop around it: resume, the
manifest, progress, and one bad case reported without stopping the others.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voxseg.errors import ConfigError, InputImageError, VoxsegError
from voxseg.inference.dicom_output import (
    check_output_format,
    check_seg_case,
    is_seg_output,
    series_sha256,
    write_seg_output,
)
from voxseg.inference.inputs import CaseInput, collect_inputs, output_ending, select_inputs
from voxseg.inference.outputs import (
    MANIFEST_NAME,
    case_lock,
    check_batch_outputs,
    check_case_outputs,
    load_manifest,
    merge_manifest,
)
from voxseg.io import (
    Volume,
    atomic_path,
    image_suffix,
    read_channels,
    read_image,
    write_image,
)
from voxseg.postprocessing import instances as make_instances
from voxseg.postprocessing import object_table, remove_small_objects, write_object_table

if TYPE_CHECKING:
    from voxseg.inference.predictor import Predictor

__all__ = [
    "CaseInput",
    "BatchReport",
    "collect_inputs",
    "predict_case",
    "predict_folder",
    "output_ending",
    "MANIFEST_NAME",
    "file_sha256",
    "load_manifest",
    "is_current",
    "one_line",
    "run_case",
    "voxseg_version",
]

log = logging.getLogger(__name__)

MANIFEST_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class BatchReport:
    """What :func:`predict_folder` did.

    ``done``: cases predicted in this run; ``skipped``: up to date from an earlier run;
    ``failed``: ``(case, one-line error)`` pairs. ``ok`` is False when any case failed.
    """

    out_dir: Path
    manifest: Path
    done: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    objects: dict[str, int | None] = field(default_factory=dict)
    skipped_series: tuple[dict[str, Any], ...] = ()  # DICOM series left out, with their reason

    @property
    def ok(self) -> bool:
        return not self.failed


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _fingerprint(case: CaseInput) -> list[dict[str, Any]]:
    files = [*case.images, *([case.mask] if case.mask is not None else [])]
    out = []
    for k, f in enumerate(files):
        role = "mask" if case.mask is not None and k == len(files) - 1 else f"channel {k}"
        try:
            digest = series_sha256(case) if f.is_dir() else file_sha256(f)
        except FileNotFoundError:
            raise InputImageError(f, "file not found", "check the path") from None
        out.append({"role": role, "path": str(f.resolve()), "sha256": digest})
    return out


# ---- one case ----------------------------------------------------------------------------------
def _read_case(case: CaseInput) -> tuple[list[Volume], Volume | None]:
    if len(case.images) == 1:
        images = read_channels(case.images[0], series_uid=case.series_uid)
    else:
        images = [read_image(p) for p in case.images]
    mask = None if case.mask is None else read_image(case.mask)
    if mask is not None and (mask.shape != images[0].shape or mask.geometry.differences(images[0].geometry)):
        diff = mask.geometry.differences(images[0].geometry) if mask.shape == images[0].shape else []
        what = "; ".join(diff) if diff else f"shape {mask.shape} vs the image's {images[0].shape}"
        raise InputImageError(case.mask, f"mask geometry differs from the image ({what})", "resample it onto the image")
    return images, mask


def extra_paths(output: Path) -> tuple[Path, Path]:
    """``(CASE_objects.csv, CASE_probabilities.npz)`` next to ``output``."""
    base = output.name[: len(output.name) - len(image_suffix(output))] if image_suffix(output) else output.stem
    return output.parent / f"{base}_objects.csv", output.parent / f"{base}_probabilities.npz"


def predict_case(
    case: CaseInput,
    output: str | Path,
    predictor: Predictor,
    *,
    instances: bool = False,
    min_size: int | None = None,
    min_volume: float | None = None,
    probabilities: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Predict one case and write its files; return its manifest entry (status ``ok``).

    ``instances`` writes an instance label map (ids by size) and ``CASE_objects.csv`` (per
    object: class, voxels, volume mm³, centroid voxel/world, bounding box, mean/max intensity of
    channel 0, sphericity); ``min_size`` (voxels) or ``min_volume`` (mm³) drop smaller objects.
    Errors (unreadable input, wrong channel count, ...) propagate as :class:`VoxsegError`.
    """
    output = Path(output)
    if output.is_dir():
        raise InputImageError(output, "output path is a folder", "give a file name such as out.nii.gz")
    check_case_outputs(case, output, instances=instances, probabilities=probabilities)
    if is_seg_output(output):
        check_seg_case(case, output, instances=instances)
    t0 = time.perf_counter()
    inputs = _fingerprint(case)
    images, mask = _read_case(case)
    t_read = time.perf_counter() - t0
    try:
        pred = predictor.predict(images, mask=mask, probabilities=probabilities, progress=progress)
    except InputImageError as exc:
        if exc.path is not None:
            raise
        raise exc.naming(_culprit(case, exc)) from None
    t1 = time.perf_counter()
    labels, n_objects, table = _postprocess(pred.labels, images[0], predictor, instances, min_size, min_volume)
    csv_path, npz_path = extra_paths(output)
    written = []
    if table is not None:
        written.append(write_object_table(table, csv_path, ndim=labels.ndim))
    if pred.probabilities is not None:
        _write_probabilities(npz_path, pred.probabilities, labels, predictor)
        written.append(npz_path)
    if is_seg_output(output):  # last: a present output means the case is complete
        write_seg_output(labels, output, case, predictor)
    else:
        write_image(labels, output)
    seconds = dict(pred.seconds)
    seconds.update(read=round(t_read, 4), write=round(time.perf_counter() - t1, 4))
    seconds["total"] = round(time.perf_counter() - t0, 4)
    return {
        "case": case.case_id,
        "status": "ok",
        "inputs": inputs,
        "output": str(output.resolve()),
        "extra_outputs": [str(p.resolve()) for p in written],
        "objects": n_objects,
        "seconds": seconds,
        "error": None,
    }


def _culprit(case: CaseInput, exc: InputImageError) -> Path:
    """The file an in-memory input error is about (``exc.channel``, ``exc.mask``), else the first image."""
    if exc.channel is not None and 0 <= exc.channel < len(case.images):
        return case.images[exc.channel]
    if exc.mask and case.mask is not None:
        return case.mask
    return case.images[0]


def _postprocess(labels: Volume, image: Volume, predictor: Predictor, instances: bool, min_size, min_volume):
    """(label map to write, object count, object table or None)."""
    if min_size is not None and min_volume is not None:
        raise ConfigError("give either min_size (voxels) or min_volume (mm³), not both")
    already = predictor.postprocessing.makes_instances
    if instances:
        inst = labels if already and min_size is None and min_volume is None else None
        if inst is None:
            inst = make_instances(labels, min_size=min_size or 0, min_volume=min_volume)
        class_map = None if already else labels
        table = object_table(inst, image=image, class_map=class_map)
        return inst, len(table), table
    if min_size is not None or min_volume is not None:
        labels = remove_small_objects(labels, min_size=min_size, min_volume=min_volume)
    count = make_instances(labels).array.max(initial=0) if not already else labels.array.max(initial=0)
    return labels, int(count), None


def _write_probabilities(path: Path, probs: np.ndarray, labels: Volume, predictor: Predictor) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            probabilities=probs.astype(np.float16, copy=False),
            class_values=np.asarray(predictor.plan.class_values, dtype=np.int32),
            spacing=np.asarray(labels.spacing),
            origin=np.asarray(labels.origin),
            direction=np.asarray(labels.direction),
        )


# ---- the loop ----------------------------------------------------------------------------------
def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and prove it can hold new files (one-line error otherwise)."""
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise InputImageError(folder, f"cannot create the output folder: {blocker} is a file", "choose another folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".voxseg-write-test.", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise InputImageError(
            folder, f"output folder is not writable ({exc.strerror or exc})", "choose a folder you can write to"
        ) from None


def is_current(entry: dict[str, Any] | None, case: CaseInput, output: Path, model: str, settings: dict) -> bool:
    """Whether a manifest entry shows ``output`` already made from this input, model and settings (resume)."""
    if not entry or entry.get("status") != "ok" or not output.is_file():
        return False
    if entry.get("model") != model or entry.get("settings") != settings:
        return False
    try:
        return entry.get("inputs") == _fingerprint(case)
    except VoxsegError:
        return False


def one_line(exc: BaseException) -> str:
    """An exception as one line of text (for manifests and logs)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def predict_folder(
    inputs: str | Path,
    out_dir: str | Path,
    predictor: Predictor,
    *,
    instances: bool = False,
    min_size: int | None = None,
    min_volume: float | None = None,
    probabilities: bool = False,
    mask_dir: str | Path | None = None,
    file_ending: str | None = None,
    resume: bool = True,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    series: str | None = None,
    output_format: str | None = None,
) -> BatchReport:
    """Predict every case of ``inputs`` into ``out_dir`` with one loaded ``predictor``.

    Parameters
    ----------
    inputs
        An image file, a folder (nnU-Net ``CASE_0000`` naming or plain files) or a .txt/.csv list.
    out_dir
        Output folder: ``CASE<ending>`` per case and the ``predictions.json`` manifest.
    instances, min_size, min_volume, probabilities
        See :func:`predict_case`.
    mask_dir
        Folder of ``CASE<suffix>`` masks (or one mask file for a single input).
    file_ending
        Input files to take from a folder, and the outputs' suffix (default: the input's).
    resume
        Skip cases whose manifest entry is ok, with unchanged input hashes, model and settings,
        and whose output exists.
    overwrite
        Replace existing files in ``out_dir`` that the manifest does not list as voxseg's outputs
        (refused by default, as is any output that is an input or lies in an input folder).
    progress
        Called as ``progress(cases_done, cases_total)``.
    series
        DICOM inputs: the series to predict (a modality such as ``CT``, a SeriesDescription
        substring or a SeriesInstanceUID); the others are listed in the manifest's ``skipped_series``.
    output_format
        ``"dicom-seg"``: write ``CASE.dcm`` DICOM Segmentation objects (DICOM inputs only).

    Returns
    -------
    BatchReport
        ``report.ok`` is False when a case failed; failures are also in the manifest.
    """
    t0 = time.perf_counter()
    out = Path(out_dir).expanduser()
    if min_size is not None and min_volume is not None:
        raise ConfigError("give either min_size (voxels) or min_volume (mm³), not both")
    check_output_format(output_format)
    selection = select_inputs(inputs, file_ending=file_ending, mask_dir=mask_dir, series=series)
    cases = selection.cases
    out_ending = ".dcm" if output_format == "dicom-seg" else file_ending
    manifest_path = out / MANIFEST_NAME
    opts = {"instances": instances, "min_size": min_size, "min_volume": min_volume, "probabilities": probabilities}
    check_batch_outputs(
        inputs,
        cases,
        out,
        mask_dir=mask_dir,
        file_ending=out_ending,
        instances=instances,
        probabilities=probabilities,
        overwrite=overwrite,
    )
    check_writable(out)
    settings = {**predictor.settings(), **opts}
    header = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "model": predictor.model_id,
        "settings": settings,
        "voxseg": voxseg_version(),
        "skipped_series": selection.skipped,
    }
    run = _Run(out, manifest_path, header, predictor, resume, opts, out_ending)
    deferred = []
    for case in cases:  # a case another process is predicting right now waits for the end
        with case_lock(out, case.case_id, wait=False) as held:
            if held:
                run.case(case)
            else:
                deferred.append(case)
        if progress is not None and held:
            progress(run.count, len(cases))
    for case in deferred:  # by now it is done (skipped) or its owner died (predicted here)
        with case_lock(out, case.case_id, wait=True):
            run.case(case)
        if progress is not None:
            progress(run.count, len(cases))
    merge_manifest(manifest_path, header, {})
    return BatchReport(
        out,
        manifest_path,
        tuple(run.done),
        tuple(run.skipped),
        tuple(run.failed),
        round(time.perf_counter() - t0, 3),
        run.objects,
        tuple(selection.skipped),
    )


class _Run:
    """The state of one :func:`predict_folder` call; :meth:`case` runs or skips one case (under its lock)."""

    def __init__(self, out, manifest_path, header, predictor, resume, opts, file_ending):
        self.out, self.manifest_path, self.header = out, manifest_path, header
        self.predictor, self.resume, self.opts, self.file_ending = predictor, resume, opts, file_ending
        self.done, self.skipped, self.failed, self.objects = [], [], [], {}
        self._seen: tuple[int, int] | None = None
        self._old: dict[str, Any] = {}

    @property
    def count(self) -> int:
        return len(self.done) + len(self.skipped) + len(self.failed)

    def _manifest_cases(self) -> dict[str, Any]:
        """The manifest's cases, re-read when another process changed the file."""
        try:
            st = self.manifest_path.stat()
            seen = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            seen = None
        if seen != self._seen:
            self._seen, self._old = seen, load_manifest(self.manifest_path).get("cases", {})
        return self._old

    def case(self, case: CaseInput) -> None:
        output = self.out / f"{case.case_id}{output_ending(case, self.file_ending)}"
        settings = self.header["settings"]
        entry = self._manifest_cases().get(case.case_id) if self.resume else None
        if entry is not None and is_current(entry, case, output, self.predictor.model_id, settings):
            self.skipped.append(case.case_id)
            self.objects[case.case_id] = entry.get("objects")
            return
        o = self.opts
        entry = run_case(
            case, output, self.predictor, o["instances"], o["min_size"], o["min_volume"], o["probabilities"]
        )
        entry.update(model=self.predictor.model_id, settings=settings)
        merge_manifest(self.manifest_path, self.header, {case.case_id: entry})
        if entry["status"] == "ok":
            self.done.append(case.case_id)
            self.objects[case.case_id] = entry["objects"]
        else:
            self.failed.append((case.case_id, entry["error"]))


def run_case(case, output, predictor, instances, min_size, min_volume, probabilities) -> dict[str, Any]:
    """:func:`predict_case` that never raises: a failure becomes a manifest entry with its error."""
    try:
        return predict_case(
            case,
            output,
            predictor,
            instances=instances,
            min_size=min_size,
            min_volume=min_volume,
            probabilities=probabilities,
        )
    except (VoxsegError, OSError, ValueError, RuntimeError, MemoryError) as exc:
        log.error("%s: %s", case.case_id, one_line(exc))
        log.debug("%s failed", case.case_id, exc_info=True)
        return {
            "case": case.case_id,
            "status": "failed",
            "inputs": [{"role": f"channel {k}", "path": str(p)} for k, p in enumerate(case.images)],
            "output": None,
            "extra_outputs": [],
            "objects": None,
            "seconds": {},
            "error": one_line(exc),
        }


def voxseg_version() -> str:
    """The installed voxseg version (recorded in manifests)."""
    from voxseg._version import __version__

    return __version__
