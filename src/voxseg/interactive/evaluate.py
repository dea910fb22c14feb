"""Interactive evaluation: a simulated user against a model, the Dice-after-k-interactions curve.

:func:`evaluate_interactive` (``voxseg evaluate-interactive WORK|BUNDLE DATA``) plays
:func:`~voxseg.interactive.simulate_user` on every chosen case of a dataset: six jittered extreme
points of the case's largest object, then up to ``clicks`` corrective clicks, each answered by
:func:`~voxseg.interactive.pipeline.refine`. It writes ``curve.csv`` (mean Dice after k = 0..N
interactions, with the automatic model's mean Dice when one is given), ``cases.csv`` (every
case's curve), ``curve.png`` (Pillow) and ``interactive.json``.

:func:`validate_interactive` is the same session without clicks, used after training an
interactive fold (``val_dice`` from six simulated points per validation case).
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from voxseg.dataset import Dataset, read_dataset
from voxseg.errors import ConfigError
from voxseg.evaluation import dice
from voxseg.interactive.config import PromptConfig
from voxseg.interactive.pipeline import load_interactive_model, refined_mask
from voxseg.interactive.points import Click
from voxseg.interactive.session import InteractionCurve, mean_curve, simulate_user
from voxseg.io import Volume, atomic_path, read_image, write_json_atomic

__all__ = ["evaluate_interactive", "validate_interactive", "simulated_session", "largest_object", "plot_curve"]

log = logging.getLogger(__name__)


def largest_object(label: np.ndarray) -> np.ndarray:
    """The largest connected component (face connectivity) of ``label != 0``; empty if none."""
    fg = np.asarray(label) != 0
    components, n = ndi.label(fg)
    if n == 0:
        return fg
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def _segmenter(predictor, channels: list[Volume]) -> Callable:

    def segment(points: np.ndarray, clicks: list[Click], previous: np.ndarray | None) -> np.ndarray:
        return refined_mask(predictor, channels, np.asarray(points, dtype=np.int64), clicks)

    return segment


def simulated_session(
    predictor, channels: list[Volume], reference: np.ndarray, clicks: int, seed: int
) -> InteractionCurve:
    """One simulated user on one case: six jittered points (the plan's jitter), then ``clicks`` corrections."""
    config = PromptConfig.from_json(predictor.plan.interactive)
    spacing = channels[0].spacing
    inward = PromptConfig.for_spacing(spacing).inward
    return simulate_user(
        _segmenter(predictor, channels),
        reference,
        max_clicks=clicks,
        rng=seed,
        inward=inward,
        jitter=config.jitter_mm,
        spacing=spacing,
    )


def _read_case(case) -> tuple[list[Volume], np.ndarray]:
    channels = [read_image(p) for p in case.images]
    if case.label is None:
        raise ConfigError(f"case {case.case_id!r} has no label: interactive evaluation needs the reference")
    return channels, np.asarray(read_image(case.label).array)


def _choose(dataset: Dataset, cases: Sequence[str] | None) -> list:
    by_id = {c.case_id: c for c in dataset.training}
    if not cases:
        return [by_id[k] for k in sorted(by_id)]
    missing = [c for c in cases if c not in by_id]
    if missing:
        raise ConfigError(f"{dataset.root}: no training case(s) {', '.join(missing)} (it has {len(by_id)} cases)")
    return [by_id[c] for c in cases]


def validate_interactive(
    model: Any, dataset: Dataset, case_ids: Sequence[str], out_dir: str | Path, *, seed: int = 0
) -> dict[str, Any]:
    """Dice from six simulated jittered points per case (no clicks); writes ``out_dir/metrics.json``.

    Returns ``{"mean_dice", "cases": {id: dice}, "seconds"}``.
    """
    started = time.monotonic()
    predictor = load_interactive_model(model)
    scores = {}
    for index, case in enumerate(_choose(dataset, case_ids)):
        channels, label = _read_case(case)
        reference = largest_object(label)
        if not reference.any():
            continue
        scores[case.case_id] = simulated_session(predictor, channels, reference, 0, seed + index).dice[0]
    report = {
        "mean_dice": float(np.mean(list(scores.values()))) if scores else None,
        "cases": scores,
        "prompt": "six jittered extreme points of the largest object",
        "seconds": round(time.monotonic() - started, 3),
    }
    write_json_atomic(Path(out_dir) / "metrics.json", report)
    return report


def _automatic_dice(automatic: Any, channels: list[Volume], label: np.ndarray) -> float:
    pred = np.asarray(automatic.predict(channels).labels.array) != 0
    return float(dice(pred, label != 0, labels=[1])[1])


def _load_automatic(model: Any, **options: Any):
    from voxseg.inference.predictor import Predictor
    from voxseg.models.resolve import resolve_model

    if isinstance(model, Predictor):
        return model
    if isinstance(model, (str, Path)) and (Path(model) / "plan.json").is_file():
        return resolve_model(model, **options)
    from voxseg.models import load_predictor

    return load_predictor(model, **options)


def evaluate_interactive(
    model: Any,
    data: str | Path | Dataset,
    out: str | Path,
    *,
    clicks: int = 5,
    cases: Sequence[str] | None = None,
    automatic: Any = None,
    seed: int = 0,
    tta: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Simulate a user on ``data``'s cases; write the curve (CSV, PNG, JSON) into ``out``.

    Parameters
    ----------
    model
        The interactive model (work folder, bundle, installed name or Predictor).
    data
        A dataset (nnU-Net v2 layout) with labels.
    out
        Output folder (created).
    clicks
        Corrective clicks after the six points (the curve has ``clicks + 1`` points, k = 0..N).
    cases
        Case ids (default: every training case).
    automatic
        An automatic model (work folder or bundle) scored on the same cases, for comparison.
    seed
        Case ``i`` is simulated with seed ``seed + i``.
    tta
        Mirror test-time augmentation (both models; off is about 8x faster).

    Returns
    -------
    dict
        ``{"k": [...], "mean_dice": [...], "automatic_dice": float | None, "cases": {...}}``.
    """
    if int(clicks) < 0:
        raise ConfigError(f"--clicks must be 0 or more, got {clicks}")
    dataset = data if isinstance(data, Dataset) else read_dataset(Path(data))
    chosen = _choose(dataset, cases)
    predictor = load_interactive_model(model, tta=tta)
    auto = _load_automatic(automatic, tta=tta) if automatic is not None else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    curves, per_case, auto_scores = [], {}, {}
    for index, case in enumerate(chosen):
        channels, label = _read_case(case)
        reference = largest_object(label)
        if not reference.any():
            log.warning("%s: empty label, skipped", case.case_id)
            continue
        curve = simulated_session(predictor, channels, reference, int(clicks), seed + index)
        curves.append(curve)
        per_case[case.case_id] = curve.to_json()
        if auto is not None:
            auto_scores[case.case_id] = _automatic_dice(auto, channels, label)
        if progress is not None:
            progress(index + 1, len(chosen))
    if not curves:
        raise ConfigError(f"{dataset.root}: no chosen case has a labelled object to point at")
    mean = mean_curve(curves)
    auto_mean = float(np.mean(list(auto_scores.values()))) if auto_scores else None
    result = {
        "k": list(range(int(clicks) + 1)),
        "mean_dice": [float(v) for v in mean],
        "automatic_dice": auto_mean,
        "automatic_cases": auto_scores,
        "cases": per_case,
        "refinement": "re-run with positive clicks as points + click constraints (no click channels)",
    }
    _write_csvs(out, result)
    plot_curve(result["mean_dice"], out / "curve.png", automatic=auto_mean)
    write_json_atomic(out / "interactive.json", result)
    return result


def _write_csvs(out: Path, result: dict[str, Any]) -> None:
    auto = result["automatic_dice"]
    with atomic_path(out / "curve.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["k", "mean_dice", "automatic_dice"])
        for k, v in zip(result["k"], result["mean_dice"], strict=True):
            writer.writerow([k, f"{v:.5f}", "" if auto is None else f"{auto:.5f}"])
    with atomic_path(out / "cases.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["case", *[f"dice_k{k}" for k in result["k"]], "automatic_dice"])
        for case_id, data in result["cases"].items():
            a = result["automatic_cases"].get(case_id)
            writer.writerow([case_id, *[f"{v:.5f}" for v in data["dice"]], "" if a is None else f"{a:.5f}"])


def plot_curve(
    values: Sequence[float], path: str | Path, *, automatic: float | None = None, size: tuple[int, int] = (480, 320)
) -> Path:
    """Mean Dice against interactions k (Pillow); the automatic model's Dice as a dashed line."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, right, top, bottom = 48, w - 16, 28, h - 36
    draw.rectangle((left, top, right, bottom), outline=(120, 120, 120))
    lo = min([*values, *([automatic] if automatic is not None else [])], default=0.0)
    lo = max(0.0, np.floor(lo * 10) / 10 - 0.1)

    def y(v: float) -> float:
        return bottom - (bottom - top) * (v - lo) / max(1.0 - lo, 1e-6)

    n = len(values)
    xs = [left + (right - left) * (i / max(n - 1, 1)) for i in range(n)]
    for t in np.linspace(lo, 1.0, 5):
        draw.line((left - 4, y(t), left, y(t)), fill=(120, 120, 120))
        draw.text((4, y(t) - 6), f"{t:.2f}", fill=(60, 60, 60), font=font)
    for i, xv in enumerate(xs):
        draw.text((xv - 3, bottom + 6), str(i), fill=(60, 60, 60), font=font)
    if automatic is not None:
        for x0 in range(left, right, 12):
            draw.line((x0, y(automatic), min(x0 + 6, right), y(automatic)), fill=(214, 39, 40), width=2)
        draw.text((left + 6, y(automatic) + 4), f"automatic {automatic:.3f}", fill=(214, 39, 40), font=font)
    pts = [(xv, y(v)) for xv, v in zip(xs, values, strict=True)]
    if len(pts) > 1:
        draw.line(pts, fill=(31, 119, 180), width=2)
    for p in pts:
        draw.ellipse((p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3), fill=(31, 119, 180))
    draw.text((left, 8), "mean Dice after k interactions (k=0: six points)", fill=(0, 0, 0), font=font)
    draw.text((right - 110, bottom + 20), "corrective clicks k", fill=(60, 60, 60), font=font)
    path = Path(path)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path
