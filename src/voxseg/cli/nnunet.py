"""``voxseg import-nnunet``: an nnU-Net v2 trained model (folder or export zip) -> a voxseg bundle."""

from __future__ import annotations

from pathlib import Path

import typer

from voxseg.cli._common import console
from voxseg.errors import ConfigError


def _folds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(f) for f in text.replace(" ", "").split(",") if f]
    except ValueError:
        raise ConfigError(f"--folds {text!r}: expected fold numbers like 0,1,2") from None


def import_nnunet(
    model: Path = typer.Argument(..., help="nnU-Net trained-model folder (Trainer__Plans__config) or export .zip."),
    output: Path = typer.Option(..., "--output", "-o", help="NAME.zip, or a new folder (no suffix)."),
    name: str = typer.Option(None, "--name", help="Model name (default: from the dataset name)."),
    version: str = typer.Option("v1", "--version", help="Model version."),
    folds: str = typer.Option(None, "--folds", help="Folds to include, e.g. 0,1,2 (default: all present)."),
    checkpoint: str = typer.Option("final", "--checkpoint", help="final (checkpoint_final.pth) or best."),
    configuration: str = typer.Option(
        None, "--configuration", "-c", help="Which model, when the folder/zip holds several (e.g. 3d_fullres)."
    ),
    postprocessing: str = typer.Option("auto", "--postprocessing", help="auto (translate postprocessing.pkl) or none."),
    license: str = typer.Option("", "--license", help="License of the weights, e.g. CC-BY-4.0."),
    author: list[str] = typer.Option(None, "--author", help="Author (repeatable)."),
    onnx: bool = typer.Option(
        False, "--onnx", help="Also write model_fold_K.onnx, for --backend onnxruntime|openvino|auto (needs [onnx])."
    ),
) -> None:
    """Import an nnU-Net v2 model as a voxseg bundle (safe checkpoint loading; see docs/nnunet.md)."""
    from voxseg.bundle._util import sha256_file
    from voxseg.nnunet import import_nnunet as run_import

    if checkpoint not in ("final", "best"):
        raise ConfigError(f"--checkpoint must be final or best, got {checkpoint!r}")
    path = run_import(
        model,
        output,
        name=name,
        version=version,
        folds=_folds(folds),
        checkpoint=checkpoint,
        configuration=configuration,
        postprocessing=postprocessing,
        license=license,
        authors=author or (),
        onnx=onnx,
    )
    console.print(f"wrote {path}")
    if path.is_file():
        console.print(f"sha256 {sha256_file(path)}  size {path.stat().st_size}")
