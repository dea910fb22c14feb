"""Retrain voxseg's built-in models on its phantoms, reproducibly, and publish them in the package.

Each built-in model is made by voxseg's own pipeline from a phantom dataset (fixed training seed)::

    phantom (seed 0) -> plan (CPU budget + the seed task's settings) -> train every fold (time budget)
    -> cross-validation -> bundle (card: synthetic data, CV figures) -> evaluation on FRESH phantoms
    (seed 1000, never seen) -> final bundle in src/voxseg/bundle/models/, entry in
    src/voxseg/bundle/index.json, table in benchmarks/README.md ("Built-in models")

Usage::

    python tools/train_builtin_models.py --model mouse-lung-nodules@v1 [--minutes M] [--out DIR]
    python tools/train_builtin_models.py --model all
    python tools/train_builtin_models.py --list

Re-running with the same ``--out`` resumes: phantoms, the plan and finished folds are reused.
Training is bounded by time (``--minutes`` per fold), so the weights depend on the machine's speed;
the data, plans, splits and seeds do not. See docs/models.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/repackage_builtins.py
MODELS_DIR = REPO / "src" / "voxseg" / "bundle" / "models"
INDEX = REPO / "src" / "voxseg" / "bundle" / "index.json"
BENCH_README = REPO / "benchmarks" / "README.md"
TRAIN_SEED = 0
FRESH_SEED = 1000
LICENSE = "CC-BY-4.0"
INTENDED_USE = (
    "demonstration and tests of voxseg only: trained on synthetic phantoms, not on real data; "
    "not for research results or clinical decisions"
)
AUTHORS = ("voxseg developers",)
SECTION = "## Built-in models"
# Training settings of every recipe: AdamW (converges in fewer steps than SGD with momentum 0.99
# when a run has only a few hundred), short epochs, so a time budget ends close to its mark, and
# augmentation in 2 worker processes (results do not depend on num_workers: see docs/training.md).
TRAIN_OPTIONS: dict[str, Any] = {"optimizer": "adamw", "lr": 0.002, "iterations_per_epoch": 20, "num_workers": 2}

log = logging.getLogger("train_builtin_models")


@dataclass(frozen=True)
class Recipe:
    """How one built-in model is made (everything but the machine's speed is fixed here)."""

    name: str
    version: str
    phantom: str
    description: str
    recipe_note: str
    cases: int
    size: tuple[int, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    fresh_options: dict[str, Any] = field(default_factory=dict)
    configuration: str = "3d"
    overrides: tuple[str, ...] = ()
    folds: int = 2
    minutes: float = 4.0
    postprocessing: dict[str, Any] | None = None
    detection: str | None = None  # "instances150" (nodules >= 150 voxels) or "instances" (every object)
    fresh_cases: int = 8
    ship_folds: tuple[int, ...] | None = None  # folds in the bundle (default: all)
    train_folds: tuple[int, ...] | None = None  # folds to train (default: all, then crossval)
    work_key: str | None = None  # share the data and work folder of another recipe (same training)
    interactive: str | None = None  # "extreme-points": an interactive model, scored from simulated points
    clicks: int = 3  # interactive: corrective clicks simulated on fresh phantoms after the six points

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"

    @property
    def work_name(self) -> str:
        return self.work_key or self.key

    @property
    def zip_name(self) -> str:
        return f"{self.key}.zip"


NODULE_POST = {"schema_version": 1, "classes": {}, "final": [{"op": "instances", "min_size": 150}]}

RECIPES: dict[str, Recipe] = {
    r.key: r
    for r in (
        Recipe(
            name="mouse-lung-nodules",
            version="v1",
            phantom="mouse-lung-ct",
            description="Lung tumour nodules in mouse micro-CT (3D, instances >= 150 voxels); phantom-trained demo",
            recipe_note="3D DynUNet (CPU plan, 32^3 patches at 0.2 mm: the network sees the CT at half its "
            "resolution, the output is restored to the 0.1 mm grid), 16 phantom cases split in 2 folds of which "
            "only fold 0 was trained (CPU time): the 'cross-validation' figures are those of its 8 held-out "
            "cases. Postprocessing fixed by the seed task: connected components numbered by size, objects under "
            "150 voxels removed.",
            cases=16,
            overrides=("target_spacing=0.2,0.2,0.2", "patch_size=32,32,32"),
            minutes=15.0,
            postprocessing=NODULE_POST,
            detection="instances150",
            train_folds=(0,),
        ),
        Recipe(
            name="mouse-lung-nodules",
            version="v2",
            phantom="mouse-lung-ct",
            description="Lung tumour nodules in mouse micro-CT (3D, instances >= 150 voxels), ensemble of 2 folds; "
            "phantom-trained demo",
            recipe_note="The same training as v1 (one work folder); the bundle holds both cross-validation folds, "
            "whose probabilities are averaged (v1: fold 0 only). Postprocessing as v1.",
            cases=16,
            overrides=("target_spacing=0.2,0.2,0.2", "patch_size=32,32,32"),
            minutes=8.0,
            postprocessing=NODULE_POST,
            detection="instances150",
            work_key="mouse-lung-nodules-v1",
        ),
        Recipe(
            name="pet-mip-tumors",
            version="v1",
            phantom="pet-mip",
            description="Tumours in 2D whole-body FDG-PET maximum-intensity projections; phantom-trained demo",
            recipe_note="2D attention U-Net (MONAI AttentionUnet, channels 8-128, 1.25 M parameters) trained with "
            "Dice + Focal loss weighted 1 and 10, as in the seed model; 20 phantom cases (a quarter healthy "
            "controls), 2 folds trained for the cross-validation figures; the bundle holds fold 0 only (two "
            "float32 folds made a 9.3 MB zip, against the 'well under 10 MB' of a shipped model).",
            cases=20,
            configuration="2d",
            overrides=(
                "network.name=attention_unet",
                "network.filters=8,16,32,64,128,128",
                "loss=dice_focal",
                "loss.lambda_dice=1",
                "loss.lambda_other=10",
            ),
            minutes=4.0,
            ship_folds=(0,),
        ),
        Recipe(
            name="mouse-spinal-cord-gmwm",
            version="v1",
            phantom="mouse-spinal-cord",
            description="White and grey matter of the ex-vivo mouse spinal cord (T1w MRI, 3D multi-class), "
            "trained from 3 annotated slices per volume; phantom-trained demo",
            recipe_note="Direct sparse 3D training: each training volume has labels on 3 axial slices only "
            "(`annotated_slices=3`), every other voxel holds the ignore label 3, which no loss term counts. "
            "The cross-validation Dice is therefore measured on the annotated slices; the fresh-phantom Dice "
            "on fully labelled volumes.",
            cases=16,
            options={"annotated_slices": 3},
            fresh_options={"annotated_slices": 0},
            overrides=("patch_size=32,48,48",),
            minutes=3.0,
        ),
        Recipe(
            name="interactive-soft-tissue",
            version="v1",
            phantom="soft-tissue-mri",
            description="Soft-tissue tumour from six extreme points (3D MRI, interactive: points -> mask, "
            "clicks refine); phantom-trained demo",
            recipe_note="3D DynUNet planned with `--interactive extreme-points`: inputs MRI + the exponentialised "
            "geodesic map of the six points (lamb 0.5, scale 8), the image cropped to the points' box plus "
            "10 mm; trained with fresh simulated points every draw (1 mm inside the border, 2 mm jitter). "
            "Fold 0 of a 5-fold split trained; its held-out figures stand for the cross-validation. Dice is "
            "measured from six jittered simulated points (no clicks), and after corrective clicks.",
            cases=24,
            folds=5,
            minutes=12.0,
            interactive="extreme-points",
            train_folds=(0,),
        ),
        Recipe(
            name="brain-microbleeds",
            version="v1",
            phantom="brain-swi-cmb",
            description="Cerebral microbleeds on SWI-like MRI with a brain-mask input (3D); phantom-trained demo",
            recipe_note="3D DynUNet; inputs SWI + brain mask; SWI normalised by min-max with the maximum at the "
            "99th percentile inside the brain mask (`percentile_minmax`); fixed input shape 80 x 96 x 80 at "
            "1 mm; ensemble of 2 folds whose probabilities are averaged, then thresholded at 0.5.",
            cases=16,
            overrides=("normalization.0.scheme=percentile_minmax", "3d.fixed_shape=80,96,80", "patch_size=32,40,32"),
            minutes=4.0,
            detection="instances",
        ),
    )
}


# ---------------------------------------------------------------------------------------------- stages


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_data(recipe: Recipe, out: Path) -> Path:
    """The training phantoms (seed TRAIN_SEED), written once."""
    from voxseg.dataset.phantoms import make_phantom

    data = out / "data" / recipe.work_name
    if not (data / "dataset.json").is_file():
        log.info("%s: making %d %s phantom cases (seed %d)", recipe.key, recipe.cases, recipe.phantom, TRAIN_SEED)
        make_phantom(
            recipe.phantom, data, cases=recipe.cases, seed=TRAIN_SEED, size=recipe.size, options=recipe.options
        )
    return data


def train(recipe: Recipe, data: Path, work: Path, minutes: float, more_epochs: int = 0) -> dict[str, Any]:
    """Plan, train every fold not finished yet, cross-validate; returns the CV summary.

    ``more_epochs``: resume finished folds for that many more epochs (within ``minutes``).
    """
    from voxseg.experiment.crossval import crossval
    from voxseg.experiment.plan import plan_experiment
    from voxseg.experiment.train import train_fold
    from voxseg.workdir.layout import WorkDir

    plan_experiment(
        data,
        work,
        configurations=[recipe.configuration],
        seed=TRAIN_SEED,
        overrides=list(recipe.overrides),
        folds=recipe.folds,
        interactive=recipe.interactive,
    )
    wd = WorkDir(work)
    done = set(wd.trained_folds(recipe.configuration))
    for fold in recipe.train_folds or range(recipe.folds):
        if fold in done and more_epochs:
            epochs = json.loads((wd.run_dir(recipe.configuration, fold) / "run.json").read_text())["epoch"]
            log.info("%s: fold %d: %d more epochs (resume, at most %.1f min)", recipe.key, fold, more_epochs, minutes)
            options = {**TRAIN_OPTIONS, "epochs": epochs + more_epochs, "minutes": minutes}
            train_fold(work, fold, configuration=recipe.configuration, config_overrides=options, resume=True)
            continue
        if fold in done:
            continue
        started = (wd.checkpoint_dir(recipe.configuration, fold) / "state.json").is_file()
        log.info("%s: training fold %d for %.1f min%s", recipe.key, fold, minutes, " (resume)" if started else "")
        result = train_fold(
            work,
            fold,
            configuration=recipe.configuration,
            config_overrides={**TRAIN_OPTIONS, "minutes": minutes},
            resume=started,
        )
        log.info("%s: fold %d: %s", recipe.key, fold, {k: result.get(k) for k in ("status", "epochs", "val_dice")})
    from voxseg.io import write_json_atomic

    if recipe.train_folds is None:
        crossval(work, configuration=recipe.configuration)
    else:  # some folds only: their held-out figures stand for the cross-validation (see build)
        wd.crossval_dir(recipe.configuration).mkdir(parents=True, exist_ok=True)
        write_json_atomic(summary_path(recipe, work), {"folds_validated": list(recipe.train_folds)})
    if recipe.postprocessing is not None:
        write_json_atomic(wd.postprocessing_path(recipe.configuration), recipe.postprocessing)
    return json.loads(summary_path(recipe, work).read_text())


def summary_path(recipe: Recipe, work: Path) -> Path:
    """The cross-validation summary, which the export copies into ``bundle.json`` (``metrics``)."""
    return work / "crossval" / recipe.configuration / "summary.json"


def _foreground(labels: dict[str, int], ignore: int | None) -> list[int]:
    return sorted(v for v in labels.values() if v > 0 and v != ignore)


def _reference_instances(label: np.ndarray, kind: str) -> np.ndarray:
    from voxseg.postprocessing import instances

    return np.asarray(instances(label > 0, min_size=150 if kind == "instances150" else 0))


def _predicted_instances(sem: np.ndarray, kind: str, post: Any) -> np.ndarray:
    from voxseg.postprocessing import apply_postprocessing, instances

    if post is not None and post.makes_instances:
        return np.asarray(apply_postprocessing(sem, post))
    return np.asarray(instances(sem > 0, min_size=150 if kind == "instances150" else 0))


def _aggregate(per_case: list[dict[str, Any]], classes: list[int], detection: str | None) -> dict[str, Any]:
    by_class = {c: [p["dice"][str(c)] for p in per_case] for c in classes}
    means = [float(np.mean(v)) for v in by_class.values()]
    out: dict[str, Any] = {
        "dice": float(np.mean(means)),
        "dice_per_class": {str(c): float(np.mean(v)) for c, v in by_class.items()},
        "case_dice_std": float(np.std([p["mean_dice"] for p in per_case])),
        "cases": len(per_case),
    }
    if detection:
        tp, fp, fn = (sum(p[k] for p in per_case) for k in ("tp", "fp", "fn"))
        out.update(tp=tp, fp=fp, fn=fn, f1=2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
    return out


def score_case(pred: np.ndarray, ref: np.ndarray, classes: list[int], ignore: int | None, recipe: Recipe, post: Any):
    """Dice per class (and detection counts) of one semantic prediction against its reference."""
    from voxseg.evaluation import dice
    from voxseg.evaluation.detection import detection_metrics

    d = dice(pred, ref, labels=classes, ignore_label=ignore)
    row: dict[str, Any] = {"dice": {str(c): float(d[c]) for c in classes}}
    row["mean_dice"] = float(np.mean([d[c] for c in classes]))
    if recipe.detection:
        det = detection_metrics(
            _predicted_instances(pred, recipe.detection, post), _reference_instances(ref, recipe.detection)
        )
        row.update(tp=det.tp, fp=det.fp, fn=det.fn)
    return row


def held_out(recipe: Recipe, work: Path, data: Path) -> dict[str, Any] | None:
    """Dice and detection figures of the validation predictions (each case by the fold that did not see it)."""
    from voxseg.io import read_image
    from voxseg.planning import Plan
    from voxseg.postprocessing import PostprocessingSpec
    from voxseg.workdir.layout import WorkDir

    wd = WorkDir(work)
    if recipe.interactive:  # the fold's validation: Dice from six simulated points per held-out case
        dices = []
        for fold in recipe.train_folds or range(recipe.folds):
            metrics = json.loads((wd.run_dir(recipe.configuration, fold) / "validation" / "metrics.json").read_text())
            dices += [float(v) for v in metrics["cases"].values()]
        return _aggregate([{"dice": {"1": d}, "mean_dice": d} for d in dices], [1], None) if dices else None
    plan = Plan.load(wd.plan_path)
    post = PostprocessingSpec.from_json(recipe.postprocessing) if recipe.postprocessing else None
    classes = _foreground(plan.labels, plan.ignore_label)
    rows = []
    for fold in recipe.train_folds or range(recipe.folds):
        for pred_path in sorted(wd.validation_dir(recipe.configuration, fold).glob("*.nii.gz")):
            ref = read_image(data / "labelsTr" / pred_path.name).array
            rows.append(score_case(read_image(pred_path).array, ref, classes, plan.ignore_label, recipe, post))
    return _aggregate(rows, classes, recipe.detection) if rows else None  # detection keys only with detection


def evaluate_fresh(recipe: Recipe, bundle: Path, out: Path) -> dict[str, Any]:
    """The bundle on FRESH phantoms (seed FRESH_SEED, never seen in training), no TTA (as in CV)."""
    from voxseg.bundle import open_bundle
    from voxseg.dataset.phantoms import generate_case
    from voxseg.models import load_predictor
    from voxseg.postprocessing import PostprocessingSpec

    if recipe.interactive:
        return evaluate_fresh_interactive(recipe, bundle, out)
    manifest = open_bundle(bundle, cache=out / "cache").manifest
    predictor = load_predictor(
        bundle, cache=out / "cache", models=out / "models", offline=True, tta=False, postprocessing=PostprocessingSpec()
    )  # semantic labels, so the Dice is measured as in CV; instances are made in score_case
    classes = _foreground(manifest.plan.labels, manifest.plan.ignore_label)
    options = {**recipe.options, **recipe.fresh_options}
    rows, seconds = [], []
    for index in range(recipe.fresh_cases):
        case = generate_case(recipe.phantom, index, seed=FRESH_SEED, size=recipe.size, options=options)
        result = predictor.predict(case.images)
        seconds.append(result.seconds.get("total", 0.0))
        row = score_case(result.labels.array, case.label.array, classes, None, recipe, manifest.postprocessing)
        row["index"] = index
        rows.append(row)
        log.info("%s: fresh case %d: Dice %.3f", recipe.key, index, row["mean_dice"])
    agg = _aggregate(rows, classes, recipe.detection)
    agg.update(
        seed=FRESH_SEED,
        phantom=recipe.phantom,
        size=list(recipe.size) if recipe.size else None,
        options=options,
        detection=recipe.detection,
        per_case=rows,
        seconds_per_case=float(np.mean(seconds)),
        tta=False,
    )
    return agg


def evaluate_fresh_interactive(recipe: Recipe, bundle: Path, out: Path) -> dict[str, Any]:
    """An interactive bundle on fresh phantoms: six jittered simulated points, then corrective clicks."""
    from voxseg.dataset.phantoms import generate_case
    from voxseg.interactive.evaluate import largest_object, simulated_session
    from voxseg.interactive.pipeline import load_interactive_model
    from voxseg.models import load_predictor

    predictor = load_interactive_model(
        load_predictor(bundle, cache=out / "cache", models=out / "models", offline=True, tta=False)
    )
    rows, curves, seconds = [], [], []
    for index in range(recipe.fresh_cases):
        case = generate_case(recipe.phantom, index, seed=FRESH_SEED, size=recipe.size, options=recipe.options)
        started = time.perf_counter()
        curve = simulated_session(predictor, list(case.images), largest_object(case.label.array), recipe.clicks, index)
        seconds.append((time.perf_counter() - started) / (recipe.clicks + 1))
        curves.append(curve.dice)
        rows.append({"index": index, "dice": {"1": curve.dice[0]}, "mean_dice": curve.dice[0], "curve": curve.dice})
        log.info("%s: fresh case %d: Dice %s", recipe.key, index, [round(d, 3) for d in curve.dice])
    agg = _aggregate(rows, [1], None)
    agg.update(
        seed=FRESH_SEED,
        phantom=recipe.phantom,
        size=list(recipe.size) if recipe.size else None,
        options=recipe.options,
        detection=None,
        per_case=rows,
        dice_after_clicks=[float(np.mean(c)) for c in zip(*curves, strict=True)],
        prompt="six jittered extreme points (1 mm inside, 2 mm jitter), then corrective clicks",
        seconds_per_case=float(np.mean(seconds)),
        tta=False,
    )
    return agg


# ---------------------------------------------------------------------------------------------- card


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def training_record(recipe: Recipe, work: Path) -> dict[str, Any]:
    """Iterations and minutes each trained fold ran (from its run.json)."""
    from voxseg.workdir.layout import WorkDir

    wd, out = WorkDir(work), {}
    for fold in recipe.train_folds or range(recipe.folds):
        run = json.loads((wd.run_dir(recipe.configuration, fold) / "run.json").read_text())
        history = run.get("history", [])
        per_epoch = run.get("config", {}).get("iterations_per_epoch", TRAIN_OPTIONS["iterations_per_epoch"])
        out[str(fold)] = {
            "epochs": len(history),
            "iterations": len(history) * int(per_epoch),
            "minutes": round(sum(h.get("seconds", 0.0) for h in history) / 60, 1),
        }
    return out


def _training_note(summary: dict[str, Any]) -> str:
    record = summary.get("training", {})
    if not record:
        return "time-bounded training"
    parts = [f"fold {f}: {r['iterations']} iterations in {r['minutes']:g} min" for f, r in record.items()]
    return "training " + ", ".join(parts)


def card_notes(recipe: Recipe, summary: dict[str, Any], cv_det: dict[str, Any] | None, fresh: dict[str, Any]) -> str:
    """The model card's notes: what the model is, and honestly what it was trained and tested on."""
    cv = summary.get("mean_dice")
    lines = [
        "**Trained on synthetic phantoms, not on real data.** This is a demonstration model made by "
        f"voxseg's own pipeline from the `{recipe.phantom}` phantom (docs/phantoms.md). It is not a clinical "
        "or research-grade model: do not use it on real images expecting meaningful results.",
        "",
        f"Recipe: {recipe.recipe_note}",
        "",
        f"Training data: {recipe.cases} cases of `voxseg dataset phantom {recipe.phantom}` with seed {TRAIN_SEED}"
        + (f", options {recipe.options}" if recipe.options else "")
        + (f", size {recipe.size}" if recipe.size else "")
        + (
            f"; {recipe.folds}-fold cross-validation"
            if recipe.train_folds is None
            else f"; fold(s) {list(recipe.train_folds)} of a {recipe.folds}-fold split trained (held-out figures)"
        )
        + f"; {_training_note(summary)} on a shared 2-core CPU.",
        "",
        "| figure | cross-validation | fresh phantoms |",
        "|---|---|---|",
        f"| mean Dice (no postprocessing, no TTA) | {_fmt(cv)} | {_fmt(fresh['dice'])} |",
    ]
    if recipe.interactive:
        lines[-1] = f"| mean Dice from six simulated points (no TTA) | {_fmt(cv)} | {_fmt(fresh['dice'])} |"
        curve = ", ".join(f"{d:.3f}" for d in fresh.get("dice_after_clicks", [])[1:])
        lines.append(f"| mean Dice after 1, 2, 3 corrective clicks | - | {curve} |")
    if recipe.detection:
        what = "nodules >= 150 voxels" if recipe.detection == "instances150" else "objects"
        lines.append(
            f"| detection F1 ({what}, IoU >= 0.1) | {_fmt(cv_det['f1'] if cv_det else None)} | {_fmt(fresh['f1'])} |"
        )
    lines += [
        "",
        f"Fresh phantoms: {fresh['cases']} cases of seed {FRESH_SEED} (never seen in training)"
        + (f", options {recipe.fresh_options}" if recipe.fresh_options else "")
        + f"; per-case Dice std {fresh['case_dice_std']:.3f}. Retrain with "
        f"`python tools/train_builtin_models.py --model {recipe.key}` (see docs/models.md).",
    ]
    return "\n".join(lines)


def export(recipe: Recipe, work: Path, out: Path, notes: str | None) -> Path:
    from voxseg.bundle import export_bundle

    return export_bundle(
        work,
        out,
        name=recipe.name,
        version=recipe.version,
        configuration=recipe.configuration,
        folds=recipe.ship_folds,
        description=recipe.description,
        license=LICENSE,
        intended_use=INTENDED_USE,
        authors=AUTHORS,
        card_notes=notes,
    )


def update_index(recipe: Recipe, zip_path: Path) -> None:
    from voxseg.io import write_json_atomic

    index = json.loads(INDEX.read_text()) if INDEX.is_file() else {"schema_version": 1, "models": {}}
    model = index["models"].setdefault(recipe.name, {"description": "", "versions": {}})
    model["description"] = recipe.description.split(";")[0]
    model["versions"][recipe.version] = {
        "urls": [f"models/{zip_path.name}"],
        "sha256": _sha256(zip_path),
        "size": zip_path.stat().st_size,
        "description": recipe.description,
        "task": "interactive" if recipe.interactive else ("instances" if recipe.postprocessing else "semantic"),
        "license": LICENSE,
        "intended_use": INTENDED_USE,
    }
    model["versions"] = dict(sorted(model["versions"].items()))
    index["models"] = dict(sorted(index["models"].items()))
    write_json_atomic(INDEX, index)


def benchmark_table() -> str:
    """The "Built-in models" section of benchmarks/README.md, from the shipped bundles' metrics."""
    from voxseg.bundle import open_bundle

    rows = []
    for recipe in RECIPES.values():
        path = MODELS_DIR / recipe.zip_name
        if not path.is_file():
            continue
        metrics = open_bundle(path).manifest.metrics
        trained = len(recipe.train_folds or range(recipe.folds))
        fresh, det = metrics.get("fresh_phantoms", {}), metrics.get("cv_detection") or {}
        rows.append(
            f"| {recipe.key} | {recipe.phantom} | {trained} of {recipe.folds} | {_fmt(metrics.get('mean_dice'))} "
            f"| {_fmt(fresh.get('dice'))} | {_fmt(fresh.get('case_dice_std'))} | {_fmt(det.get('f1'))} "
            f"| {_fmt(fresh.get('f1'))} | {fresh.get('seconds_per_case', 0):.1f} | {path.stat().st_size / 1e6:.2f} |"
        )
    return "\n".join(
        [
            SECTION,
            "",
            "Made by `python tools/train_builtin_models.py --model all` (phantoms of seed 0, CPU plans, a few minutes",
            f"of training per fold on a shared 2-core CPU). *Fresh* = {RECIPES['mouse-lung-nodules-v1'].fresh_cases} "
            f"phantom cases of seed {FRESH_SEED}, never seen in training, predicted by the shipped bundle without TTA",
            "(as in cross-validation). Dice: mean over foreground classes of the per-class mean over cases, before",
            "the instance postprocessing. Detection F1: objects matched at IoU >= 0.1 (nodules: objects >= 150",
            "voxels, after the bundle's postprocessing). Quality bar: fresh Dice >= CV Dice - 0.05.",
            "",
            "| model | phantom | folds trained | CV Dice | fresh Dice | fresh case std | CV det. F1 | fresh det. F1 "
            "| s / case | zip MB |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


def update_benchmarks() -> None:
    from voxseg.io import atomic_path

    text = BENCH_README.read_text() if BENCH_README.is_file() else "# Benchmarks\n\n"
    section = benchmark_table()
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    with atomic_path(BENCH_README) as tmp:
        Path(tmp).write_text(text)


# ---------------------------------------------------------------------------------------------- main


def build(
    recipe: Recipe, out: Path, minutes: float | None, *, publish: bool = True, more_epochs: int = 0
) -> dict[str, Any]:
    """Make one built-in model end to end; returns its figures."""
    t0 = time.perf_counter()
    data = make_data(recipe, out)
    work = out / "work" / recipe.work_name
    summary = train(recipe, data, work, minutes if minutes is not None else recipe.minutes, more_epochs)
    scores = held_out(recipe, work, data)
    cv_det = scores if recipe.detection else None
    if recipe.train_folds is not None and scores:
        summary["mean_dice"] = scores["dice"]  # held-out Dice of the trained folds
    draft = export(recipe, work, out / "bundles" / recipe.zip_name, None)
    fresh = evaluate_fresh(recipe, draft, out)
    from voxseg.io import write_json_atomic

    summary.update(held_out=scores, cv_detection=cv_det, fresh_phantoms=fresh, training=training_record(recipe, work))
    write_json_atomic(summary_path(recipe, work), summary)
    target = MODELS_DIR if publish else out / "final"
    target.mkdir(parents=True, exist_ok=True)
    final = export(recipe, work, target / recipe.zip_name, card_notes(recipe, summary, cv_det, fresh))
    if publish:
        from repackage_builtins import repackage  # ONNX networks + the golden test of a fresh phantom case

        repackage(final)
        update_index(recipe, final)
        update_benchmarks()
    figures = {
        "model": recipe.key,
        "cv_dice": summary.get("mean_dice"),
        "fresh_dice": fresh["dice"],
        "cv_f1": cv_det and cv_det["f1"],
        "fresh_f1": fresh.get("f1"),
        "zip_bytes": final.stat().st_size,
        "minutes": round((time.perf_counter() - t0) / 60, 1),
    }
    log.info("%s: done %s", recipe.key, figures)
    shutil.rmtree(out / "models", ignore_errors=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all", help="NAME[@VERSION] / NAME-VERSION, or 'all' (default)")
    parser.add_argument("--minutes", type=float, default=None, help="training minutes per fold (default: recipe's)")
    parser.add_argument("--out", type=Path, default=Path("builtin-work"), help="work folder (default builtin-work)")
    parser.add_argument("--list", action="store_true", help="list the recipes and exit")
    parser.add_argument(
        "--more-epochs", type=int, default=0, help="resume finished folds for N more epochs (within --minutes)"
    )
    parser.add_argument(
        "--no-publish", action="store_true", help="write the bundles to OUT/final; leave the package and docs alone"
    )
    parser.add_argument("--tables-only", action="store_true", help="only rewrite the benchmarks/README.md section")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.list:
        for r in RECIPES.values():
            print(
                f"{r.key:28s} {r.phantom:18s} {r.configuration}  {r.folds} folds x {r.minutes:g} min  {r.description}"
            )
        return 0
    if args.tables_only:
        update_benchmarks()
        return 0
    key = args.model.replace("@", "-")
    chosen = list(RECIPES.values()) if key == "all" else [r for k, r in RECIPES.items() if key in (k, r.name)]
    if not chosen:
        parser.error(f"unknown model {args.model!r}; choose from {', '.join(RECIPES)} or all")
    results = [
        build(r, args.out.resolve(), args.minutes, publish=not args.no_publish, more_epochs=args.more_epochs)
        for r in chosen
    ]
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
