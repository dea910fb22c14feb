"""``import_dataset``: a folder of images and a folder of masks (or a CSV of pairs) -> nnU-Net v2 layout.

Cases are found by name (:mod:`voxseg.dataset.pairing`), every file is read with
:func:`voxseg.io.read_channels` (NIfTI, NRRD, MHA, TIFF, PNG, DICOM series folders ...) and checked:
channels of one shape, the mask on the image's grid (``fix_geometry`` copies the image's header
onto a mask whose header alone differs), integer mask values (float masks holding integers are
cast), mask values declared in ``labels``. Every problem is listed; a case with one is refused, and
the import fails unless ``skip_bad``. Label values are renumbered 0..N when they are not
consecutive (0/255 masks become 0/1), and the mapping is recorded in ``dataset.json``.

The output is written into a temporary folder beside ``out`` and renamed at the end: an
interrupted import leaves no half dataset. The inputs are only read.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from voxseg.dataset.label_arg import parse_labels
from voxseg.dataset.layout import DatasetSpec, DatasetWriter
from voxseg.dataset.pairing import (
    Pairing,
    SourceCase,
    case_problems,
    import_hint,
    input_digest,
    is_table,
    looks_like_image_mask_folder,
    pair_folders,
    pair_single_folder,
    pair_table,
)
from voxseg.dataset.verify import Problem
from voxseg.errors import ConfigError, DatasetFormatError, InputImageError, VoxsegError
from voxseg.io import Volume, read_channels, read_image, write_image
from voxseg.io.safe_json import read_json

__all__ = ["import_dataset", "ImportReport", "ImportedCase", "ImportRefused", "parse_labels", "import_hint"]

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
Status = Literal["training", "test", "refused"]
_RECORD_KEY = "imported_from"


class ImportRefused(VoxsegError):
    """Some cases were refused and ``skip_bad`` was not given; nothing was written."""

    def __init__(self, message: str, report: ImportReport):
        super().__init__(message)
        self.report = report


@dataclass
class ImportedCase:
    """What became of one case: where it went, its shape, spacing, channels and mask values."""

    case_id: str
    status: Status
    channels: int = 0
    shape: tuple[int, ...] = ()
    spacing: tuple[float, ...] = ()
    values: tuple[int, ...] = ()


@dataclass
class ImportReport:
    """The outcome of :func:`import_dataset`. ``up_to_date``: ``out`` already held this import."""

    out: Path
    cases: list[ImportedCase] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    channel_names: dict[int, str] = field(default_factory=dict)
    up_to_date: bool = False

    @property
    def refused(self) -> list[ImportedCase]:
        return [c for c in self.cases if c.status == "refused"]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


@dataclass(frozen=True)
class _Options:
    labels: dict[int, str] | None
    fix_geometry: bool
    tolerance: float
    unlabelled_to_test: bool
    instances: str | None = None


@dataclass
class _State:
    """What the cases imported so far agree on (channel count, 2D/3D) and the mask values seen."""

    channels: int | None = None
    ndim: int | None = None
    values: set[int] = field(default_factory=set)
    ct_like: set[int] = field(default_factory=set)
    digests: dict[str, str] = field(default_factory=dict)


def _pairing(source: Path, masks: Path | None) -> tuple[Pairing, list[Path]]:
    if masks is not None:
        return pair_folders(source, masks), [source, masks]
    if is_table(source):
        return pair_table(source), [source]
    found = looks_like_image_mask_folder(source)
    if isinstance(found, tuple):
        return pair_folders(*found), [source]
    if found is not None or source.is_dir():
        return pair_single_folder(source), [source]
    raise DatasetFormatError(f"{source}: not found (give IMAGES MASKS folders, one folder, or a .csv/.tsv of pairs)")


def _message(exc: InputImageError) -> str:
    return exc.problem + (f" ({exc.fix})" if exc.fix else "")


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def _geometry_diff(vol: Volume, ref: Volume, tolerance: float) -> list[str]:
    """How ``vol``'s header differs from ``ref``'s beyond ``tolerance`` mm (spacing also 1e-4 relative)."""
    out = []
    if not np.allclose(vol.spacing, ref.spacing, rtol=1e-4, atol=tolerance):
        out.append(f"spacing {_fmt(vol.spacing)} vs {_fmt(ref.spacing)}")
    if not np.allclose(vol.origin, ref.origin, rtol=0, atol=max(tolerance, 1e-6)):
        out.append(f"origin {_fmt(vol.origin)} vs {_fmt(ref.origin)}")
    if not np.allclose(vol.direction, ref.direction, atol=1e-4):
        out.append("orientation (direction matrix)")
    return out


def _on_grid(vol: Volume, ref: Volume, path: Path, what: str, opts: _Options, problems: list[Problem]) -> Volume | None:
    """``vol`` with ``ref``'s geometry, or None (problem listed) when shapes or headers differ."""
    if vol.shape != ref.shape:
        problems.append(Problem(path, f"{what} has shape {vol.shape}, the image {ref.shape} (resample it)"))
        return None
    diff = _geometry_diff(vol, ref, opts.tolerance)
    if diff and not opts.fix_geometry:
        fix = "--fix-geometry copies the image's header onto it if only the header is wrong; else resample it"
        problems.append(Problem(path, f"{what} geometry differs from the image: {'; '.join(diff)} ({fix})"))
        return None
    if diff:
        problems.append(Problem(path, f"{what} header replaced by the image's ({'; '.join(diff)})", "warning"))
    return Volume.like(vol.array, ref.geometry)


