"""Preprocess every training case of a dataset into a folder: parallel, resumable, reporting bad cases."""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxseg._procs import parent_watch
from voxseg.dataset import Case, Dataset, read_dataset
from voxseg.dataset.instances import read_label
from voxseg.errors import InputImageError, VoxsegError
from voxseg.io import read_image
from voxseg.io.safe_json import read_json
from voxseg.planning.normalization import Normalization

from .pipeline import preprocess_case
from .snapshot import snapshot_png
from .store import MAX_LOCATIONS, SCHEMA_VERSION, case_paths, write_preprocessed

__all__ = ["PreprocessReport", "preprocess_dataset", "case_settings"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]  # (completed, total, case_id)
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class PreprocessReport:
    """What :func:`preprocess_dataset` did: cases written this run and cases already up to date."""

    out_dir: Path
    done: tuple[str, ...]
    skipped: tuple[str, ...]
    seconds: float


@dataclass(frozen=True)
class _Job:
    case: Case
    prefix: Path
    settings: dict[str, Any]
    normalization: tuple[Normalization, ...]
    ignore_label: int | None
    max_locations: int
    seed: int
    snapshot: Path | None
    label_names: dict[int, str]
    instances: bool = False


def case_settings(
    case: Case,
    *,
    target_spacing: Sequence[float],
    normalization: Sequence[Normalization],
    anisotropy_threshold: float,
    instances: bool = False,
) -> dict[str, Any]:
    """The JSON record that decides whether a stored case is up to date (settings + input file sizes).

    ``instances``: the stored target is the border target of instance ids (a change redoes the case).
    """
    files = [*case.images, *([case.label] if case.label is not None else [])]
    record = {
        "schema_version": SCHEMA_VERSION,
        "target_spacing": [float(v) for v in target_spacing],
        "normalization": [n.to_json() for n in normalization],
        "anisotropy_threshold": float(anisotropy_threshold),
        "sources": [{"file": f.name, "bytes": f.stat().st_size if f.exists() else None} for f in files],
        **({"label_target": "instance_border"} if instances else {}),
    }
    return json.loads(json.dumps(record))  # the form it has after a JSON round trip


