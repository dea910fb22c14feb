"""Bundle commands: ``voxseg export``, ``voxseg install``, ``voxseg models``, ``voxseg bundle verify|show|entry``.

Argument parsing only: folders come from ``--cache-dir`` / ``--models-dir``, else ``VOXSEG_CACHE`` /
``VOXSEG_MODELS``, else the platform defaults; extra indexes from ``--index``, else ``VOXSEG_INDEX``.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from voxseg.cli._common import console, progress_bar
from voxseg.errors import BundleError, ConfigError

if TYPE_CHECKING:
    from voxseg.bundle.listing import ModelInfo

app = typer.Typer(no_args_is_help=True, help="Inspect and check model bundles.")

_CACHE = typer.Option(None, "--cache-dir", "--cache", help="Download cache (default: $VOXSEG_CACHE or the user cache).")
_MODELS = typer.Option(None, "--models-dir", "--models", help="Installed models (default: $VOXSEG_MODELS or user dir).")
_INDEX = typer.Option(None, "--index", help="Extra model index (path or URL; repeatable; default: $VOXSEG_INDEX).")
_WIDE_TABLE = 110  # columns from which `voxseg models` gives descriptions a column of their own
_OFFLINE = typer.Option(False, "--offline", help="Never touch the network.")


def _folders(cache_dir: Path | None, models_dir: Path | None) -> tuple[Path, Path]:
    from voxseg.settings import resolve_paths

    paths = resolve_paths(cache=cache_dir, models=models_dir)
    return paths.cache, paths.models


def _indexes(index: list[str] | None) -> list[str] | None:
    if index:
        return list(index)
    env = os.environ.get("VOXSEG_INDEX")
    return [env] if env else None


def _folds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(f) for f in text.replace(" ", "").split(",") if f]
    except ValueError:
        raise ConfigError(f"--folds {text!r}: expected fold numbers like 0,1,2") from None


def export(
    work: Path = typer.Argument(..., help="Trained work folder (plan.json, runs/...)."),
    output: Path = typer.Option(..., "--output", "-o", help="NAME.zip, or a new folder (no suffix)."),
    name: str = typer.Option(..., "--name", help="Model name, e.g. mouse-lung-nodules."),
    version: str = typer.Option(..., "--version", help="Model version, e.g. v1."),
    config: str = typer.Option(None, "--config", "-c", help="Plan configuration (default: the plan's default)."),
    folds: str = typer.Option(None, "--folds", help="Folds to include, e.g. 0,1,2 (default: all finished)."),
    description: str = typer.Option("", "--description", help="One-line description."),
    license: str = typer.Option("", "--license", help="License of the weights, e.g. CC-BY-4.0."),
    author: list[str] = typer.Option(None, "--author", help="Author (repeatable)."),
    notes: Path = typer.Option(None, "--notes", help="Markdown file added to the model card (intended use...)."),
    onnx: bool = typer.Option(False, "--onnx", help="Also write model_fold_K.onnx (needs the [onnx] extra)."),
    intended_use: str = typer.Option("", "--intended-use", help="One sentence: what the model is for."),
    golden: bool = typer.Option(True, "--golden/--no-golden", help="Write the golden test (a validation case)."),
    fmt: str = typer.Option("voxseg", "--format", help="voxseg (a bundle) or bioimageio (a bioimage.io .zip)."),
    min_dice: float = typer.Option(
        None, "--min-dice", help="Refuse to export when the cross-validation mean Dice is under this (0-1)."
    ),
) -> None:
    """Package a trained work folder as a model bundle (.zip or folder) or a bioimage.io package."""
    from voxseg.bundle import export_bundle
    from voxseg.bundle._util import sha256_file

    if fmt not in ("voxseg", "bioimageio"):
        raise ConfigError(f"--format {fmt!r}: choose voxseg or bioimageio")
    if fmt == "bioimageio" and output.suffix.lower() != ".zip":
        raise ConfigError(f"{output}: a bioimage.io package is a .zip (e.g. -o MODEL.zip)")
    options = {
        "name": name,
        "version": version,
        "configuration": config,
        "folds": _folds(folds),
        "description": description,
        "license": license,
        "intended_use": intended_use,
        "authors": author or (),
        "card_notes": notes.read_text(encoding="utf-8") if notes is not None else None,
        "onnx": onnx,
        "golden": golden,
        "min_dice": min_dice,
    }
    with contextlib.ExitStack() as stack:
        if fmt == "bioimageio":  # a bundle in a temporary folder first, then its network as a package
            import tempfile

            from voxseg.bundle.bioimageio import export_bioimageio

            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="voxseg-bioimageio-")))
            path = export_bioimageio(export_bundle(work, tmp / "bundle", **options), output)
        else:
            path = export_bundle(work, output, **options)
    console.print(f"wrote {path}")
    if path.is_file():
        console.print(f"sha256 {sha256_file(path)}  size {path.stat().st_size}")
    console.print(f"next: voxseg predict -m {path} -i INPUT -o OUTPUT", highlight=False, soft_wrap=True)


def install(
    model: str = typer.Argument(..., help="NAME, NAME@VERSION, or a bundle .zip / folder."),
    index: list[str] = _INDEX,
    offline: bool = _OFFLINE,
    cache_dir: Path = _CACHE,
    models_dir: Path = _MODELS,
    golden: bool = typer.Option(True, "--test/--no-test", help="Run the bundle's golden test after installing."),
) -> None:
    """Install a model: by name through the index (downloaded once, sha256 checked), or from a file;
    prints its licence and intended use, then runs its golden test (``voxseg bundle test``)."""
    from voxseg.bundle import install as install_model

    cache, models = _folders(cache_dir, models_dir)
    with contextlib.ExitStack() as stack:
        bar = None

        def progress(done: int, total: int) -> None:  # a bar only when something is downloaded
            nonlocal bar
            if bar is None:
                bar = stack.enter_context(progress_bar(f"download {model}"))
            bar(done, total)

        indexes = _indexes(index)
        got = install_model(model, index=indexes, cache=cache, models=models, offline=offline, progress=progress)
    console.print(f"{got.reference} installed in {got.path}")
    from voxseg.bundle.notice import terms, terms_line

    opened = got.open()
    console.print(terms_line(terms(opened.manifest)), highlight=False, soft_wrap=True)
    if golden and opened.manifest.golden is not None:
        from voxseg.cli.bundle_test import report_golden

        report_golden(opened)


def models(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    index: list[str] = _INDEX,
    offline: bool = _OFFLINE,
    cache_dir: Path = _CACHE,
    models_dir: Path = _MODELS,
) -> None:
    """List installed models and the models available from the index(es).

    The JSON (``--json``) has one object per NAME@VERSION: name, version, task, installed,
    available, latest, builtin (shipped inside the package), source, license, intended_use, description,
    size, path.
    """
    from voxseg.bundle import list_models

    cache, models_path = _folders(cache_dir, models_dir)
    rows = list_models(index=_indexes(index), cache=cache, models=models_path, offline=offline)
    if as_json:
        print(json.dumps([r.to_json() for r in rows], indent=2))  # plain: never wrapped or highlighted
        return
    if not rows:
        console.print("no models installed or available")
        return
    out = _models_console()
    out.print(_models_table(rows, out.width))


def _models_console() -> Console:
    """The console, or a wide one when the output is piped (no COLUMNS set): rows stay one line each."""
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(width=max(console.width, 240))


def _models_table(rows: list[ModelInfo], width: int) -> Table:
    """Names and versions are never folded or cut (they are what a user types).

    On a narrow console each description goes under its model's name instead of into a column
    of its own, so that neither is squeezed into a sliver.
    """
    wide = width >= _WIDE_TABLE
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("name", min_width=max(len(r.name) for r in rows), overflow="fold", ratio=None if wide else 1)
    table.add_column("version", no_wrap=True)
    table.add_column("task", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("licence", no_wrap=True)
    if wide:
        table.add_column("description", overflow="fold", ratio=1)
    versions: dict[str, int] = {}
    for r in rows:
        versions[r.name] = versions.get(r.name, 0) + 1
    for r in rows:
        status = "installed" if r.installed else "built-in" if r.builtin else "download" if r.available else ""
        status += " (latest)" if r.latest and versions[r.name] > 1 else ""
        if wide:
            table.add_row(r.name, r.version, r.task, status, r.license or "?", r.description)
        else:
            name = Text(r.name)
            if r.description:
                name.append("\n" + r.description, style="dim")
            table.add_row(name, r.version, r.task, status, r.license or "?")
    return table


@app.command("verify")
def verify(
    bundle: Path = typer.Argument(..., help="Bundle .zip or folder."),
    forward: bool = typer.Option(True, "--forward/--no-forward", help="Run a dry forward pass per fold."),
) -> None:
    """Check hashes, schema, weights (strict) and a dry-run forward pass; exit 1 on any problem."""
    from voxseg.bundle import verify_bundle

    problems = verify_bundle(bundle, forward=forward)
    if problems:
        for p in problems[:-1]:
            console.print(f"[red]problem:[/red] {p}", highlight=False, soft_wrap=True)
        raise BundleError(problems[-1])
    console.print(f"{bundle}: ok")


@app.command("show")
def show(
    bundle: str = typer.Argument(..., help="Bundle .zip or folder, or an installed NAME[@VERSION]."),
    as_json: bool = typer.Option(False, "--json", help="Print bundle.json instead of the model card."),
    models_dir: Path = _MODELS,
) -> None:
    """Print a bundle's model card (README.md) or its bundle.json."""
    from voxseg.bundle import open_bundle
    from voxseg.bundle._util import parse_reference
    from voxseg.bundle.cache import find_installed, looks_like_path

    if looks_like_path(bundle):
        opened = open_bundle(Path(bundle))
    else:
        name, version = parse_reference(bundle)
        found = find_installed(_folders(None, models_dir)[1], name, version)
        if found is None:
            raise BundleError(f"{bundle} is not installed; run `voxseg install {bundle}` first")
        opened = found.open()
    if as_json:
        console.print_json(opened.manifest.dumps())
    else:
        console.print(opened.card or "(this bundle has no model card)", markup=False, highlight=False)


@app.command("entry")
def entry(
    bundle: Path = typer.Argument(..., help="Bundle .zip to publish."),
    url: list[str] = typer.Option(..., "--url", help="Where it will be downloaded from (repeatable: mirrors)."),
    description: str = typer.Option(None, "--description", help="Description (default: the bundle's)."),
) -> None:
    """Print the index entry (urls, sha256, size, task, licence, intended use) that publishes a bundle .zip."""
    from voxseg.bundle import open_bundle
    from voxseg.bundle._util import sha256_file

    m = open_bundle(bundle).manifest
    info = {"urls": list(url), "sha256": sha256_file(bundle), "size": bundle.stat().st_size}
    info["description"] = description if description is not None else m.description
    info["task"] = m.task  # lets listings tell interactive models apart before installing
    info["license"], info["intended_use"] = m.license, m.intended_use  # shown where people choose a model
    console.print_json(json.dumps({"models": {m.name: {"versions": {m.version: info}}}}))
