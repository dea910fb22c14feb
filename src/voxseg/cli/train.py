"""``voxseg train`` and ``voxseg crossval``: thin shells over :mod:`voxseg.experiment`."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from voxseg.cli._common import console, err_console, parse_key_values
from voxseg.errors import ConfigError
from voxseg.workdir.quality import crossval_warnings, fold_records, fold_warnings, next_step, partial_scope


def _parse_folds(text: str) -> str | list[int]:
    if text.strip().lower() == "all":
        return "all"
    try:
        folds = [int(p) for p in text.replace(" ", "").split(",") if p]
    except ValueError:
        raise ConfigError(f"--fold {text!r}: expected a fold number, a list like 0,2, or 'all'") from None
    if not folds or any(f < 0 for f in folds):
        raise ConfigError(f"--fold {text!r}: expected a fold number, a list like 0,2, or 'all'")
    return folds


@contextlib.contextmanager
def _plain_epoch_lines() -> Iterator[None]:
    """Not on a terminal (output redirected to a file): one plain line per epoch on stderr, flushed."""
    logger = logging.getLogger("voxseg.training.progress")
    handler = logging.StreamHandler(sys.stderr)  # flushes after every line
    handler.setFormatter(logging.Formatter("%(message)s"))
    old = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old[0])
        logger.propagate = old[1]


@contextlib.contextmanager
def _train_progress() -> Iterator[Callable[[Any], None] | None]:
    """A rich bar per fold on a terminal (epoch, loss, seconds per iteration, elapsed and ETA);
    otherwise plain epoch lines and no bar."""
    if not err_console.is_terminal:
        with _plain_epoch_lines():
            yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[spi]:.2f} s/it"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as bar:
        tasks = []  # the bar appears with the first step: a refused run shows none

        def update(info: Any) -> None:
            if not tasks:
                tasks.append(bar.add_task("training", total=None, epoch=0, epochs="?", loss=0.0, spi=0.0))
            bar.update(
                tasks[0],
                completed=info.epoch * info.iterations + info.iteration,
                total=info.epochs * info.iterations,
                epoch=info.epoch + 1,
                epochs=info.epochs,
                loss=info.loss,
                spi=info.seconds_per_iteration,
            )

        yield update


def _fold_table(summaries: list[dict[str, Any]], records: dict[int, dict[str, Any]]) -> Table:
    """The folds' table, read from their run records (``run.json``: what crossval and export read)."""
    table = Table(title="training")
    for col in ("fold", "status", "epochs", "loss", "s/it", "val Dice", "minutes"):
        table.add_column(col, justify="right" if col != "status" else "left")
    for s in summaries:
        rec = records.get(int(s["fold"]), {})
        hist = rec.get("history") or []
        table.add_row(
            str(s["fold"]),
            str(rec.get("status", s["status"])),
            str(rec.get("epoch", s["epochs"])),
            _num(hist[-1].get("loss") if hist else None),
            _num(s["seconds_per_iteration"], 2),
            _num(rec.get("val_dice")),
            _num(rec["seconds_trained"] / 60 if "seconds_trained" in rec else None, 2),
        )
    return table


