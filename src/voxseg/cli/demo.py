"""``voxseg demo``: a phantom mouse CT segmented by the built-in lung-nodule model."""

from __future__ import annotations

from pathlib import Path

import typer

from voxseg.cli._common import console, err_console
from voxseg.models.demo import DEFAULT_SEED, DEMO_MODEL


def demo(
    out: Path = typer.Option(Path("voxseg-demo"), "--out", "-o", help="Output folder (created)."),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="Phantom seed (the model was trained on seed 0)."),
    model: str = typer.Option(DEMO_MODEL, "--model", "-m", help="Model name, NAME@VERSION or a bundle path."),
    cache_dir: Path = typer.Option(None, "--cache-dir", "--cache", help="Cache folder (default: $VOXSEG_CACHE)."),
    models_dir: Path = typer.Option(None, "--models-dir", "--models", help="Models folder (default: $VOXSEG_MODELS)."),
) -> None:
    """Make a phantom mouse CT, segment its lung nodules with the built-in model, write the results.

    Writes the CT, the true and the predicted nodule masks (instances), an object table (CSV) and a
    PNG overview into OUT. Offline: the model ships inside the package. The model was trained on
    synthetic phantoms only; it demonstrates the workflow, not a model for real scans.
    """
    from voxseg.models.demo import run_demo
    from voxseg.settings import resolve_paths

    paths = resolve_paths(cache=cache_dir, models=models_dir)
    result = run_demo(
        out,
        seed=seed,
        model=model,
        models=paths.models,
        cache=paths.cache,
        progress=lambda msg: err_console.print(f"[dim]{msg}...[/dim]", highlight=False),
    )
    labels = {
        "image": "phantom CT",
        "truth": "true nodules",
        "instances": "found nodules",
        "table": "object table",
        "overview": "overview",
    }
    for key, path in result.files.items():
        console.print(f"{labels.get(key, key):>14}: {path}", highlight=False, soft_wrap=True)
    console.print(
        f"{result.model}: {result.found} nodules found; the phantom has {result.truth} of at least 150 voxels "
        f"(+{result.truth_small} smaller, dropped by design); {result.matched} matched; Dice {result.dice:.2f}; "
        f"{result.seconds['total']:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
    console.print("This model was trained on synthetic phantoms: a demonstration, not a model for real scans.")
