"""Validation of a trained fold: full-volume predictions of its validation cases, scored per class.

Predictions go through the same :class:`~voxseg.inference.predictor.Predictor` as ``voxseg
predict`` (preprocess -> sliding window -> restore to the original geometry), read from the raw
dataset files, and are written as ``runs/<cfg>/fold_<k>/validation/CASE<ending>`` with
``validation/metrics.json`` next to them. During training, :class:`PatchValidator` gives a cheap
per-epoch estimate (Dice on a fixed set of validation patches).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxseg.dataset import Dataset
from voxseg.evaluation import evaluate_case, summarize
from voxseg.io import read_image, write_image, write_json_atomic
from voxseg.planning import Plan
from voxseg.training.sampling import PatchSampler, load_cases

__all__ = ["PatchValidator", "validate_cases", "json_safe"]

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1


def json_safe(value: Any) -> Any:
    """Non-finite floats -> None, keys -> str (JSON has no inf/NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def validate_cases(
    model: torch.nn.Module,
    plan: Plan,
    dataset: Dataset,
    case_ids: Sequence[str],
    out_dir: str | Path,
    *,
    configuration: str,
    device: str = "cpu",
    overlap: float = 0.5,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Predict ``case_ids`` from the raw dataset with ``model``, write them to ``out_dir`` and score them.

    Returns
    -------
    dict
        The content of ``out_dir/metrics.json``: ``labels``, ``cases`` (per case and class: dice,
        hd95, voxel counts), ``summary`` (mean/std per class), ``mean_dice`` (mean over classes),
        ``overlap``, ``tiles`` (sliding-window tiles predicted) and ``seconds``.
    """
    from voxseg.inference.predictor import Predictor

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    predictor = Predictor(
        [model], plan, configuration=configuration, tta=False, precision="fp32", device=device, overlap=overlap
    )
    tiles = [0]

    def count(_done: int, total: int) -> None:
        tiles[-1] = total

    labels = [v for v in plan.class_values if v != 0]
    ending = dataset.spec.file_ending
    cases: dict[str, dict[int, dict[str, float]]] = {}
    started = time.perf_counter()
    for k, case_id in enumerate(case_ids):
        case = dataset.case(case_id)
        images = [read_image(p) for p in case.images]
        with torch.inference_mode():
            pred = predictor.predict(images, progress=count)
        tiles.append(0)
        write_image(pred.labels, out_dir / f"{case_id}{ending}")
        if case.label is not None:
            ref = dataset.read_label(case)
            cases[case_id] = evaluate_case(pred.labels, ref, labels=labels, ignore_label=plan.ignore_label)
        if progress is not None:
            progress(k + 1, len(case_ids), case_id)
    summary = summarize(cases, labels) if cases else {"per_class": {}, "foreground_mean": {}}
    report = {
        "schema_version": SCHEMA_VERSION,
        "configuration": configuration,
        "labels": labels,
        "ignore_label": plan.ignore_label,
        "cases": cases,
        "summary": summary,
        "mean_dice": summary["foreground_mean"].get("dice"),
        "overlap": float(overlap),
        "tiles": int(sum(tiles)),
        "seconds": round(time.perf_counter() - started, 3),
    }
    write_json_atomic(out_dir / "metrics.json", json_safe(report))
    log.info("validation of %d case(s): mean Dice %s", len(case_ids), report["mean_dice"])
    return report


class PatchValidator:
    """Mean foreground Dice of the model on a fixed set of validation patches (a cheap per-epoch signal).

    Parameters
    ----------
    prefixes
        Preprocessed validation cases.
    patch_size
        The training patch size.
    class_values
        The network's output classes, background first (channel ``k`` is ``class_values[k]``).
    patches
        How many patches (half of them centred on foreground).
    """

    def __init__(
        self,
        prefixes: Sequence[str],
        patch_size: Sequence[int],
        class_values: Sequence[int],
        *,
        ignore_label: int | None = None,
        patches: int = 4,
        seed: int = 0,
        device: str = "cpu",
    ):
        sampler = PatchSampler(load_cases(prefixes), patch_size, oversample_foreground=0.5, ignore_label=ignore_label)
        rng = np.random.default_rng([seed, 7919])
        pairs = [sampler.sample(rng) for _ in range(patches)]
        self.images = torch.from_numpy(np.stack([p[0] for p in pairs]))
        self.labels = np.stack([p[1][0] for p in pairs])
        self.class_values = np.asarray(class_values)
        self.ignore_label = ignore_label
        self.device = torch.device(device)

    def __call__(self, model: torch.nn.Module) -> float:
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                out = [model(self.images[i : i + 2].to(self.device)) for i in range(0, len(self.images), 2)]
        finally:
            model.train(was_training)
        logits = torch.cat([o[0] if isinstance(o, (list, tuple)) else o for o in out]).float().cpu()
        if logits.shape[1] == 1:
            pred = self.class_values[(logits[:, 0] > 0).numpy().astype(np.int64)]
        else:
            pred = self.class_values[logits.argmax(1).numpy()]
        foreground = [int(v) for v in self.class_values if v != 0]
        valid = self.labels != self.ignore_label if self.ignore_label is not None else np.ones(pred.shape, bool)
        scores = []
        for v in foreground:  # Dice over all patches together (dice() takes one 2D/3D map)
            p, r = (pred == v) & valid, self.labels == v
            total = int(p.sum()) + int(r.sum())
            scores.append(1.0 if total == 0 else 2.0 * int((p & r).sum()) / total)
        return float(np.mean(scores)) if scores else 1.0
