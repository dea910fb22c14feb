"""voxseg vs a fixed MONAI U-Net on real images that ship in packages (issue 20): one command, one table.

    python benchmarks/real_data.py [--tasks brain,aal116,aal20,headct,nuclei,macaque20] [--minutes 15] [--cases 20]
                                   [--test-cases 5] [--methods voxseg,monai] [--no-postprocessing]
                                   [--out DIR] [--cache DIR] [--no-pip]

Per task (benchmarks/real/tasks.py; docs/real-data.md says how cases are made and what the labels are):

1. the dataset is built once from the package's images into the cache (``VOXSEG_CACHE``/real_data);
2. voxseg: ``voxseg plan`` (folds = min(5, cases); the planner chooses the configuration, which the
   table shows in brackets), ``voxseg train --fold 0 --minutes M``, ``voxseg crossval --folds 0``
   (postprocessing chosen on fold 0's validation cases, as nnU-Net chooses it on its cross-validation;
   the table shows it as ``post:``; ``--no-postprocessing`` leaves it out),
   ``voxseg predict --folds 0 --no-tta`` on imagesTs, ``voxseg evaluate`` against labelsTs, each a
   subprocess;
3. MONAI: a fixed UNet (benchmarks/real/monai_baseline.py) trained in this process on the same fold-0
   training cases for the same wall-clock minutes, predicted without TTA, scored by the same
   ``evaluate_folders``.

Dice and HD95 are means over the foreground classes of the per-class means over test cases (HD95
leaves out a class's cases where one side is empty). ``nuclei`` is an instance dataset (one id per
nucleus): voxseg trains its border target and splits touching nuclei (``split_instances``); MONAI
trains the foreground and takes connected parts as nuclei. Both are scored by the same evaluation:
object F1 at IoU 0.5 (pooled over test tiles) and the mean IoU of matched nuclei.

A task whose package is missing is skipped with the command that installs it. Nothing is downloaded
at run time except, once, the stardist wheel by ``pip download --no-deps stardist`` (``--no-pip``
forbids it).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real import machine, tasks
from real.sources import MissingSource

from voxseg.dataset import make_splits, read_dataset
from voxseg.evaluation.folders import evaluate_folders
from voxseg.io.safe_json import read_json
from voxseg.settings import resolve_paths

log = logging.getLogger("real_data")
VOXSEG = [sys.executable, "-m", "voxseg"]


class StepFailed(Exception):
    pass


def _run(cmd: list[str], log_file: Path) -> float:
    t0 = time.perf_counter()
    with log_file.open("a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        lines = [ln for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()]
        raise StepFailed(f"{cmd[3]} exit {done.returncode}: {lines[-1].strip() if lines else '?'}")
    return time.perf_counter() - t0


def _summary(eval_dir: Path) -> tuple[float | None, float | None]:
    report = read_json(eval_dir / "evaluation.json")
    fg = report["summary"]["foreground_mean"]
    return fg.get("dice"), fg.get("hd95")


def _instance_scores(eval_dir: Path) -> dict[str, float]:
    """Object matching of ``voxseg evaluate`` (the dataset says "instances": true)."""
    found = read_json(eval_dir / "evaluation.json")["instances"]
    return {**found, "matched_iou": found["mean_matched_iou"] or 0.0}


def _post_text(model: Path) -> str:
    """The postprocessing ``voxseg crossval`` chose, e.g. ``1: keep_largest``, ``keep_largest in 17
    classes; fill_holes in 1`` (over 3 classes), ``split_instances(min_size=15)``, or ``none``."""
    found = sorted(model.glob("crossval/*/postprocessing.json"))
    spec = read_json(found[0]) if found else {}
    chains = {c: "+".join(s["op"] for s in steps) for c, steps in spec.get("classes", {}).items() if steps}
    if len(chains) > 3:
        parts = [f"{chain} in {n} class{'es' if n != 1 else ''}" for chain, n in Counter(chains.values()).most_common()]
    else:
        parts = [f"{c}: {chain}" for c, chain in chains.items()]
    for step in spec.get("final", []):
        params = ", ".join(f"{k}={v}" for k, v in step.items() if k != "op")
        parts.append(f"{step['op']}({params})" if params else step["op"])
    return "; ".join(parts) or "none"


def run_voxseg(
    data: Path, work: Path, *, minutes: float, folds: int, settings: list[str], postprocess: bool = True
) -> dict:
    """plan (the planner chooses the configuration, as for a user) -> train fold 0 -> crossval of fold 0
    (postprocessing) -> predict -> evaluate."""
    logs = work / "voxseg.log"
    work.mkdir(parents=True, exist_ok=True)
    model, pred, ev = work / "model", work / "pred", work / "eval"
    seconds = _run([*VOXSEG, "plan", str(data), "-o", str(model), "--folds", str(folds)], logs)
    extra = [a for kv in settings for a in ("--set", kv)]
    train_s = _run([*VOXSEG, "train", str(model), "--fold", "0", "--minutes", str(minutes), *extra], logs)
    seconds += train_s
    post = "none"
    if postprocess:  # as nnU-Net: postprocessing chosen on held-out cases (here fold 0's validation)
        try:
            seconds += _run([*VOXSEG, "crossval", str(model), "--folds", "0"], logs)
            post = _post_text(model)
        except StepFailed as exc:
            post = f"none ({exc})"
    predict = [*VOXSEG, "predict", "-i", str(data / "imagesTs"), "-o", str(pred), "-m", str(model)]
    seconds += _run([*predict, "--folds", "0", "--no-tta"], logs)
    seconds += _run([*VOXSEG, "evaluate", str(pred), str(data / "labelsTs"), "-o", str(ev)], logs)
    split = read_json(model / "splits.json")["folds"][0]["train"]
    trained = sorted(p.name for p in (model / "runs").iterdir() if p.is_dir())
    return {
        "pred": pred,
        "eval": ev,
        "minutes": seconds / 60,
        "train_minutes": train_s / 60,
        "train_cases": split,
        "configuration": ",".join(trained),
        "postprocessing": post,
    }


def run_monai(data: Path, work: Path, *, minutes: float, train_cases: list[str]) -> dict:
    from real.monai_baseline import run_baseline

    t0 = time.perf_counter()
    pred, ev = work / "pred", work / "eval"
    info = run_baseline(data, pred, minutes=minutes, train_cases=train_cases)
    evaluate_folders(pred, data / "labelsTs", ev)
    total = (time.perf_counter() - t0) / 60
    return {"pred": pred, "eval": ev, "minutes": total, "train_minutes": info["train_s"] / 60, **info}


def run_task(name: str, args: argparse.Namespace, cache: Path, out: Path) -> dict:
    task = tasks.TASKS[name]
    row: dict = {"task": name}
    try:
        data = tasks.build(name, cache=cache, cases=args.cases, test_cases=args.test_cases, allow_pip=args.pip)
    except MissingSource as exc:
        row["skipped"] = str(exc)
        print(f"skip {name}: {exc}", flush=True)
        return row
    spec = read_json(data / "dataset.json")
    row["classes"] = len(spec["labels"])
    row["train"] = len(list((data / "labelsTr").glob("*.nii.gz")))
    row["test"] = len(list((data / "labelsTs").glob("*.nii.gz")))
    folds = max(2, min(5, args.cases))
    # MONAI trains on voxseg's fold-0 training cases; alone, on the ones `voxseg plan` (seed 0) would pick
    train_cases = make_splits(read_dataset(data).case_ids, k=folds, seed=0)[0].train
    for method in args.methods.split(","):
        try:
            if method == "voxseg":
                work = out / name / "voxseg"
                res = run_voxseg(
                    data,
                    work,
                    minutes=args.minutes,
                    folds=folds,
                    settings=args.voxseg_set,
                    postprocess=args.postprocess,
                )
                train_cases = res["train_cases"]
            else:
                res = run_monai(data, out / name / "monai", minutes=args.minutes, train_cases=train_cases)
            row[method] = {"dice_hd95": _summary(res["eval"]), "minutes": res["minutes"]}
            row[method]["train_minutes"] = res["train_minutes"]
            for key in ("configuration", "postprocessing"):
                if key in res:
                    row[method][key] = res[key]
            if task.instances:
                row[method]["instances"] = _instance_scores(res["eval"])
        except (StepFailed, MemoryError, RuntimeError) as exc:
            row[method] = {"failed": str(exc)[:200]}
            print(f"{name} {method} failed: {exc}", flush=True)
    return row


def _fmt(v: float | None, digits: int) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _cells(res: dict | None, instances_task: bool) -> list[str]:
    if not res or "failed" in res:
        return ["failed", "", ""] if res else ["", "", ""]
    dice, hd = res["dice_hd95"]
    if instances_task:
        inst = res["instances"]
        dice_cell = f"{_fmt(dice, 3)} (F1 {inst['f1']:.2f}, IoU {inst['matched_iou']:.2f})"
    else:
        dice_cell = _fmt(dice, 3)
    if res.get("configuration"):
        dice_cell += f" [{res['configuration']}]"
    if res.get("postprocessing") not in (None, "none"):
        dice_cell += f" (post: {res['postprocessing']})"
    return [dice_cell, _fmt(hd, 1), f"{res['train_minutes']:.1f}/{res['minutes']:.1f}"]


def table(rows: list[dict]) -> str:
    minutes = "min train/all"
    head = ["task", "classes", "train/test", "voxseg Dice", "HD95", minutes, "MONAI Dice", "HD95", minutes]
    lines = [head]
    for r in rows:
        if "skipped" in r:
            lines.append([r["task"], "skipped", "", "", "", "", "", "", ""])
            continue
        inst = tasks.TASKS[r["task"]].instances
        cls = str(r["classes"] - 1)
        lines.append([r["task"], cls, f"{r['train']}/{r['test']}", *_cells(r.get("voxseg"), inst),
                      *_cells(r.get("monai"), inst)])  # fmt: skip
    widths = [max(len(line[k]) for line in lines) for k in range(len(head))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default=",".join(tasks.TASKS), help="comma-separated: " + ", ".join(tasks.TASKS))
    p.add_argument("--minutes", type=float, default=15.0, help="training budget per task and method (wall clock)")
    p.add_argument("--cases", type=int, default=20, help="training cases per task (nuclei: variants of one half)")
    p.add_argument("--test-cases", type=int, default=5, help="test cases per task (nuclei: tiles of the other half)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: CACHE/runs/TIMESTAMP)")
    p.add_argument("--cache", type=Path, default=None, help="data cache (default: the voxseg cache/real_data)")
    p.add_argument("--voxseg-set", action="append", default=[], metavar="KEY=VALUE",
                   help="passed to 'voxseg train --set' (e.g. iterations_per_epoch=10 for a smoke run)")  # fmt: skip
    p.add_argument("--methods", default="voxseg,monai", help="comma-separated subset of voxseg,monai")
    p.add_argument("--no-postprocessing", dest="postprocess", action="store_false",
                   help="skip 'voxseg crossval --folds 0' (postprocessing chosen on fold 0's validation)")  # fmt: skip
    p.add_argument("--no-pip", dest="pip", action="store_false", help="never 'pip download' the stardist wheel")
    args = p.parse_args(argv)
    unknown = [t for t in args.tasks.split(",") if t not in tasks.TASKS]
    if unknown:
        p.error(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(tasks.TASKS)}")
    if not set(args.methods.split(",")) <= {"voxseg", "monai"} or not args.methods:
        p.error("--methods takes voxseg, monai or voxseg,monai")
    if args.cases < 2 or args.test_cases < 1 or args.minutes <= 0:
        p.error("--cases must be >= 2, --test-cases >= 1 and --minutes > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = parse(argv)
    cache = args.cache or resolve_paths().cache / "real_data"
    out = args.out or cache / "runs" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    head = f"machine: {machine.describe()}\nload average at start: {machine.load()}"
    print(head, flush=True)
    setting = f"budget {args.minutes:g} min per task and method; {args.cases} training cases, {args.test_cases} test"
    if args.voxseg_set:
        setting += f"; voxseg train --set {' '.join(args.voxseg_set)}"
    rows: list[dict] = []
    for name in args.tasks.split(","):
        rows.append(run_task(name, args, cache, out))
        text = f"{setting}\n{table(rows)}\nload average at end: {machine.load()}"
        (out / "results.json").write_text(json.dumps({"machine": head, "rows": rows}, indent=1, default=str))
        (out / "table.md").write_text(f"{head}\n{text}\n")  # after every task: a partial run still tells
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
