"""``voxseg predict``: segment an image file, a folder or a list of files with a trained model."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from voxseg.cli._common import console, err_console, progress_bar
from voxseg.errors import ConfigError, InputImageError

FAST_OVERLAP = 0.25


def _parse_folds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        folds = [int(p) for p in text.replace(" ", "").split(",") if p]
    except ValueError:
        raise ConfigError(f"--folds {text!r}: expected comma-separated fold numbers like 0,1") from None
    if not folds or min(folds) < 0:
        raise ConfigError(f"--folds {text!r}: expected fold numbers >= 0")
    return folds


def predict(
    input: Path = typer.Option(..., "--input", "-i", help="Image file, folder (CASE_0000 channels) or .txt/.csv list."),
    output: Path = typer.Option(..., "--output", "-o", help="Output file (for a file input) or folder."),
    model: str = typer.Option(..., "--model", "-m", help="Training work folder (or model bundle)."),
    mask: Path = typer.Option(None, "--mask", "-b", help="Mask file (file input) or folder of CASE masks."),
    folds: str = typer.Option(None, "--folds", help="Folds to ensemble, e.g. 0,1 (default: all trained)."),
    config: str = typer.Option(None, "--config", "-c", help="Plan configuration (default: the plan's)."),
    tta: bool = typer.Option(None, "--tta/--no-tta", help="Mirror test-time augmentation (default on)."),
    overlap: float = typer.Option(None, "--overlap", help="Sliding-window overlap in [0, 1) (default 0.5)."),
    threshold: float = typer.Option(None, "--threshold", help="Binary models: foreground where P > T (default 0.5)."),
    probabilities: bool = typer.Option(False, "--probabilities", help="Also write CASE_probabilities.npz (float16)."),
    instances: bool = typer.Option(False, "--instances", help="Write instance ids and CASE_objects.csv."),
    min_size: int = typer.Option(None, "--min-size", min=0, help="Drop objects under N voxels."),
    min_volume: float = typer.Option(None, "--min-volume", min=0.0, help="Drop objects under this volume (mm³)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 where supported), bf16 or fp32."),
    fast: bool = typer.Option(False, "--fast", help="No TTA, overlap 0.25, first fold only (see docs/inference.md)."),
    threads: int = typer.Option(None, "--threads", min=1, help="CPU threads (default: one per physical core)."),
    backend: str = typer.Option(
        "torch", "--backend", help="torch, or onnxruntime (a bundle exported with --onnx; torch is not imported)."
    ),
    batch_size: str = typer.Option(
        "auto", "--batch-size", help="Tiles per network call, or auto (as many as fit 262,144 voxels, 1-8)."
    ),
    file_ending: str = typer.Option(None, "--file-ending", help="Input files to take from a folder; output suffix."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Skip cases already predicted (folder input)."),
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray (pip install 'voxseg[ray]')."),
    address: str = typer.Option(None, "--address", help="Ray cluster: auto or ray://HOST:PORT (default: a local Ray)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Ray workers, each loading the model once."),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", min=0.0, help="GPUs per Ray worker."),
    points: Path = typer.Option(None, "--points", help="Interactive models: points.json or napari CSV."),
    points_space: str = typer.Option(None, "--points-space", help="Points in voxel or world (mm) coordinates."),
) -> None:
    """Predict label maps; a folder is done case by case with a predictions.json manifest."""
    if min_size is not None and min_volume is not None:
        raise ConfigError("give --min-size or --min-volume, not both")
    batch_size = _tiles_per_call(batch_size)
    tta = (not fast) if tta is None else tta  # --fast: no TTA, overlap 0.25, unless given explicitly
    overlap = (FAST_OVERLAP if fast else 0.5) if overlap is None else overlap
    if backend not in ("torch", "onnxruntime"):
        raise ConfigError(f"--backend {backend!r}: choose torch or onnxruntime")
    onnx = backend == "onnxruntime"
    if onnx and (points is not None or engine != "local"):
        raise ConfigError("--backend onnxruntime works with the local engine and without --points")
    if not onnx:  # the onnxruntime backend never imports torch; these settings do
        from voxseg.inference.runtime import configure_allocator, configure_threads

        configure_allocator()
        configure_threads(threads)
    if points is not None:  # interactive model: one image, six extreme points (docs/interactive.md)
        from voxseg.cli.interactive import predict_with_points

        _check_file_output(output)
        predictor = _load(model, folds, config, tta, overlap, threshold, device, precision, fast, batch_size)
        return predict_with_points(input, output, predictor, points, points_space)
    from voxseg.inference.inputs import LIST_SUFFIXES

    single = input.is_file() and input.suffix.lower() not in LIST_SUFFIXES
    if single:
        _check_file_output(output)
    else:
        from voxseg.inference.batch import check_writable

        if not input.exists():
            raise InputImageError(input, "input not found", "give an image file, a folder or a .txt/.csv list")
        check_writable(output)
    options = {"instances": instances, "min_size": min_size, "min_volume": min_volume, "probabilities": probabilities}
    if engine != "local":
        if engine != "ray":
            raise ConfigError(f"--engine {engine!r}: choose local or ray")
        if single:
            raise ConfigError("--engine ray predicts a folder or a .txt/.csv list; give -i a folder or a list")
        from voxseg.distributed.ray_engine import predict_folder_ray

        with progress_bar("cases") as tick:
            report = predict_folder_ray(
                input,
                output,
                model,
                address=address,
                workers=workers,
                gpus_per_worker=gpus_per_worker,
                num_threads=threads,
                folds=_parse_folds(folds),
                configuration=config,
                max_folds=1 if fast and folds is None else None,
                mask_dir=mask,
                file_ending=file_ending,
                resume=resume,
                progress=tick,
                tta=tta,
                overlap=overlap,
                threshold=threshold,
                device=device,
                precision=precision,
                batch_size=batch_size,
                **options,
            )
        return _report(report)
    if onnx:
        predictor = _load_onnx(model, folds, tta, overlap, threshold, fast, batch_size, threads)
    else:
        predictor = _load(model, folds, config, tta, overlap, threshold, device, precision, fast, batch_size)
    _first_use_notice(predictor)
    if not onnx:  # before any case: every one would fail alike (the onnxruntime backend refuses them itself)
        from voxseg.interactive.planning import refuse_interactive

        refuse_interactive(predictor.plan, model)
    if single:
        _predict_file(input, output, mask, predictor, options)
    else:
        _predict_many(input, output, mask, predictor, options, file_ending, resume)


def _first_use_notice(predictor) -> None:
    """A bundle's licence and intended use, the first time it predicts on this machine."""
    from voxseg.bundle.notice import first_use_line
    from voxseg.settings import resolve_paths

    terms, sha = getattr(predictor, "model_terms", None), getattr(predictor, "model_sha256", None)
    line = first_use_line(terms, sha, resolve_paths().cache)
    if line:
        err_console.print(line, highlight=False, soft_wrap=True)