def _read_images(case: SourceCase, opts: _Options, problems: list[Problem]) -> list[Volume] | None:
    vols: list[tuple[Path, Volume]] = []
    for path in case.images:
        try:
            vols += [(path, v) for v in read_channels(path, nonfinite="error")]
        except InputImageError as exc:
            problems.append(Problem(path, _message(exc)))
    if problems or not vols:
        return None
    ref = vols[0][1]
    out = [ref]
    for k, (path, vol) in enumerate(vols[1:], start=1):
        placed = _on_grid(vol, ref, path, f"channel {k}", opts, problems)
        if placed is not None:
            out.append(placed)
    return None if len(out) != len(vols) else out


def _mask_array(mask: Volume, path: Path, problems: list[Problem]) -> np.ndarray | None:
    arr = mask.array
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        bad = arr[~finite | (arr != np.round(arr))]
        if bad.size:
            problems.append(
                Problem(path, f"mask has non-integer values (e.g. {bad.flat[0]:g}): threshold or round it to class ids")
            )
            return None
        problems.append(Problem(path, "float mask with integer values: cast to integers", "warning"))
    if arr.size and arr.min() < 0:
        problems.append(Problem(path, f"mask has negative values (min {arr.min():g}); class ids are 0, 1, 2 ..."))
        return None
    top = int(arr.max()) if arr.size else 0
    if top > np.iinfo(np.uint16).max:
        problems.append(Problem(path, f"mask value {top} is too large for a class id"))
        return None
    return arr.astype(np.uint8 if top <= 255 else np.uint16, copy=False)


def _read_mask(case: SourceCase, ref: Volume, opts: _Options, problems: list[Problem]) -> Volume | None:
    if case.mask is None:
        return None
    try:
        vol = read_image(case.mask)
    except InputImageError as exc:
        problems.append(Problem(case.mask, _message(exc)))
        return None
    arr = _mask_array(vol, case.mask, problems)
    if arr is None:
        return None
    values = {int(v) for v in np.unique(arr)}
    if opts.labels is not None and opts.instances is None and values - set(opts.labels):
        extra = sorted(values - set(opts.labels))
        problems.append(
            Problem(case.mask, f"mask values {extra} are not in --labels {sorted(opts.labels)} (add them or fix it)")
        )
        return None
    return _on_grid(vol.with_array(arr), ref, case.mask, "mask", opts, problems)


def _agree(case: SourceCase, images: list[Volume], state: _State, problems: list[Problem]) -> bool:
    """Whether the case has the channel count and dimensionality of the cases before it."""
    state.channels = len(images) if state.channels is None else state.channels
    state.ndim = images[0].ndim if state.ndim is None else state.ndim
    digest = hashlib.sha1(np.ascontiguousarray(images[0].array).tobytes()).hexdigest()
    if len(images) != state.channels:
        problems.append(Problem(case.images[0], f"{len(images)} channel(s), the cases before {state.channels}"))
    elif images[0].ndim != state.ndim:
        problems.append(Problem(case.images[0], f"{images[0].ndim}D image, the cases before are {state.ndim}D"))
    elif digest in state.digests:
        twin = state.digests[digest]
        problems.append(Problem(case.images[0], f"same image as case {twin} (a duplicate would leak between folds)"))
    else:
        state.digests[digest] = case.case_id
    return not problems


