"""``export_bundle``: a trained work folder -> a bundle folder or ``.zip``.

Reads only files of the work folder (``plan.json``, the folds' ``checkpoint/model.safetensors``
and their ``state.json`` hashes, ``crossval/<cfg>/postprocessing.json`` and ``summary.json``,
``dataset.json``); never imports training code. torch is imported only to compute the golden
test's expected output (:mod:`voxseg.bundle.attach`) and the ONNX models.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from voxseg.bundle._util import read_head, safetensors_problem, sha256_bytes, sha256_file
from voxseg.bundle.attach import attach_golden, attach_onnx, provenance, validation_case
from voxseg.bundle.card import make_card
from voxseg.bundle.load import CARD_NAME
from voxseg.bundle.manifest import MANIFEST_NAME, BundleManifest
from voxseg.errors import BundleError, ConfigError, VoxsegError
from voxseg.fingerprint import Fingerprint
from voxseg.fingerprint.domain import TrainingDomain
from voxseg.io import atomic_path
from voxseg.io.safe_json import read_json
from voxseg.planning import Plan
from voxseg.planning.work import work_plan
from voxseg.postprocessing import PostprocessingSpec, for_plan
from voxseg.workdir.layout import WorkDir

__all__ = ["export_bundle", "write_bundle"]

log = logging.getLogger(__name__)

#: Fixed timestamp of zip members, so the same files give the same archive bytes.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("voxseg", "torch", "monai", "safetensors"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    out["python"] = platform.python_version()
    return out


def _read_json(path: Path) -> Any:
    try:
        return read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{path}: unreadable JSON ({exc})") from None


def _fold_weights(work: WorkDir, configuration: str, fold: int) -> Path:
    ckpt = work.checkpoint_dir(configuration, fold)
    weights = ckpt / "model.safetensors"
    if not weights.is_file():
        raise BundleError(f"{weights}: missing; train fold {fold} of configuration {configuration!r} first")
    state = _read_json(ckpt / "state.json") or {}
    recorded = (state.get("sha256") or {}).get("model.safetensors")
    if recorded is not None and recorded != sha256_file(weights):
        raise BundleError(f"{weights}: does not match the sha256 in its state.json (corrupt checkpoint)")
    problem = safetensors_problem(read_head(weights), weights.stat().st_size)
    if problem:
        raise BundleError(f"{weights}: {problem}")
    return weights


def _training_domain(work: WorkDir) -> TrainingDomain | None:
    """The spacing and size ranges of the training cases, from ``fingerprint.json`` (None without one)."""
    if not work.fingerprint_path.is_file():
        return None
    try:
        return TrainingDomain.from_fingerprint(Fingerprint.load(work.fingerprint_path))
    except (VoxsegError, OSError, ValueError) as exc:
        log.warning("%s: no training domain recorded (%s)", work.fingerprint_path, exc)
        return None


def check_quality(work: Path, cfg: str, folds: Sequence[int], metrics: dict, *, min_dice: float | None) -> None:
    """Warn about low cross-validation figures and short trainings; refuse under ``min_dice``."""
    from voxseg.workdir.quality import crossval_warnings, cv_dice, fold_records

    for line in crossval_warnings(metrics, fold_records(work, cfg, folds)):
        log.warning("%s", line)
    dice = cv_dice(metrics)
    if min_dice is not None and (dice is None or dice < min_dice):
        found = f"is {dice:.4f}" if dice is not None else "is unknown (run `voxseg crossval` first)"
        raise BundleError(f"{work}: the cross-validation mean Dice {found}, under --min-dice {min_dice}; not exported")


def _task(plan: Plan, post: PostprocessingSpec) -> str:
    if plan.interactive:
        return "interactive"
    return "instances" if post.makes_instances else "semantic"


def export_bundle(
    work: str | Path,
    out: str | Path,
    *,
    name: str,
    version: str,
    configuration: str | None = None,
    folds: Sequence[int] | None = None,
    description: str = "",
    license: str = "",
    authors: Sequence[str] = (),
    modality: str = "",
    card_notes: str | None = None,
    onnx: bool = False,
    golden: bool = True,
    parent: str | None = None,
    intended_use: str = "",
    min_dice: float | None = None,
    lineage: Mapping[str, Any] | None = None,
) -> Path:
    """Package a trained work folder as a bundle.

    Parameters
    ----------
    work
        The work folder (``voxseg plan DATA -o WORK`` + ``voxseg train``).
    out
        ``NAME.zip`` for an archive (replaced atomically), or a folder path without suffix
        (must not exist yet).
    name, version
        ``mouse-lung-nodules``, ``v1``.
    configuration
        Plan configuration to export (default: the plan's default).
    folds
        Folds to include (default: every finished fold).
    description, license, intended_use, authors, modality, card_notes
        Written into ``bundle.json`` and the model card.
    onnx
        Also write ``model_fold_K.onnx`` per fold (needs the ``[onnx]`` extra), for the
        torch-free onnxruntime backend (:mod:`voxseg.bundle.onnx_backend`).
    golden
        Write the golden test (:mod:`voxseg.bundle.golden`): a crop of the first validation case
        of fold 0 with the full pipeline's expected output (skipped, with a warning, when the raw
        dataset is gone; for interactive models, the six extreme points of its largest object).
    parent
        The model this one was fine-tuned from (``NAME@VERSION``, recorded in ``provenance``).
    lineage
        More ``provenance`` entries (a fine-tuned version's ``parent_model`` and ``finetune``
        record: case hashes and before/after validation; see :mod:`voxseg.experiment.finetune`).
    min_dice
        Refuse (:class:`BundleError`) when the cross-validation mean Dice is under this or unknown.
        Low figures and folds trained only a few epochs are logged as warnings either way.

    Returns
    -------
    Path
        ``out``.
    """
    work_dir = WorkDir(Path(work))
    try:
        plan = work_plan(work_dir, configuration)
        cfg = plan.configuration(configuration).name
    except ConfigError as exc:
        raise BundleError(str(exc)) from None
    chosen = list(folds) if folds is not None else work_dir.trained_folds(cfg)
    if not chosen:
        raise BundleError(
            f"{work_dir.root}: no finished fold of configuration {cfg!r} to export; run `voxseg train` first"
        )
    weights = {int(f): _fold_weights(work_dir, cfg, int(f)) for f in chosen}
    post_path = work_dir.postprocessing_path(cfg)
    try:
        post = for_plan(PostprocessingSpec.load(post_path) if post_path.is_file() else PostprocessingSpec(), plan)
    except VoxsegError as exc:
        raise BundleError(f"{post_path}: {exc}") from None
    metrics = _read_json(work_dir.crossval_dir(cfg) / "summary.json") or {}
    check_quality(work_dir.root, cfg, chosen, metrics if isinstance(metrics, dict) else {}, min_dice=min_dice)
    dataset = _read_json(work_dir.dataset_path) or {}
    manifest = BundleManifest(
        name=name,
        version=version,
        task=_task(plan, post),
        plan=plan,
        configuration=cfg,
        folds=tuple(sorted(weights)),
        files={BundleManifest.weights_file(f): sha256_file(p) for f, p in weights.items()},
        description=description,
        license=license,
        intended_use=intended_use,
        authors=tuple(authors),
        modality=modality or ", ".join(plan.channel_names[i] for i in sorted(plan.channel_names)),
        postprocessing=post,
        metrics=metrics if isinstance(metrics, dict) else {},
        versions=_versions(),
        created=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        training_domain=_training_domain(work_dir),
    )
    files: dict[str, bytes | Path] = {BundleManifest.weights_file(f): p for f, p in weights.items()}
    record = {**provenance(manifest, work_dir.root, parent=parent), **dict(lineage or {})}
    manifest = dataclasses.replace(manifest, provenance=record)
    if golden:
        case = validation_case(work_dir.root, cfg)
        if case is not None:
            images, label, case_id = case
            manifest, golden_files = attach_golden(
                manifest, weights, images, label, source=f"validation case {case_id}"
            )
            files.update(golden_files)
    files[CARD_NAME] = make_card(manifest, notes=card_notes, dataset=dataset).encode("utf-8")
    if onnx:
        files.update(attach_onnx(manifest, weights))
    path = write_bundle(manifest, files, out)
    log.info("exported %s (%s, folds %s) to %s", manifest.reference, cfg, list(manifest.folds), path)
    return path


def write_bundle(manifest: BundleManifest, files: dict[str, bytes | Path], out: str | Path) -> Path:
    """Write ``files`` (name -> bytes or source path) and ``bundle.json`` as a zip or folder.

    The manifest's ``files`` hashes are recomputed from ``files``, so callers may pass a manifest
    built before every file existed (e.g. before the model card was written).
    """
    out = Path(out)
    hashes = {}
    for rel, src in files.items():
        hashes[rel] = sha256_file(src) if isinstance(src, Path) else _sha(src)
    manifest = BundleManifest.from_json({**manifest.to_json(), "files": hashes})
    text = manifest.dumps().encode("utf-8")
    if out.suffix.lower() == ".zip":
        return _write_zip(out, text, files)
    if out.suffix:
        raise ConfigError(f"{out}: a bundle is a .zip file or a folder without suffix")
    return _write_folder(out, text, files)


def _sha(data: bytes) -> str:
    return sha256_bytes(data)


def _write_zip(out: Path, manifest: bytes, files: dict[str, bytes | Path]) -> Path:
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel, src in [(MANIFEST_NAME, manifest), *sorted(files.items())]:
            info = zipfile.ZipInfo(rel, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.create_system = 3
            if isinstance(src, Path):
                with open(src, "rb") as fh, zf.open(info, "w", force_zip64=True) as dst:
                    shutil.copyfileobj(fh, dst, 1 << 20)
            else:
                zf.writestr(info, src)
    return out


def _write_folder(out: Path, manifest: bytes, files: dict[str, bytes | Path]) -> Path:
    if out.exists():
        raise BundleError(f"{out}: already exists; choose a new folder or delete it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for rel, src in sorted(files.items()):
            dest = tmp.joinpath(*rel.split("/"))
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, Path):
                shutil.copyfile(src, dest)
            else:
                dest.write_bytes(src)
        (tmp / MANIFEST_NAME).write_bytes(manifest)
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
