"""``voxseg points``: simulate a user's six extreme points from a label image."""

from __future__ import annotations

from pathlib import Path

import typer

from voxseg.cli._common import console


def _floats(text: str, name: str) -> float | tuple[float, ...]:
    from voxseg.errors import ConfigError

    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--{name} takes one number or one per axis separated by commas, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def points(
    label_path: Path = typer.Argument(..., help="Label image (e.g. labelsTr/CASE.nii.gz) with the object."),
    output: Path = typer.Option(..., "--output", "-o", help="points.json, or a napari Points .csv."),
    value: int = typer.Option(None, "--label", help="Label value of the object (default: every nonzero voxel)."),
    space: str = typer.Option("voxel", "--space", help="Write voxel indices or world (mm) coordinates."),
    inward: str = typer.Option("2", "--inward", help="Voxels the points move inside (one, or z,y,x)."),
    jitter_mm: float = typer.Option(0.0, "--jitter-mm", help="Gaussian jitter of the points in mm (needs --seed)."),
    seed: int = typer.Option(None, "--seed", help="Random extreme-plane voxels and jitter (default: deterministic)."),
) -> None:
    """Write the six extreme points (four in 2D) of the object in LABEL, as a user would click them."""
    import numpy as np

    from voxseg.errors import ConfigError
    from voxseg.interactive import PointPrompt, extreme_points, write_points
    from voxseg.io import read_image

    if space not in ("voxel", "world"):
        raise ConfigError(f"--space must be voxel or world, got {space!r}")
    if output.suffix.lower() == ".csv" and space == "world":
        raise ConfigError("a napari .csv does not record the space: write voxel points to it, or use points.json")
    volume = read_image(label_path)
    mask = volume.array != 0 if value is None else volume.array == value
    if not mask.any():
        what = "nonzero voxel" if value is None else f"voxel of label {value}"
        raise ConfigError(f"{label_path}: no {what}; extreme points need an object")
    if jitter_mm > 0 and seed is None:
        raise ConfigError("--jitter-mm needs --seed (the jitter is random)")
    rng = None if seed is None else np.random.default_rng(seed)
    jitter = jitter_mm if jitter_mm > 0 else 0.0
    pts = extreme_points(mask, rng=rng, inward=_floats(inward, "inward"), jitter=jitter, spacing=volume.spacing)
    coords = volume.index_to_world(pts) if space == "world" else pts
    write_points(output, PointPrompt(coords, space=space))
    console.print(f"wrote {len(pts)} {space} points to {output}")
