"""``voxseg bundle test NAME|ZIP``: run a bundle's golden test with every backend available here."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from voxseg.cli._common import console, err_console
from voxseg.errors import BundleError


def open_any(reference: str, models_dir: Path | None):
    """A bundle folder / ``.zip``, or an installed ``NAME[@VERSION]``."""
    from voxseg.bundle import open_bundle
    from voxseg.bundle._util import parse_reference
    from voxseg.bundle.cache import find_installed, looks_like_path
    from voxseg.settings import resolve_paths

    if looks_like_path(reference):
        return open_bundle(Path(reference))
    name, version = parse_reference(reference)
    found = find_installed(resolve_paths(models=models_dir).models, name, version)
    if found is None:
        raise BundleError(f"{reference} is not installed; run `voxseg install {reference}` or give the bundle's .zip")
    return found.open()


def report_golden(bundle, backends: list[str] | None = None, *, as_json: bool = False) -> None:
    """Run the golden test, print one line per backend; raise BundleError naming what differs."""
    from voxseg.bundle.golden import run_golden

    results = run_golden(bundle, backends=backends)
    if as_json:
        console.print_json(json.dumps({"model": bundle.manifest.reference, "results": [r.to_json() for r in results]}))
    else:
        for r in results:
            colour = "green" if r.ok and not r.skipped else ("yellow" if r.skipped else "red")
            console.print(f"[{colour}]{r.line()}[/{colour}]", highlight=False, soft_wrap=True)
    failed = [r for r in results if not r.ok]
    if failed:
        detail = "; ".join(f"{r.backend}: {'; '.join(r.problems)}" for r in failed)
        raise BundleError(f"{bundle.manifest.reference}: golden test failed ({detail})")
    if all(r.skipped for r in results):
        raise BundleError(f"{bundle.manifest.reference}: no backend could run the golden test here")


def test(
    bundle: str = typer.Argument(..., help="Bundle .zip or folder, or an installed NAME[@VERSION]."),
    backend: list[str] = typer.Option(
        None, "--backend", help="torch-fp32, torch-bf16, onnxruntime or openvino (repeatable; default: all available)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    models_dir: Path = typer.Option(None, "--models-dir", "--models", help="Installed models folder."),
) -> None:
    """Run the bundle's golden test (a recorded case and its expected output) with each backend;
    exit 1 when one is out of the bundle's tolerances, naming what differs."""
    opened = open_any(bundle, models_dir)
    if opened.manifest.golden is None:
        err_console.print(
            f"{opened.manifest.reference}: no golden test in this bundle (re-export it with a current voxseg)"
        )
        raise typer.Exit(1)
    report_golden(opened, backend or None, as_json=as_json)
