"""Safe outputs of batch prediction: which files a run writes, the refusals made before anything
is written (:mod:`voxseg.io.guard`), per-case locks and the manifest merged under a lock.

Two ``voxseg predict`` runs into one output folder share the work: each case is claimed with a
lock (``filelock``) before it is predicted, a claimed case is left to its owner and checked again
at the end (done by then: skipped), and ``predictions.json`` is re-read, merged and replaced
atomically under its own lock, so no entry is lost. Lock files live in the system's temporary
folder (one folder per output folder), so the output folder holds only outputs; processes on other
machines sharing a network folder are not coordinated.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from voxseg.errors import OutputPathError
from voxseg.inference.inputs import CaseInput, _case_name, output_ending
from voxseg.io import image_suffix, write_json_atomic
from voxseg.io.atomic import clean_stale_parts
from voxseg.io.guard import check_outputs, same_file
from voxseg.io.safe_json import read_json

__all__ = [
    "case_outputs",
    "check_case_outputs",
    "check_batch_outputs",
    "owned_outputs",
    "case_lock",
    "merge_manifest",
]

log = logging.getLogger(__name__)


def case_outputs(output: Path, *, instances: bool, probabilities: bool) -> list[Path]:
    """The files a case writes: ``output`` and its ``_objects.csv`` / ``_probabilities.npz``."""
    base = output.name[: len(output.name) - len(image_suffix(output))] if image_suffix(output) else output.stem
    extra = []
    if instances:
        extra.append(output.parent / f"{base}_objects.csv")
    if probabilities:
        extra.append(output.parent / f"{base}_probabilities.npz")
    return [*extra, output]


def _case_files(case: CaseInput) -> list[Path]:
    return [*case.images, *([case.mask] if case.mask is not None else [])]


def check_case_outputs(case: CaseInput, output: Path, *, instances: bool = False, probabilities: bool = False) -> None:
    """Refuse a single case's outputs that are one of its inputs, or an output ``CASE<suffix>``
    next to the case's ``CASE_XXXX`` channel files (a folder run would then refuse that folder)."""
    outputs = case_outputs(output, instances=instances, probabilities=probabilities)
    check_outputs(outputs, inputs=_case_files(case))
    channel_files = [f for f in case.images if _case_name(f)[1] is not None]
    if channel_files and _case_name(output)[0] == case.case_id and same_file(output.parent, channel_files[0].parent):
        raise OutputPathError(
            output,
            f"this output would sit next to the channel file {channel_files[0]} under the same case name "
            "(voxseg would then refuse that folder as input)",
            "write it into another folder",
        )


def owned_outputs(manifest: dict[str, Any]) -> set[str]:
    """Every file a manifest says voxseg wrote."""
    owned = set()
    for entry in manifest.get("cases", {}).values():
        if isinstance(entry, dict):
            owned.update(p for p in [entry.get("output"), *(entry.get("extra_outputs") or [])] if isinstance(p, str))
    return owned


def check_batch_outputs(
    inputs: str | Path,
    cases: list[CaseInput],
    out: Path,
    *,
    mask_dir: str | Path | None,
    file_ending: str | None,
    instances: bool,
    probabilities: bool,
    overwrite: bool,
) -> None:
    """Refuse the whole batch before anything is written: an output that is an input, an output
    folder that is (or is read as) an input folder, or a foreign file in the way (the files
    ``out/predictions.json`` lists are voxseg's own)."""
    manifest = load_manifest(out / MANIFEST_NAME)
    folders = [Path(p).expanduser() for p in (inputs, mask_dir) if p is not None and Path(p).expanduser().is_dir()]
    outputs = [
        f
        for case in cases
        for f in case_outputs(
            out / f"{case.case_id}{output_ending(case, file_ending)}", instances=instances, probabilities=probabilities
        )
    ]
    check_outputs(
        outputs,
        inputs=[f for case in cases for f in _case_files(case)],
        input_dirs=folders,
        owned=owned_outputs(manifest),
        overwrite=overwrite,
        owner=str(out / MANIFEST_NAME),
    )
    clean_stale_parts(out)


def _lock_dir(out: Path) -> Path:
    key = hashlib.sha256(os.path.realpath(out).encode()).hexdigest()[:20]
    folder = Path(tempfile.gettempdir()) / f"voxseg-locks-{os.getuid() if hasattr(os, 'getuid') else 0}" / key
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def case_lock(out: Path, case_id: str, *, wait: bool) -> Iterator[bool]:
    """Hold the lock of ``case_id`` in output folder ``out``; yields False (not held) when another
    process holds it and ``wait`` is off."""
    lock = FileLock(_lock_dir(out) / f"{hashlib.sha256(case_id.encode()).hexdigest()[:20]}.lock")
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def merge_manifest(path: Path, header: dict[str, Any], entries: dict[str, Any]) -> dict[str, Any]:
    """Under the manifest's lock: re-read ``path``, put ``entries`` in, replace it atomically."""
    with FileLock(_lock_dir(path.parent) / "manifest.lock"):
        cases = dict(load_manifest(path).get("cases", {}))
        cases.update(entries)
        data = {**header, "cases": cases}
        write_json_atomic(path, data)
    return data


#: The batch run's manifest in the output folder.
MANIFEST_NAME = "predictions.json"


def load_manifest(path: Path) -> dict[str, Any]:
    """A batch run's manifest (``{"cases": {}}`` when missing or unreadable: every case is redone)."""
    try:
        data = read_json(path)
        if isinstance(data, dict) and isinstance(data.get("cases"), dict):
            return data
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        pass
    log.warning("%s: unreadable manifest; every case will be predicted again", path)
    return {}
