"""``voxseg plan DATA -o WORK``: fingerprint + plan + preprocess in one go (a thin shell)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from typer.core import TyperCommand

from voxseg.cli._common import console, err_console
from voxseg.errors import ConfigError
from voxseg.workdir.quality import next_step

_CONFIGS = {"3d": ("3d",), "3d_lowres": ("3d_lowres",), "2d": ("2d",), "all": None}
_SNAPSHOTS_ALONE = 3  # cases pictured by a bare --snapshots


class PlanCommand(TyperCommand):
    """``voxseg plan`` with an optional value for ``--snapshots`` (typer has no such options):
    a bare ``--snapshots`` means ``--snapshots 3``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        for k, arg in enumerate(args):
            out.append(arg)
            if arg == "--snapshots" and (k + 1 == len(args) or not args[k + 1].isdigit()):
                out.append(str(_SNAPSHOTS_ALONE))
        return super().parse_args(ctx, out)


@contextlib.contextmanager
def _stage_bars() -> Iterator[Callable[[str, int, int], None]]:
    """One rich bar per stage (verify, fingerprint, preprocess 3d, ...), created when it starts."""
    columns = (
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _fmt(values) -> str:
    return "x".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in values)


def summary_table(plan, parameters: dict[str, int]) -> Table:
    """Per configuration: spacing, patch, batch, network and its size."""
    table = Table(
        title=f"plan for {plan.dataset_name} ({plan.budget} budget)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        caption="* default configuration; filters: first-last x levels",
        caption_justify="left",
        pad_edge=False,
        collapse_padding=True,
    )
    for column in ("config", "spacing mm", "patch", "batch", "network", "filters", "params"):
        table.add_column(column, justify="right" if column in ("batch", "params") else "left", no_wrap=True)
    for name, conf in plan.configurations.items():
        kw = conf.network.kwargs
        filters = kw.get("filters") or kw.get("channels") or []
        marker = " *" if name == plan.default_configuration else ""
        table.add_row(
            f"{name}{marker}",
            _fmt(conf.target_spacing),
            _fmt(conf.patch_size),
            str(conf.batch_size),
            conf.network.name,
            f"{filters[0]}-{filters[-1]} x{len(filters)}" if filters else "",
            f"{parameters.get(name, 0) / 1e6:.2f} M",
        )
    return table


def plan(
    data: Path = typer.Argument(..., help="Raw dataset folder (nnU-Net v2 layout)."),
    output: Path = typer.Option(..., "--output", "-o", help="Work folder to create (or resume)."),
    config: str = typer.Option(
        "all",
        "--config",
        "-c",
        help="Configurations: 3d, 3d_lowres, 2d or all (3d+2d; 3d_lowres first when a CPU patch sees too little).",
    ),
    seed: int = typer.Option(0, "--seed", "-s", help="Seed of sampling, splits and training."),
    snapshots: int = typer.Option(
        0,
        "--snapshots",
        help="PNGs of the preprocessing stages for N cases per configuration (--snapshots alone: 3).",
    ),
    set_: list[str] = typer.Option(None, "--set", help="Change the plan: KEY=VALUE (repeatable; docs/planning.md)."),
    budget: str = typer.Option("cpu", "--budget", "-b", help="Compute budget the plan is sized for: cpu or gpu."),
    folds: int = typer.Option(5, "--folds", "-k", help="Number of cross-validation folds."),
    workers: int = typer.Option(None, "--workers", "-j", help="Parallel cases (default: up to 4, the CPU count)."),
    interactive: str = typer.Option(
        None, "--interactive", help="Plan an interactive model: extreme-points (docs/interactive.md)."
    ),
) -> None:
    """Verify DATA, measure it, plan the models and preprocess every case into WORK (resumable)."""
    from voxseg.experiment.plan import DatasetRefused, configuration_parameters, plan_experiment

    key = config.strip().lower()
    if key not in _CONFIGS:
        raise ConfigError(f"--config {config!r}: choose 3d, 3d_lowres, 2d or all")
    try:
        with _stage_bars() as update:
            result = plan_experiment(
                data,
                output,
                configurations=_CONFIGS[key],
                seed=seed,
                budget=budget.strip().lower(),
                overrides=set_ or (),
                snapshots=snapshots,
                num_workers=workers,
                folds=folds,
                progress=update,
                interactive=interactive,
            )
    except DatasetRefused as exc:
        for p in exc.problems:
            err_console.print(f"[red]error[/red]: {p.path}: {p.message}", highlight=False, soft_wrap=True)
        raise
    console.print(summary_table(result, configuration_parameters(result)))
    for name, conf in result.configurations.items():
        for note in conf.notes:
            console.print(f"{name}: {note}", highlight=False, soft_wrap=True)
    for c, norm in enumerate(result.normalization):
        console.print(f"channel {c} ({result.channel_names[c]}): {norm.scheme}", highlight=False)
    console.print(f"work folder ready: {output}", highlight=False)
    console.print(next_step("plan", output), highlight=False, soft_wrap=True)