def _import_case(
    case: SourceCase, writer: DatasetWriter, opts: _Options, state: _State, problems: list[Problem]
) -> ImportedCase:
    mine: list[Problem] = case_problems(problems, case)
    own = len(mine)
    images = None if mine else _read_images(case, opts, mine)
    mask = None
    if images is not None and _agree(case, images, state, mine):
        if case.mask is not None:
            mask = _read_mask(case, images[0], opts, mine)
        elif not opts.unlabelled_to_test:
            mine.append(Problem(case.images[0], "image without a mask (add it, or --unlabelled-to-test: imagesTs)"))
    problems += mine[own:]
    if images is None or any(p.severity == "error" for p in mine):
        return ImportedCase(case.case_id, "refused")
    test = mask is None
    for k, vol in enumerate(images):
        write_image(vol, writer.image_path(case.case_id, k, test=test))
        if np.issubdtype(vol.dtype, np.integer) and vol.array.min() <= -500:
            state.ct_like.add(k)
    values: tuple[int, ...] = ()
    if mask is not None:
        write_image(mask, writer.label_path(case.case_id))
        values = tuple(int(v) for v in np.unique(mask.array))
        state.values.update(values)
    ref = images[0]
    return ImportedCase(case.case_id, "test" if test else "training", len(images), ref.shape, ref.spacing, values)


def _label_map(opts: _Options, state: _State) -> tuple[dict[str, int], dict[int, int]]:
    """dataset.json labels and the value renumbering (source value -> written value)."""
    if opts.instances is not None:  # one id per object, kept as it is
        return {"background": 0, opts.instances: 1}, {}
    names = opts.labels or {v: f"label_{v}" for v in sorted(state.values | {0}) if v != 0}
    names = {0: "background", **names}
    mapping = {v: k for k, v in enumerate(sorted(names))}
    return {names[v]: mapping[v] for v in sorted(names)}, mapping


def _renumber(root: Path, file_ending: str, mapping: dict[int, int]) -> None:
    lut = np.zeros(max(mapping) + 1, dtype=np.uint16)
    for src, dst in mapping.items():
        lut[src] = dst
    for path in sorted((root / "labelsTr").glob(f"*{file_ending}")):
        vol = read_image(path)
        write_image(vol.with_array(lut[vol.array].astype(np.uint8 if len(mapping) <= 256 else np.uint16)), path)


def _check_out(out: Path, sources: list[Path], record: dict[str, Any], overwrite: bool) -> bool:
    """True when ``out`` already holds exactly this import; refuse a non-empty ``out`` without ``overwrite``."""
    out_r = out.resolve()
    for src in sources:
        s = src.resolve()
        if out_r == s or out_r in s.parents or s in out_r.parents:
            raise ConfigError(f"-o {out}: must lie outside the inputs ({src}); inputs are never modified")
    if not out.exists():
        return False
    if not out.is_dir():
        raise ConfigError(f"-o {out}: is a file (give a folder)")
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if read_json(out / "dataset.json").get(_RECORD_KEY) == record:
            return True
    if any(out.iterdir()) and not overwrite:
        raise ConfigError(f"-o {out}: folder is not empty (choose another one, or --overwrite to replace it)")
    return False