def _is_current(prefix: Path, settings: Mapping[str, Any], has_label: bool) -> bool:
    data_path, seg_path, json_path = case_paths(prefix)
    if not (json_path.is_file() and data_path.is_file()) or (has_label and not seg_path.is_file()):
        return False
    try:
        record = read_json(json_path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(record, dict) and record.get("settings") == settings


def _run_job(job: _Job) -> tuple[str, str | None]:
    """Read, preprocess and write one case; return (case_id, error message or None)."""
    case = job.case
    try:
        images = [read_image(p) for p in case.images]
        label = read_label(case.label, instances=job.instances) if case.label is not None else None
        pre = preprocess_case(
            images,
            label,
            target_spacing=job.settings["target_spacing"],
            normalization=job.normalization,
            anisotropy_threshold=job.settings["anisotropy_threshold"],
            case_id=case.case_id,
        )
        write_preprocessed(
            job.prefix,
            pre,
            settings=job.settings,
            ignore_label=job.ignore_label,
            max_locations=job.max_locations,
            seed=job.seed,
        )
        if job.snapshot is not None:
            snapshot_png(
                case.case_id,
                images,
                pre,
                job.snapshot,
                raw_label=label,
                label_names=job.label_names,
                ignore_label=job.ignore_label,
            )
    except InputImageError as exc:
        where = exc.path if exc.path is not None else case.images[0]
        fix = f" ({exc.fix})" if exc.fix else ""
        return case.case_id, f"{where}: {exc.problem}{fix}"
    except Exception as exc:  # one bad case must not stop the others; the message names its file
        return case.case_id, f"{case.images[0]}: {type(exc).__name__}: {exc}"
    return case.case_id, None


@contextlib.contextmanager
def _one_thread_per_worker() -> Iterator[None]:
    """Worker processes started inside inherit one BLAS/OpenMP thread (they run side by side)."""
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_jobs(jobs: list[_Job], num_workers: int, report: Callable[[str, str | None], None]) -> None:
    if num_workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            report(*_run_job(job))
        return
    context = multiprocessing.get_context("spawn")
    workers = min(num_workers, len(jobs))
    # the workers die with this process (kill -9 included): none keeps writing into out_dir after it
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=parent_watch()) as pool:
        with _one_thread_per_worker():  # spawn happens at the first submissions
            pending: set[Future] = {pool.submit(_run_job, job) for job in jobs}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    report(*future.result())
        except BrokenProcessPool:
            raise VoxsegError(
                "a preprocessing worker process died (out of memory, or preprocess_dataset was called from a script "
                "without an `if __name__ == '__main__':` guard); finished cases are kept: run again to resume, "
                "with num_workers=1 to see the error"
            ) from None
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def preprocess_dataset(
    dataset: Dataset | str | Path,
    out_dir: str | Path,
    *,
    target_spacing: Sequence[float],
    normalization: Sequence[Normalization],
    num_workers: int = 2,
    progress: Progress | None = None,
    overwrite: bool = False,
    anisotropy_threshold: float = 3.0,
    snapshots: int = 0,
    max_locations: int = MAX_LOCATIONS,
    seed: int = 0,
) -> PreprocessReport:
    """Preprocess every training case of ``dataset`` into ``out_dir`` (see :mod:`voxseg.preprocessing.store`).

    Parameters
    ----------
    dataset
        A :class:`~voxseg.dataset.Dataset` or its folder.
    out_dir
        Output folder: ``CASE.npy``, ``CASE_seg.npy``, ``CASE.json`` per case, ``snapshots/CASE.png``.
    target_spacing, normalization, anisotropy_threshold
        As for :func:`~voxseg.preprocessing.preprocess_case`.
    num_workers
        Worker processes (``spawn``); 1 runs in this process.
    progress
        Called as ``progress(completed, total, case_id)`` after every case, skipped ones included.
    overwrite
        Redo every case; by default a case whose ``.json`` matches the settings and input file
        sizes is skipped (resume).
    snapshots
        Write a PNG of the stages for the first N cases processed in this run.
    max_locations, seed
        Foreground locations stored per class, and their seed.

    Raises
    ------
    VoxsegError
        After all other cases are done, if some failed: one line per failed case with its file.
    """
    start = time.perf_counter()
    if not isinstance(dataset, Dataset):
        dataset = read_dataset(dataset)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    norms = tuple(normalization)
    spec = dataset.spec
    names = {v: k for k, v in spec.target_labels.items()}
    jobs, skipped = [], []
    for case in dataset.training:
        settings = case_settings(
            case,
            target_spacing=target_spacing,
            normalization=norms,
            anisotropy_threshold=anisotropy_threshold,
            instances=spec.instances,
        )
        prefix = out_dir / case.case_id
        if not overwrite and _is_current(prefix, settings, case.label is not None):
            skipped.append(case.case_id)
            continue
        shot = out_dir / "snapshots" / f"{case.case_id}.png" if len(jobs) < snapshots else None
        jobs.append(
            _Job(case, prefix, settings, norms, spec.ignore_label, max_locations, seed, shot, names, spec.instances)
        )
    total = len(dataset.training)
    done: list[str] = []
    failed: list[str] = []

    def report(case_id: str, error: str | None) -> None:
        if error is None:
            done.append(case_id)
        else:
            log.error("case %s failed: %s", case_id, error)
            failed.append(f"{case_id}: {error}")
        if progress is not None:
            progress(len(skipped) + len(done) + len(failed), total, case_id)

    for k, case_id in enumerate(skipped, start=1):
        if progress is not None:
            progress(k, total, case_id)
    if skipped:
        log.info("%d of %d cases already preprocessed with these settings: skipped", len(skipped), total)
    _run_jobs(jobs, num_workers, report)
    if failed:
        raise VoxsegError(
            f"preprocessing failed for {len(failed)} of {total} cases (the others are done; fix them and run again): "
            + "; ".join(sorted(failed))
        )
    return PreprocessReport(out_dir, tuple(sorted(done)), tuple(skipped), time.perf_counter() - start)