def _check_file_output(output: Path) -> None:
    from voxseg.inference.batch import check_writable
    from voxseg.io import WRITE_SUFFIXES, image_suffix

    if output.is_dir():
        raise InputImageError(output, "output path is a folder", "give an output file such as out.nii.gz")
    if image_suffix(output) not in WRITE_SUFFIXES:
        raise InputImageError(output, "unknown output suffix", f"use one of {', '.join(WRITE_SUFFIXES)}")
    check_writable(output.parent)


def _tiles_per_call(text: str) -> int | str:
    value = text.strip().lower()
    if value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"--batch-size {text!r}: give a positive number of tiles or auto")
    return int(value)


def _load_onnx(model, folds, tta, overlap, threshold, fast, batch_size, threads):
    from voxseg.bundle.onnx_backend import load_onnx_predictor

    chosen = _parse_folds(folds)
    if fast and chosen is None:
        chosen = [0]
    t0 = time.perf_counter()
    predictor = load_onnx_predictor(
        model,
        folds=chosen,
        tta=tta,
        overlap=overlap,
        threshold=threshold,
        batch_size=batch_size,
        num_threads=threads,
    )
    err_console.print(
        f"model {predictor.model_id} (onnxruntime, {len(predictor.sessions)} fold(s), "
        f"tta {'on' if predictor.tta else 'off'}, overlap {predictor.overlap}) "
        f"loaded in {time.perf_counter() - t0:.1f} s"
    )
    return predictor


def _load(model, folds, config, tta, overlap, threshold, device, precision, fast, batch_size):
    from voxseg.inference.models import resolve_model

    options = {
        "tta": tta,
        "overlap": overlap,
        "threshold": threshold,
        "device": device,
        "precision": precision,
        "batch_size": batch_size,
    }
    t0 = time.perf_counter()
    predictor = resolve_model(model, folds=_parse_folds(folds), configuration=config, **options)
    if fast and folds is None:
        predictor = predictor.first_folds(1)
    err_console.print(
        f"model {predictor.model_id} ({len(predictor.networks)} fold(s), {predictor.precision}, "
        f"tta {'on' if predictor.tta else 'off'}, overlap {predictor.overlap}) "
        f"loaded in {time.perf_counter() - t0:.1f} s",
        highlight=False,
    )
    return predictor


def _predict_file(input: Path, output: Path, mask: Path | None, predictor, options: dict) -> None:
    from voxseg.inference.batch import collect_inputs, predict_case

    (case,) = collect_inputs(input, mask_dir=mask)
    with progress_bar(f"{case.case_id}: tiles") as tick:
        entry = predict_case(case, output, predictor, progress=tick, **options)
    objects = f", {entry['objects']} object(s)" if entry["objects"] is not None else ""
    console.print(f"wrote {output}{objects} in {entry['seconds']['total']:.1f} s", highlight=False)


def _predict_many(input: Path, output: Path, mask: Path | None, predictor, options: dict, file_ending, resume) -> None:
    from voxseg.inference.batch import predict_folder

    with progress_bar("cases") as tick:
        report = predict_folder(
            input, output, predictor, mask_dir=mask, file_ending=file_ending, resume=resume, progress=tick, **options
        )
    _report(report)


def _report(report) -> None:
    for case, error in report.failed:
        err_console.print(f"[red]failed:[/red] {case}: {error}", highlight=False, soft_wrap=True)
    console.print(
        f"{len(report.done)} predicted, {len(report.skipped)} up to date, {len(report.failed)} failed "
        f"({report.seconds:.1f} s); manifest {report.manifest}",
        highlight=False,
    )
    if report.failed:
        raise typer.Exit(1)
