"""``voxseg finetune``: a thin shell over :mod:`voxseg.experiment.finetune`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from voxseg.cli._common import console, parse_key_values
from voxseg.cli.train import _train_progress
from voxseg.errors import ConfigError


def _dice(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def finetune(
    dataset: Path = typer.Argument(..., help="Dataset folder (nnU-Net layout: dataset.json, imagesTr/, labelsTr/)."),
    model: str = typer.Option(
        None, "--model", "-m", help="Model to start from: NAME, NAME@VERSION, bundle, .zip or a training work folder."
    ),
    new: str = typer.Option(
        None, "--new", help="No model yet: train a first model NAME from the (sparse) annotations instead."
    ),
    minutes: float = typer.Option(5.0, "--minutes", help="Time budget in minutes (training and validation)."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the new version here (.zip or folder), not installed."),
    freeze_encoder: bool = typer.Option(False, "--freeze-encoder", help="Train the decoder only."),
    lr_factor: float = typer.Option(0.1, "--lr-factor", help="The model's learning rate times this."),
    holdout: int = typer.Option(None, "--holdout", help="Cases held out for before/after Dice (default 1 if >= 2)."),
    work: Path = typer.Option(None, "--work", help="Work folder (default: in the cache; a rerun resumes it)."),
    settings: list[str] = typer.Option(None, "--set", help="KEY=VALUE training option (repeatable)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
) -> None:
    """Fine-tune a model on a few corrected cases and write its next version (NAME@vN+1).

    Re-running the same command resumes an interrupted run.
    """
    from voxseg.experiment.finetune import finetune as run_finetune
    from voxseg.experiment.finetune import train_first

    if (model is None) == (new is None):
        raise ConfigError("give either -m MODEL (fine-tune it) or --new NAME (train a first model)")
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: expected cpu or cuda")
    overrides = parse_key_values(settings, "--set")
    common: dict[str, Any] = dict(minutes=minutes, out=out, holdout=holdout, work=work, overrides=overrides)
    with _train_progress() as progress:
        if model is not None:
            result = run_finetune(
                dataset,
                model=model,
                freeze_encoder=freeze_encoder,
                lr_factor=lr_factor,
                progress=progress,
                device=device,
                **common,
            )
        else:
            result = train_first(dataset, name=new, progress=progress, device=device, **common)
    table = Table(title=f"finetune: {result.reference}")
    for col in ("model", "parent", "epochs", "steps", "held out", "Dice before", "Dice after"):
        table.add_column(col)
    held = ", ".join(result.held_out) or "no held-out case"
    table.add_row(
        result.reference,
        result.parent or "-",
        str(result.epochs),
        str(result.steps),
        held,
        _dice(result.before_dice),
        _dice(result.after_dice),
    )
    console.print(table)
    where = "installed" if result.installed else "wrote"
    console.print(f"{where} {result.reference} at {result.path}", highlight=False, soft_wrap=True)
    if result.installed:
        name = result.reference.split("@")[0]
        console.print(f"next: voxseg predict IMAGES -m {name} -o OUT", highlight=False, soft_wrap=True)
