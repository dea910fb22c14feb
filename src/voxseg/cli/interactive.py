"""Interactive segmentation on the command line.

- ``voxseg predict -i IMG -o OUT -m MODEL --points points.json [--points-space world]``:
  :func:`predict_with_points` (called by ``cli/predict.py``).
- ``voxseg evaluate-interactive WORK|BUNDLE DATA -o OUT [--clicks N] [--cases ...] [--automatic WORK2]``.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from voxseg.cli._common import console, err_console, progress_bar
from voxseg.errors import ConfigError, InputImageError, VoxsegError

__all__ = ["predict_with_points", "evaluate_interactive"]


def predict_with_points(input: Path, output: Path, predictor, points: Path, space: str | None) -> None:
    """Segment the object the points mark in one image file; write the mask to ``output``."""
    from voxseg.interactive.pipeline import check_image, load_interactive_model, segment_from_points
    from voxseg.interactive.pointfile import load_points, read_points
    from voxseg.io import read_channels, write_image

    if space is not None and space not in ("voxel", "world"):
        raise ConfigError(f"--points-space must be voxel or world, got {space!r}")
    if not input.is_file():
        raise VoxsegError(f"{input}: --points needs one image file as -i (not a folder or a list)")
    predictor = load_interactive_model(predictor)
    channels = read_channels(input)
    try:  # the image first: a 2D image makes every point "wrong"
        check_image(channels, predictor.plan)
    except InputImageError as exc:
        raise exc.naming(input) from None
    try:  # a bad point file is bad input (exit 1), not a bad option
        prompt = read_points(points, space=space)
        load_points(prompt, channels[0])
    except ConfigError as exc:
        message = str(exc)
        raise VoxsegError(message if message.startswith(points.name) else f"{points.name}: {message}") from None
    t0 = time.perf_counter()
    mask = segment_from_points(channels, prompt, model=predictor)
    write_image(mask, output)
    voxels = int((mask.array != 0).sum())
    console.print(f"wrote {output} ({voxels} voxels) in {time.perf_counter() - t0:.1f} s", highlight=False)


def evaluate_interactive(
    model: str = typer.Argument(..., help="Interactive model: work folder, bundle or installed name."),
    data: Path = typer.Argument(..., help="Dataset with labels (nnU-Net v2 layout)."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for curve.csv, cases.csv, curve.png."),
    clicks: int = typer.Option(5, "--clicks", "-n", min=0, help="Corrective clicks after the six points."),
    cases: list[str] = typer.Option(None, "--cases", help="Case ids (repeatable; default: all training cases)."),
    automatic: str = typer.Option(None, "--automatic", help="Automatic model (work folder/bundle) to compare with."),
    seed: int = typer.Option(0, "--seed", "-s", help="Seed of the simulated user (case i: seed + i)."),
    tta: bool = typer.Option(True, "--tta/--no-tta", help="Mirror test-time augmentation (off: ~8x faster)."),
) -> None:
    """Simulate a user (six jittered extreme points, then N corrective clicks): Dice after k interactions."""
    from voxseg.interactive.evaluate import evaluate_interactive as run

    with progress_bar("cases") as tick:
        options = {"clicks": clicks, "cases": cases or None, "automatic": automatic, "seed": seed, "tta": tta}
        result = run(model, data, output, progress=tick, **options)
    auto = result["automatic_dice"]
    for k, v in zip(result["k"], result["mean_dice"], strict=True):
        console.print(f"k={k}: mean Dice {v:.4f}", highlight=False)
    if auto is not None:
        console.print(f"automatic model: mean Dice {auto:.4f}", highlight=False)
    err_console.print(f"wrote {output}/curve.csv, cases.csv, curve.png, interactive.json", highlight=False)
