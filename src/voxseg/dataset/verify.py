"""``verify_dataset``: every problem of a dataset folder at once, each with where and how to fix.

Problems are errors (the dataset cannot be used as it is) or warnings (suspicious but legal,
e.g. an empty label, which is right for a negative control case).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxseg.dataset.layout import CHANNEL_RE, Case, Dataset, DatasetSpec, read_dataset
from voxseg.dataset.problem import Problem
from voxseg.errors import DatasetFormatError, InputImageError
from voxseg.io import READ_SUFFIXES, Volume, image_suffix, read_image

__all__ = ["Problem", "verify_dataset", "errors_only"]


def errors_only(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def _spec_problems(ds: Dataset) -> list[Problem]:
    spec, dj = ds.spec, ds.root / "dataset.json"
    out = []
    if sorted(spec.channel_names) != list(range(len(spec.channel_names))) or not spec.channel_names:
        out.append(Problem(dj, f"channel_names keys must be 0..N-1, got {sorted(spec.channel_names)}"))
    values = sorted(spec.labels.values())
    if spec.labels.get("background") != 0:
        out.append(Problem(dj, 'labels must contain "background": 0'))
    if len(set(values)) != len(values):
        out.append(Problem(dj, f"labels map two names to one value: {spec.labels}"))
    if values and values != list(range(values[-1] + 1)):
        out.append(Problem(dj, f"label values must be consecutive integers from 0, got {values}"))
    if spec.ignore_label is not None and spec.ignore_label != max(values):
        out.append(Problem(dj, f'"ignore" must be the highest label value, got {spec.ignore_label}'))
    n = len(ds.training)
    if spec.num_training != n:
        out.append(Problem(dj, f"numTraining is {spec.num_training} but imagesTr holds {n} cases (set it to {n})"))
    if n == 0:
        out.append(
            Problem(ds.root / "imagesTr", f"no training cases (expected files like CASE_0000{spec.file_ending})")
        )
    return out


def _naming_problems(folder: Path, spec: DatasetSpec, channel_files: bool) -> list[Problem]:
    """Files in ``folder`` that do not follow CASE[_XXXX]<ending>."""
    out: list[Problem] = []
    if not folder.is_dir():
        return out
    expected = f"CASE_0000{spec.file_ending}" if channel_files else f"CASE{spec.file_ending}"
    for f in sorted(folder.iterdir()):
        if f.name.startswith(".") or f.name.endswith(".json"):
            continue
        if not f.name.endswith(spec.file_ending):
            if image_suffix(f) in READ_SUFFIXES:
                out.append(
                    Problem(
                        f,
                        f"file ending {image_suffix(f)} differs from dataset.json's "
                        f"file_ending {spec.file_ending} (convert it or fix file_ending)",
                    )
                )
            else:
                out.append(Problem(f, f"unexpected file in {folder.name}/ (expected {expected})", "warning"))
        elif channel_files and not CHANNEL_RE.match(f.name[: -len(spec.file_ending)]):
            out.append(Problem(f, f"name does not follow CASE_XXXX{spec.file_ending} (a 4-digit channel index)"))
    return out


def _pairing_problems(ds: Dataset, cases: list[Case], labels_dir: str) -> list[Problem]:
    out = []
    n_ch = ds.spec.num_channels
    for c in cases:
        have = {int(CHANNEL_RE.match(p.name[: -len(ds.spec.file_ending)])["channel"]) for p in c.images}
        missing = [k for k in range(n_ch) if k not in have]
        extra = sorted(k for k in have if k >= n_ch)
        folder = c.images[0].parent
        for k in missing:
            out.append(
                Problem(
                    folder / f"{c.case_id}_{k:04d}{ds.spec.file_ending}",
                    f"missing channel {k} ({ds.spec.channel_names.get(k, '?')}) of case {c.case_id}",
                )
            )
        for k in extra:
            out.append(
                Problem(
                    folder / f"{c.case_id}_{k:04d}{ds.spec.file_ending}",
                    f"channel {k} is not declared in channel_names (dataset.json declares {n_ch})",
                )
            )
        if labels_dir == "labelsTr" and c.label is None:
            out.append(
                Problem(
                    ds.root / labels_dir / f"{c.case_id}{ds.spec.file_ending}",
                    f"label file missing for case {c.case_id}",
                )
            )
    ldir = ds.root / labels_dir
    if ldir.is_dir():
        ids = {c.case_id for c in cases}
        for f in sorted(ldir.glob(f"*{ds.spec.file_ending}")):
            if not f.name.startswith(".") and f.name[: -len(ds.spec.file_ending)] not in ids:
                out.append(
                    Problem(
                        f,
                        "label has no image (expected images named "
                        f"{f.name[: -len(ds.spec.file_ending)]}_0000{ds.spec.file_ending})",
                    )
                )
    return out


@dataclass
class _CaseResult:
    problems: list[Problem]
    ndim: int | None = None
    digest: str | None = None
    label_empty: bool | None = None


def _read(path: Path, problems: list[Problem]) -> Volume | None:
    try:
        return read_image(path, nonfinite="allow")
    except InputImageError as exc:
        problems.append(Problem(path, exc.problem + (f" ({exc.fix})" if exc.fix else "")))
        return None


def _check_case(case: Case, spec: DatasetSpec) -> _CaseResult:
    res = _CaseResult([])
    ref: Volume | None = None
    for path in case.images:
        vol = _read(path, res.problems)
        if vol is None:
            continue
        if np.issubdtype(vol.dtype, np.floating):
            bad = int(np.count_nonzero(~np.isfinite(vol.array)))
            if bad:
                res.problems.append(Problem(path, f"{bad} NaN/Inf voxels (replace them, e.g. with 0, before training)"))
        if ref is None:
            ref, res.ndim = vol, vol.ndim
            res.digest = hashlib.sha1(np.ascontiguousarray(vol.array).tobytes()).hexdigest()
        else:
            res.problems += _geometry_problems(path, vol, ref, "channel 0")
    if case.label is None:
        return res
    lab = _read(case.label, res.problems)
    if lab is None:
        return res
    arr = lab.array
    if np.issubdtype(arr.dtype, np.floating) and not np.array_equal(arr, np.round(arr)):
        res.problems.append(Problem(case.label, "label has non-integer values (labels must be integer class ids)"))
        return res
    values = {int(v) for v in np.unique(arr)}
    undeclared = sorted(values - spec.label_values)
    if spec.instances:  # one id per object: any non-negative integer
        undeclared = [v for v in sorted(values) if v < 0]
        if undeclared:
            res.problems.append(
                Problem(case.label, f"instance ids must be 0 (background) or positive, got {undeclared}")
            )
        undeclared = []
    if undeclared:
        res.problems.append(
            Problem(
                case.label,
                f"label values {undeclared} are not declared in dataset.json labels {sorted(spec.label_values)}",
            )
        )
    fg = values - {0} - ({spec.ignore_label} if spec.ignore_label is not None else set())
    res.label_empty = not fg
    if res.label_empty:
        res.problems.append(
            Problem(
                case.label,
                "label is empty (no foreground): fine for a negative case, otherwise check the file",
                "warning",
            )
        )
    if ref is not None:
        res.problems += _geometry_problems(case.label, lab, ref, "its image")
    return res


def _geometry_problems(path: Path, vol: Volume, ref: Volume, what: str) -> list[Problem]:
    if vol.ndim != ref.ndim:
        return [Problem(path, f"{vol.ndim}D but {what} is {ref.ndim}D")]
    if vol.shape != ref.shape:
        return [Problem(path, f"shape {vol.shape} differs from {what}'s {ref.shape}")]
    diffs = vol.geometry.differences(ref.geometry)
    return [Problem(path, f"geometry differs from {what}: {d} (resample or copy the header)") for d in diffs]


def verify_dataset(
    path: str | Path, *, num_workers: int = 2, progress: Callable[[int, int], None] | None = None
) -> list[Problem]:
    """Check a dataset folder and return every problem found (empty list: all good).

    Checks dataset.json (keys, channel and label declarations, numTraining), file naming and
    endings, missing channel files, missing or orphan labels, unreadable/corrupt files, NaN/Inf
    voxels, label values not declared, shape/spacing/origin/orientation mismatches between a
    case's channels and label, mixed 2D/3D cases, empty labels (warning; an error if all are
    empty) and duplicate cases (identical images under two names).

    Parameters
    ----------
    path
        The dataset folder (nnU-Net v2 layout).
    num_workers
        Threads reading files.
    progress
        Called as ``progress(done, total)`` after each case is read.
    """
    try:
        ds = read_dataset(path)
    except DatasetFormatError as exc:
        where, sep, what = str(exc).partition(": ")
        return [Problem(Path(where), what) if sep else Problem(Path(path), str(exc))]
    problems = _spec_problems(ds)
    for sub, channel_files in (("imagesTr", True), ("labelsTr", False), ("imagesTs", True), ("labelsTs", False)):
        problems += _naming_problems(ds.root / sub, ds.spec, channel_files)
    problems += _pairing_problems(ds, ds.training, "labelsTr")
    problems += _pairing_problems(ds, ds.test, "labelsTs")
    cases = [*ds.training, *ds.test]
    results: list[_CaseResult] = []
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        for i, res in enumerate(pool.map(lambda c: _check_case(c, ds.spec), cases)):
            results.append(res)
            if progress is not None:
                progress(i + 1, len(cases))
    for res in results:
        problems += res.problems
    problems += _cross_case_problems(ds, cases, results)
    return problems


def _cross_case_problems(ds: Dataset, cases: list[Case], results: list[_CaseResult]) -> list[Problem]:
    out = []
    dims = {r.ndim for r in results if r.ndim is not None}
    if len(dims) > 1:
        out.append(Problem(ds.root, f"cases mix {' and '.join(f'{d}D' for d in sorted(dims))} images (use one kind)"))
    seen: dict[str, str] = {}
    for c, r in zip(cases, results, strict=True):
        if r.digest is None:
            continue
        if r.digest in seen:
            out.append(
                Problem(
                    c.images[0],
                    f"case {c.case_id} has the same image as case {seen[r.digest]} "
                    "(duplicate case: remove one, it would leak between folds)",
                )
            )
        else:
            seen[r.digest] = c.case_id
    train_empty = [
        r.label_empty for c, r in zip(cases, results, strict=True) if c in ds.training and r.label_empty is not None
    ]
    if train_empty and all(train_empty):
        out.append(Problem(ds.root / "labelsTr", "every training label is empty: there is nothing to learn"))
    return out
