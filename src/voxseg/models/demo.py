"""``voxseg demo``: a phantom mouse CT segmented by the built-in lung-nodule model, in under a minute.

The demo makes one synthetic mouse thorax micro-CT (the ``mouse-lung-ct`` phantom, a seed the
model never saw), installs the built-in ``mouse-lung-nodules`` model from the package's own index
(offline: the bundle ships inside the package) on first use, segments the nodules, numbers them
(objects under 150 voxels dropped), and writes:

- ``demo_ct.nii.gz``: the phantom CT (the input),
- ``demo_truth.nii.gz``: the phantom's true nodule mask (for comparison),
- ``demo_nodules.nii.gz``: the instance mask (id 1 = largest nodule),
- ``demo_objects.csv``: one row per nodule (volume, centroid, bounding box, intensity, sphericity),
- ``demo_overview.png``: slices with the found, missed and wrongly found nodules, and a small table.

The model was trained on phantoms only (see ``docs/models.md``): the demo shows the workflow, not
a model for real scans.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from voxseg.io import Volume, write_image
from voxseg.io.atomic import atomic_path

if TYPE_CHECKING:
    from voxseg.postprocessing import ObjectRow

__all__ = ["DEFAULT_SEED", "DEMO_MODEL", "DEMO_PHANTOM", "DemoResult", "demo_overview", "run_demo"]

log = logging.getLogger(__name__)

DEMO_MODEL = "mouse-lung-nodules@v1"
DEMO_PHANTOM = "mouse-lung-ct"
DEFAULT_SEED = 2029  # training used seed 0, the evaluation seed 1000; this case has 5 nodules >= 150 voxels
MIN_SIZE = 150  # voxels: the nodule model's postprocessing

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` wrote and found.

    Attributes
    ----------
    files
        ``{"image", "truth", "instances", "table", "overview"}`` -> path.
    model
        The model reference (``mouse-lung-nodules@v1``).
    found
        Nodules found (instances of at least 150 voxels).
    truth
        Nodules of the phantom truth of at least 150 voxels (``truth_small``: the smaller ones,
        which the model's postprocessing drops by design).
    matched
        Found nodules matched to a true one (IoU >= 0.1).
    dice
        Dice of the instance mask (as foreground) against the true nodules of at least 150 voxels.
    seconds
        ``{"phantom", "model", "predict", "write", "total"}``.
    """

    files: dict[str, Path]
    model: str
    found: int
    truth: int
    truth_small: int
    matched: int
    dice: float
    seconds: dict[str, float] = field(default_factory=dict)


def _phantom(seed: int):
    from voxseg.dataset.phantoms import generate_case

    return generate_case(DEMO_PHANTOM, 0, seed=seed)