def _publish(staging: Path, out: Path) -> None:
    """Move ``staging`` onto ``out`` (an old ``out`` is moved away first, then deleted)."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def import_dataset(
    source: str | Path,
    masks: str | Path | None = None,
    *,
    out: str | Path,
    labels: str | Path | Mapping[Any, Any] | None = None,
    channels: Sequence[str] | None = None,
    name: str | None = None,
    file_ending: str = ".nii.gz",
    fix_geometry: bool = False,
    tolerance: float = 1e-4,
    unlabelled_to_test: bool = False,
    skip_bad: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    instances: str | None = None,
) -> ImportReport:
    """Import images and masks into a new nnU-Net v2 dataset folder ``out``.

    Parameters
    ----------
    source
        A folder of images (with ``masks`` a folder of masks), a folder holding ``images/`` and
        ``masks/`` (or ``labels/`` ...) sub-folders or images and ``*_seg`` masks side by side,
        or a ``.csv``/``.tsv`` of ``image[,image2...],mask`` rows (optional header, paths relative
        to the table's folder).
    labels
        ``{value: name}`` (a mapping, JSON text or a JSON file); default ``label_<value>`` for every
        mask value found. Values not consecutive from 0 are renumbered (recorded in dataset.json).
    channels
        Channel names (``["CT"]``: CT normalization at planning time); default ``image``/``image_K``.
    fix_geometry
        Copy the image's spacing/origin/direction onto a mask (or channel) of the same shape whose
        header differs beyond ``tolerance`` mm (refused otherwise).
    unlabelled_to_test
        Images without a mask go to ``imagesTs`` (refused otherwise).
    skip_bad
        Import the good cases when some are refused (otherwise :class:`ImportRefused`, nothing written).
    instances
        The masks hold one id per object (nuclei, cells) of this class name: dataset.json gets
        ``"instances": true`` and labels ``{"background": 0, NAME: 1}``; ids are kept as they are
        (see :mod:`voxseg.dataset.instances`). Not with ``labels``.
    overwrite
        Replace a non-empty ``out``. An ``out`` holding this very import (same inputs and options)
        is left as it is (``report.up_to_date``).

    Raises
    ------
    ImportRefused
        Cases were refused (listed in ``exc.report``) and ``skip_bad`` is false.
    DatasetFormatError, ConfigError
        No inputs, no case to import, a bad option, ``out`` not empty or among the inputs.
    """
    source, out = Path(source), Path(out)
    if instances is not None and (labels is not None or not str(instances).strip() or instances == "background"):
        raise ConfigError(
            "--instances NAME names the objects' class (e.g. nucleus); the ids in the masks are kept, "
            "so it cannot be combined with --labels"
        )
    opts = _Options(parse_labels(labels), fix_geometry, float(tolerance), unlabelled_to_test, instances)
    if not file_ending.startswith("."):
        file_ending = "." + file_ending
    pairing, sources = _pairing(source, None if masks is None else Path(masks))
    record = {
        "sources": [str(s.resolve()) for s in sources],
        "inputs_sha1": input_digest([*sources, *(p for c in pairing.cases for p in (*c.images, c.mask) if p)]),
        "options": {
            "labels": {str(k): v for k, v in sorted((opts.labels or {}).items())},
            "channels": list(channels or []),
            "file_ending": file_ending,
            "fix_geometry": fix_geometry,
            "tolerance": opts.tolerance,
            "unlabelled_to_test": unlabelled_to_test,
            "skip_bad": skip_bad,
            **({"instances": instances} if instances is not None else {}),
        },
    }
    report = ImportReport(out, problems=list(pairing.problems))
    if _check_out(out, sources, record, overwrite):
        report.up_to_date = True
        return report
    if not pairing.cases:
        raise DatasetFormatError(f"{source}: no images found to import")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.importing-", dir=out.parent))
    try:
        state = _import_all(pairing, staging, opts, report, file_ending, progress)
        _check_refused(report, skip_bad)
        spec = _final_spec(staging, report, opts, state, channels, name or out.name, file_ending)
        spec.extra[_RECORD_KEY] = record
        DatasetWriter(staging, spec).close()
        _publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _import_all(
    pairing: Pairing, staging: Path, opts: _Options, report: ImportReport, file_ending: str, progress: Progress | None
) -> _State:
    placeholder = DatasetSpec("import", {0: "image"}, {"background": 0}, file_ending)
    writer = DatasetWriter(staging, placeholder)
    state = _State()
    for i, case in enumerate(pairing.cases):
        report.cases.append(_import_case(case, writer, opts, state, report.problems))
        if progress is not None:
            progress(i + 1, len(pairing.cases))
    return state


def _check_refused(report: ImportReport, skip_bad: bool) -> None:
    errors = len(report.errors)
    if errors and not skip_bad:
        good = len(report.cases) - len(report.refused)
        raise ImportRefused(
            f"{len(report.refused)} case(s) refused, {errors} error(s) listed: nothing written "
            f"(fix them, or --skip-bad to import the {good} good case(s))",
            report,
        )
    if not any(c.status == "training" for c in report.cases):
        raise DatasetFormatError(f"{report.out}: no case could be imported for training (see the problems listed)")


def _final_spec(
    staging: Path,
    report: ImportReport,
    opts: _Options,
    state: _State,
    channels: Sequence[str] | None,
    name: str,
    file_ending: str,
) -> DatasetSpec:
    """dataset.json's contents; renumbers the written masks when their values are not 0..N."""
    n = state.channels or 1
    if channels and len(channels) != n:
        raise ConfigError(f"--channels: {len(channels)} name(s) for {n} channel(s) per case")
    names = list(channels) if channels else ["image" if n == 1 else f"image_{k}" for k in range(n)]
    if not channels:
        for k in sorted(state.ct_like):
            report.problems.append(
                Problem(
                    report.out,
                    f"channel {k} looks like CT (values below -500): --channels CT selects CT normalization",
                    "warning",
                )
            )
    labels, mapping = _label_map(opts, state)
    extra: dict[str, Any] = {"instances": True} if opts.instances is not None else {}
    if any(src != dst for src, dst in mapping.items()):
        _renumber(staging, file_ending, mapping)
        extra["label_values_renumbered"] = {str(s): d for s, d in mapping.items()}
        moved = ", ".join(f"{s}->{d}" for s, d in mapping.items() if s != d)
        report.problems.append(Problem(report.out, f"mask values renumbered to be consecutive: {moved}", "warning"))
    report.labels, report.channel_names = labels, dict(enumerate(names))
    return DatasetSpec(name, dict(enumerate(names)), labels, file_ending, extra=extra)
