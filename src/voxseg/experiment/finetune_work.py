"""The work folder of a fine-tuning (or first, sparse) training: checks, case hashes, preparation.

Internal to :mod:`voxseg.experiment.finetune`. A fine-tuning work folder is an ordinary work folder
(:class:`~voxseg.workdir.layout.WorkDir`) whose ``plan.json`` is the model's plan (its spacing,
normalization, patch and network kept; the dataset's ignore label added), with one fold
(``splits.json``: every case but the held-out one trains) and, next to it:

```
WORK/finetune.json      what was asked, the case hashes, the "before" validation, the export
WORK/start.safetensors  the parent model's weights the run starts from
WORK/before/            the parent model's predictions of the held-out case (and metrics.json)
```
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from voxseg.dataset import Dataset
from voxseg.dataset.splits import Fold, write_splits
from voxseg.dataset.verify import errors_only, verify_dataset
from voxseg.errors import DatasetFormatError
from voxseg.io import read_image, write_json_atomic
from voxseg.io.safe_json import read_json
from voxseg.planning import Plan
from voxseg.workdir.layout import WorkDir

__all__ = ["case_hashes", "check_compatible", "fine_tune_plan", "prepare_work", "read_record", "work_key"]

log = logging.getLogger(__name__)

RECORD = "finetune.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def case_hashes(dataset: Dataset) -> dict[str, dict[str, Any]]:
    """sha256 of every training case's image and label files (what a bundle records: no images)."""
    return {
        c.case_id: {
            "images": [_sha256(p) for p in c.images],
            "label": _sha256(c.label) if c.label is not None else None,
        }
        for c in dataset.training
    }


def work_key(model_sha256: str, hashes: Mapping[str, Any], settings: Mapping[str, Any]) -> str:
    """12 hex digits naming a work folder: the same model, cases and settings resume the same run."""
    text = json.dumps({"model": model_sha256, "cases": hashes, "settings": settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _label_text(labels: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items(), key=lambda kv: kv[1]))


def check_compatible(dataset: Dataset, plan: Plan, model: str) -> None:
    """Refuse, in one line naming the file, data the model cannot learn from: a dataset failing
    ``verify``, no labelled case, other channels, 2D data for a 3D model (or the reverse), or labels
    the model does not predict.

    Raises
    ------
    DatasetFormatError
    """
    dj = dataset.root / "dataset.json"
    errors = errors_only(verify_dataset(dataset.root, num_workers=1))
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise DatasetFormatError(
            f"{errors[0].path}: {errors[0].message}{more}; fix it (see `voxseg dataset verify {dataset.root}`)"
        )
    labelled = [c for c in dataset.training if c.label is not None]
    if not labelled:
        raise DatasetFormatError(f"{dataset.root / 'labelsTr'}: no labelled case to fine-tune {model} on")
    spec = dataset.spec
    if spec.num_channels != plan.num_channels:
        raise DatasetFormatError(
            f"{dj}: {spec.num_channels} channel(s) ({', '.join(spec.channel_names.values())}) but {model} reads "
            f"{plan.num_channels} ({', '.join(plan.channel_names.values())}); use images of the model's channels"
        )
    first = labelled[0].images[0]
    ndim = read_image(first).ndim
    if ndim != plan.data_ndim:
        raise DatasetFormatError(
            f"{first}: a {ndim}D image, but {model} segments {plan.data_ndim}D images; use {plan.data_ndim}D cases"
        )
    if spec.instances != plan.instances:
        kind = "one id per object" if plan.instances else "class values"
        raise DatasetFormatError(
            f'{dj}: "instances" is {str(spec.instances).lower()} but {model} was trained on {kind}; '
            f'set "instances": {str(plan.instances).lower()} and label the masks that way'
        )
    ignore = spec.ignore_label
    theirs = {k: int(v) for k, v in spec.target_labels.items() if k != "ignore"}
    ours = plan.label_names
    for name, value in theirs.items():
        if ours.get(value) != name:
            raise DatasetFormatError(
                f"{dj}: label {name}={value} is not one of {model}'s labels ({_label_text(plan.labels)}); "
                "relabel the masks to the model's labels"
            )
    if ignore is not None and ignore in ours:
        raise DatasetFormatError(
            f"{dj}: the ignore label {ignore} is one of {model}'s classes ({ours[ignore]}); "
            f"give 'ignore' a value above {max(ours)}"
        )


def fine_tune_plan(plan: Plan, configuration: str, dataset: Dataset) -> Plan:
    """The model's plan for one configuration, with the dataset's ignore label (if any)."""
    conf = plan.configuration(configuration)
    labels = {k: v for k, v in plan.labels.items() if k != "ignore"}
    ignore = dataset.spec.ignore_label
    if ignore is not None:
        labels["ignore"] = int(ignore)
    return plan.replace(
        labels=labels, ignore_label=ignore, configurations={conf.name: conf}, default_configuration=conf.name
    )


def _splits(case_ids: Sequence[str], holdout: int) -> Fold:
    ids = sorted(case_ids)
    held = ids[len(ids) - holdout :] if holdout else []
    return Fold(tuple(c for c in ids if c not in held), tuple(held))


def prepare_work(
    wd: WorkDir, dataset: Dataset, plan: Plan, *, holdout: int, start_weights: bytes | None, record: dict[str, Any]
) -> Fold:
    """Write the work folder's files (once: a rerun keeps them) and preprocess the cases with the plan."""
    from voxseg.preprocessing import preprocess_dataset

    wd.root.mkdir(parents=True, exist_ok=True)
    fold = _splits(dataset.case_ids, holdout)
    if not wd.plan_path.is_file():
        data = read_json(dataset.root / "dataset.json")
        write_json_atomic(wd.dataset_path, {**data, "voxseg_source": str(dataset.root.resolve())})
        write_splits(wd.splits_path, [fold], seed=plan.seed)
        if start_weights is not None:
            tmp = wd.root / ".start.safetensors.part"
            tmp.write_bytes(start_weights)
            tmp.replace(wd.root / "start.safetensors")
        write_json_atomic(wd.root / RECORD, record)
        plan.save(wd.plan_path)  # last: its presence means the folder is complete
    conf = plan.configuration()
    preprocess_dataset(
        dataset,
        wd.preprocessed_dir(conf.name),
        target_spacing=conf.target_spacing,
        normalization=plan.normalization,
        anisotropy_threshold=plan.anisotropy_threshold,
        num_workers=1,
        seed=plan.seed,
    )
    return fold


def read_record(wd: WorkDir) -> dict[str, Any]:
    """``finetune.json`` of a work folder ({} when absent)."""
    path = wd.root / RECORD
    return dict(read_json(path)) if path.is_file() else {}


def update_record(wd: WorkDir, **fields: Any) -> dict[str, Any]:
    data = {**read_record(wd), **fields}
    write_json_atomic(wd.root / RECORD, data)
    return data