def run_demo(
    out: str | Path = "voxseg-demo",
    *,
    seed: int = DEFAULT_SEED,
    model: str = DEMO_MODEL,
    models: str | Path | None = None,
    cache: str | Path | None = None,
    progress: Progress | None = None,
) -> DemoResult:
    """Make a phantom mouse CT, segment its lung nodules with the built-in model, write the results.

    Parameters
    ----------
    out
        Output folder (created; files in it are replaced).
    seed
        Phantom seed (the built-in model was trained on seed 0 and evaluated on seed 1000).
    model
        Model name, ``NAME@VERSION`` or a bundle path (default: the built-in nodule model).
    models, cache
        Model and cache folders (default: voxseg's user folders; see ``voxseg info``).
    progress
        Called with a short message before each step.

    Returns
    -------
    DemoResult
        Paths written and a summary (nodules found vs the phantom truth, Dice).
    """
    from voxseg.evaluation import dice
    from voxseg.evaluation.detection import detection_metrics
    from voxseg.postprocessing import instances, object_table, write_object_table

    say = progress or (lambda _msg: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t0 = tick = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        seconds[name] = round(now - tick, 2)
        tick = now

    say(f"making a phantom mouse CT (seed {seed})")
    case = _phantom(seed)
    image, truth = case.images[0], case.label
    lap("phantom")
    say(f"loading {model} (installed from the built-in index on first use)")
    predictor = _demo_model(model, models, cache)
    lap("model")
    say("segmenting the nodules")
    pred = predictor.predict([image]).labels
    if not predictor.postprocessing.makes_instances:
        pred = instances(pred, min_size=MIN_SIZE)
    lap("predict")
    say("writing the results")
    truth_inst = instances(truth, min_size=MIN_SIZE)
    truth_all = instances(truth)
    det = detection_metrics(pred, truth_inst)
    d = dice(pred.array > 0, truth_inst.array > 0)[1]
    rows = object_table(pred, image=image)
    files = {
        "image": write_image(image, out / "demo_ct.nii.gz"),
        "truth": write_image(truth, out / "demo_truth.nii.gz"),
        "instances": write_image(pred, out / "demo_nodules.nii.gz"),
        "table": write_object_table(rows, out / "demo_objects.csv"),
    }
    n_truth = int(truth_inst.array.max())
    summary = (
        f"{getattr(predictor, 'model_id', model)}: {len(rows)} nodules found, phantom truth {n_truth} "
        f"(>= {MIN_SIZE} voxels), {det.tp} matched, Dice {d:.2f}"
    )
    files["overview"] = demo_overview(image, pred, truth_inst, rows, out / "demo_overview.png", title=summary)
    lap("write")
    seconds["total"] = round(time.perf_counter() - t0, 2)
    return DemoResult(
        files=files,
        model=str(getattr(predictor, "model_id", model)),
        found=len(rows),
        truth=n_truth,
        truth_small=int(truth_all.array.max()) - n_truth,
        matched=det.tp,
        dice=float(d),
        seconds=seconds,
    )


def _demo_model(model: str | Path, models, cache):
    """The demo's model, offline (a built-in installs from the package itself)."""
    from voxseg.errors import BundleError
    from voxseg.models import load_predictor

    try:
        return load_predictor(model, models=models, cache=cache, offline=True, tta=False)
    except BundleError as exc:
        raise BundleError(
            f"{exc}; the demo needs the built-in model {model}: make it with "
            f"`python tools/train_builtin_models.py --model {model}` or pass --model BUNDLE.zip"
        ) from None


def _table_image(rows: Sequence[ObjectRow], width: int, max_rows: int = 8) -> Image.Image:
    font = ImageFont.load_default()
    header = f"{'id':>3} {'voxels':>7} {'volume mm3':>11} {'z':>6} {'y':>6} {'x':>6} {'sphericity':>10}"
    lines = [header]
    for r in rows[:max_rows]:
        d = r.as_dict()
        lines.append(
            f"{d['id']:>3} {d['voxels']:>7} {float(d['volume_mm3']):>11.3f} {float(d['centroid_z']):>6.1f} "
            f"{float(d['centroid_y']):>6.1f} {float(d['centroid_x']):>6.1f} {float(d['sphericity']):>10.2f}"
        )
    if len(rows) > max_rows:
        lines.append(f"... {len(rows) - max_rows} more in demo_objects.csv")
    if not rows:
        lines.append("no nodule found")
    line_h = 13
    img = Image.new("RGB", (max(width, 8 * len(header)), line_h * len(lines) + 8), (20, 20, 20))
    draw = ImageDraw.Draw(img)
    for k, text in enumerate(lines):
        draw.text((6, 4 + k * line_h), text, fill=(235, 235, 235) if k else (160, 200, 255), font=font)
    return img


def demo_overview(
    image: Volume, pred: Volume, truth: Volume, rows: Sequence[ObjectRow], path: str | Path, *, title: str = ""
) -> Path:
    """Write a PNG overview atomically: orthogonal slices through the largest nodule area with
    contours (red: predicted and true, green: true but missed, yellow: predicted but not true),
    then a table of the largest nodules."""
    from voxseg.io.pictures import render_overview

    p, t = pred.array > 0, truth.array > 0
    overlay = np.zeros(p.shape, np.uint8)
    overlay[p & t] = 1
    overlay[t & ~p] = 2
    overlay[p & ~t] = 3
    label = Volume(overlay, spacing=image.spacing, origin=image.origin, direction=image.direction)
    names = {1: "found", 2: "missed", 3: "not in truth"}
    top = render_overview([image], label, title=title, label_names=names)
    table = _table_image(rows, top.width)
    canvas = Image.new("RGB", (max(top.width, table.width), top.height + table.height), (20, 20, 20))
    canvas.paste(top, (0, 0))
    canvas.paste(table, (0, top.height))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)