def _num(value: Any, digits: int = 4) -> str:
    """``value`` rounded as run.json's readers show it (``-`` when absent)."""
    return "-" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def train(
    work: Path = typer.Argument(..., help="Work folder made by `voxseg plan DATA -o WORK`."),
    fold: str = typer.Option("all", "--fold", "-f", help="Fold number, list (0,2) or 'all'."),
    config: str = typer.Option(
        None,
        "--config",
        "-c",
        help="Plan configuration (3d, 3d_lowres, 2d; default: the plan's).",
    ),
    epochs: int = typer.Option(None, "--epochs", help="Number of epochs."),
    minutes: float = typer.Option(
        None, "--minutes", help="Time budget PER FOLD in minutes, validation included (epochs sized to fit)."
    ),
    total_minutes: float = typer.Option(
        None,
        "--total-minutes",
        help="Time budget for ALL the chosen folds together (e.g. --fold all), split evenly over the folds left.",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue interrupted runs from their last epoch."),
    mlflow: str = typer.Option(None, "--mlflow", help="MLflow tracking URI ('local': WORK/mlruns, sqlite:///...)."),
    settings: list[str] = typer.Option(None, "--set", help="KEY=VALUE training/plan option (repeatable)."),
    workers: int = typer.Option(None, "--workers", "-j", help="DataLoader worker processes (0: main process)."),
    device: str = typer.Option(None, "--device", help="cpu or cuda."),
    processes: int = typer.Option(None, "--processes", min=1, help="Data-parallel processes (DDP; or use torchrun)."),
) -> None:
    """Train folds of a work folder, then predict and score each fold's validation cases."""
    started = time.monotonic()  # --total-minutes counts from here
    from voxseg.experiment.launcher import train_processes

    overrides: dict[str, Any] = parse_key_values(settings, "--set")
    extra: dict[str, Any] = {}
    if epochs is not None:
        overrides["epochs"] = epochs
    if minutes is not None:
        overrides["minutes"] = minutes
    if device is not None and device.split(":")[0] not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: expected cpu or cuda")
    if minutes is not None and total_minutes is not None:
        raise ConfigError("--minutes (per fold) and --total-minutes (all folds) exclude each other: give one")
    if total_minutes is not None:
        extra.update(total_minutes=total_minutes, started=started)
    with _train_progress() as progress:
        summaries = train_processes(
            work,
            _parse_folds(fold),
            processes=processes,
            configuration=config,
            config_overrides=overrides,
            resume=resume,
            mlflow=mlflow,
            progress=progress,
            num_workers=workers,
            device=device,
            **extra,
        )
    records = fold_records(work, summaries[0]["configuration"], [s["fold"] for s in summaries]) if summaries else {}
    console.print(_fold_table(summaries, records))
    for line in fold_warnings(records):
        err_console.print(f"warning: {line}", highlight=False, soft_wrap=True)
    console.print(next_step("train", work), highlight=False, soft_wrap=True)


def crossval(
    work: Path = typer.Argument(..., help="Work folder with trained folds."),
    config: str = typer.Option(None, "--config", "-c", help="Plan configuration (default: the plan's)."),
    folds: str = typer.Option(
        None,
        "--folds",
        "-f",
        help="Score only these folds, e.g. 0 or 0,2 (default: all, as a cross-validation needs); "
        "with a subset, figures and postprocessing rest on their validation cases alone.",
    ),
) -> None:
    """Summarize the folds' validation predictions and choose the postprocessing per class."""
    from voxseg.experiment.crossval import crossval as run_crossval

    chosen = None if folds is None else _parse_folds(folds)
    summary = run_crossval(work, configuration=config, folds=None if chosen in (None, "all") else chosen)
    steps = summary["postprocessing"].get("classes", {})
    scope = partial_scope(summary) or f"{summary['folds']} folds"
    table = Table(title=f"cross-validation: {summary['cases']} cases, {scope}")
    for col in ("class", "name", "Dice", "std", "Dice post", "postprocessing"):
        table.add_column(col, justify="left" if col in ("name", "postprocessing") else "right")
    for label, row in summary["per_class"].items():
        chosen = ", ".join(_step_text(s) for s in steps.get(label, [])) or "none"
        table.add_row(
            label,
            row["name"],
            _fmt(row["dice"]["mean"]),
            _fmt(row["dice"]["std"]),
            _fmt(row["dice_postprocessed"]),
            chosen,
        )
    table.add_row("mean", "", _fmt(summary["mean_dice"]), "", _fmt(summary["mean_dice_postprocessed"]), "")
    console.print(table)
    objects = summary.get("instances")
    if objects:
        keep = f"objects of {objects['min_size']}+ voxels" if objects["min_size"] else "every object"
        console.print(
            f"objects: split_instances keeps {keep}; object F1 at IoU {objects['iou_threshold']} "
            f"{objects['f1']:.4f} -> {objects['f1_postprocessed']:.4f} on these cases",
            highlight=False,
        )
    console.print(f"wrote {Path(work) / 'crossval' / summary['configuration']}")
    records = fold_records(work, summary["configuration"])
    for line in crossval_warnings(summary, records):
        err_console.print(f"warning: {line}", highlight=False, soft_wrap=True)
    console.print(next_step("crossval", work), highlight=False, soft_wrap=True)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _step_text(step: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={v}" for k, v in step.items() if k != "op")
    return f"{step['op']}({params})" if params else step["op"]
