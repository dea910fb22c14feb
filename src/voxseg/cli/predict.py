"""``voxseg predict``: segment an image file, a folder or a list of files with a trained model."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from voxseg.cli._common import console, err_console, progress_bar
from voxseg.errors import ConfigError, InputImageError


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
    input: Path = typer.Option(
        ..., "--input", "-i", help="Image file, folder (CASE_0000 channels or DICOM series) or .txt/.csv list."
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Output file (one image or DICOM series; .dcm: a DICOM SEG) or folder."
    ),
    model: str = typer.Option(..., "--model", "-m", help="Training work folder (or model bundle)."),
    mask: Path = typer.Option(None, "--mask", "-b", help="Mask file (file input) or folder of CASE masks."),
    folds: str = typer.Option(None, "--folds", help="Folds to ensemble, e.g. 0,1 (default: all trained)."),
    config: str = typer.Option(None, "--config", "-c", help="Plan configuration (default: the plan's)."),
    tta: bool = typer.Option(None, "--tta/--no-tta", help="Mirror test-time augmentation (default on)."),
    tta_confident: bool = typer.Option(
        False, "--tta-confident", help="TTA: skip the other mirrorings of tiles confident everywhere (p >= 0.95)."
    ),
    skip_background: bool = typer.Option(
        False, "--skip-background", help="Do not run tiles of pure background (CT air; constant outside the body)."
    ),
    overlap: float = typer.Option(None, "--overlap", help="Sliding-window overlap in [0, 1) (default 0.5)."),
    threshold: float = typer.Option(None, "--threshold", help="Binary models: foreground where P > T (default 0.5)."),
    probabilities: bool = typer.Option(False, "--probabilities", help="Also write CASE_probabilities.npz (float16)."),
    instances: bool = typer.Option(False, "--instances", help="Write instance ids and CASE_objects.csv."),
    min_size: int = typer.Option(None, "--min-size", min=0, help="Drop objects under N voxels."),
    min_volume: float = typer.Option(None, "--min-volume", min=0.0, help="Drop objects under this volume (mm³)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    precision: str = typer.Option(
        "auto", "--precision", help="auto (bf16 where supported), bf16 or fp32; int8 with --backend openvino."
    ),
    fast: bool = typer.Option(False, "--fast", help="No TTA, overlap 0.25, first fold only (see docs/inference.md)."),
    threads: int = typer.Option(None, "--threads", min=1, help="CPU threads (default: one per physical core)."),
    backend: str = typer.Option(
        "torch",
        "--backend",
        help="torch, onnxruntime, openvino, or auto (the faster of the last two here, calibrated once and cached); "
        "all but torch need a bundle exported with --onnx and never import torch.",
    ),
    batch_size: str = typer.Option(
        "auto", "--batch-size", help="Tiles per network call, or auto (as many as fit 262,144 voxels, 1-8)."
    ),
    file_ending: str = typer.Option(None, "--file-ending", help="Input files to take from a folder; output suffix."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Skip cases already predicted (folder input)."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace files in the output folder that voxseg did not write (folder input)."
    ),
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray (pip install 'voxseg[ray]')."),
    address: str = typer.Option(None, "--address", help="Ray cluster: auto or ray://HOST:PORT (default: a local Ray)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Ray workers, each loading the model once."),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", min=0.0, help="GPUs per Ray worker."),
    points: Path = typer.Option(None, "--points", help="Interactive models: points.json or napari CSV."),
    points_space: str = typer.Option(None, "--points-space", help="Points in voxel or world (mm) coordinates."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the pre-flight check (work, time, memory) and exit."),
    force: bool = typer.Option(False, "--force", help="Run even beyond the pre-flight limits (time, memory)."),
    max_minutes: float = typer.Option(30.0, "--max-minutes", min=0.0, help="Refuse a case estimated longer (min)."),
    max_memory: float = typer.Option(
        None, "--max-memory", min=0.0, help="Refuse above this peak (GB; default: free RAM)."
    ),
    series: str = typer.Option(
        None, "--series", help="DICOM: series to predict (modality e.g. CT, description substring or UID)."
    ),
    output_format: str = typer.Option(
        None, "--output-format", help="dicom-seg: write CASE.dcm DICOM SEG objects (DICOM inputs)."
    ),
) -> None:
    """Predict label maps; a folder is done case by case with a predictions.json manifest."""
    if min_size is not None and min_volume is not None:
        raise ConfigError("give --min-size or --min-volume, not both")
    _check_output_format(output_format, input, output)
    opts = _options(fast, tta, overlap, threshold, folds, config, device, precision, batch_size, threads, backend)
    opts = opts.replace(tta_confident=True) if tta_confident else opts
    opts = opts.replace(skip_background=True) if skip_background else opts
    if opts.backend != "torch" and engine != "local":
        raise ConfigError(f"--backend {opts.backend} works with the local engine")
    if points is not None:  # interactive model: one image, six extreme points (docs/interactive.md)
        from voxseg.cli.interactive import predict_with_points

        if opts.backend == "torch":
            _configure_torch(threads)
        _check_file_output(output)
        return predict_with_points(input, output, _load(model, opts), points, points_space)
    single = _is_single(input, output)
    dicom = {"series": series, "output_format": output_format}
    _check_engine(engine, single, dicom)
    outputs = {"instances": instances, "probabilities": probabilities}
    _refuse_unsafe_outputs(input, output, mask, single, file_ending, outputs, overwrite, dicom)
    if not single:
        from voxseg.inference.batch import check_writable

        check_writable(output)
    options = {"instances": instances, "min_size": min_size, "min_volume": min_volume, "probabilities": probabilities}
    limits = {"max_minutes": max_minutes, "max_memory_gb": max_memory, "force": force}
    _preflight(input, mask, file_ending, series, model, opts, limits, probabilities)
    if dry_run:
        return
    if opts.backend == "torch":  # the onnxruntime backend never imports torch; these settings do
        _configure_torch(threads)
    if engine != "local":
        ray = {"address": address, "workers": workers, "gpus_per_worker": gpus_per_worker}
        return _predict_ray(input, output, model, opts, ray, mask, file_ending, resume, overwrite, options)
    predictor = _load(model, opts)
    _first_use_notice(predictor)
    predictor.check_model()  # before any case: every one would fail alike
    if single:
        _predict_file(input, output, mask, predictor, options, series)
    else:
        _predict_many(input, output, mask, predictor, {**options, "overwrite": overwrite}, file_ending, resume, dicom)


def _options(fast, tta, overlap, threshold, folds, config, device, precision, batch_size, threads, backend):
    """The one PredictOptions of this command (``--fast`` is the preset; explicit flags win)."""
    from voxseg.inference.options import PredictOptions

    given = {
        "tta": tta,
        "overlap": overlap,
        "threshold": threshold,
        "folds": _parse_folds(folds),
        "configuration": config,
        "device": device,
        "precision": precision,
        "batch_size": _tiles_per_call(batch_size),
        "num_threads": threads,
        "backend": backend,
    }
    if fast:
        return PredictOptions.fast(**given)
    return PredictOptions(**{k: v for k, v in given.items() if v is not None or k == "threshold"})


def _is_single(input: Path, output: Path) -> bool:
    """One case to one file (an image, or one DICOM series folder to one file), else a batch."""
    from voxseg.inference.inputs import LIST_SUFFIXES

    single = input.is_file() and input.suffix.lower() not in LIST_SUFFIXES
    single = single or (input.is_dir() and _is_file_output(output))
    if single:
        _check_file_output(output)
    elif not input.exists():
        raise InputImageError(input, "input not found", "give an image file, a folder or a .txt/.csv list")
    return single


def _predict_ray(input, output, model, opts, ray: dict, mask, file_ending, resume, overwrite, options: dict) -> None:
    from voxseg.distributed.ray_engine import predict_folder_ray

    with progress_bar("cases") as tick:
        report = predict_folder_ray(
            input,
            output,
            model,
            options=opts,
            **ray,
            mask_dir=mask,
            file_ending=file_ending,
            resume=resume,
            overwrite=overwrite,
            progress=tick,
            preflight=False,  # done above, before Ray starts
            **options,
        )
    _report(report)


def _check_engine(engine: str, single: bool, dicom: dict) -> None:
    """Usage errors of ``--engine`` (exit 2), before anything is read."""
    if engine not in ("local", "ray"):
        raise ConfigError(f"--engine {engine!r}: choose local or ray")
    if engine == "ray" and single:
        raise ConfigError("--engine ray predicts a folder or a .txt/.csv list; give -i a folder or a list")
    if engine == "ray" and (dicom["series"] is not None or dicom["output_format"] is not None):
        raise ConfigError("--series and --output-format work with the local engine only (not yet with Ray)")


def _configure_torch(threads: int | None) -> None:
    from voxseg.inference.runtime import configure_allocator, configure_threads

    configure_allocator()
    configure_threads(threads)


def _preflight(input, mask, file_ending, series, model, opts, limits, probabilities: bool) -> None:
    """Headers only, before the model loads: print the work and the warnings, refuse beyond the limits."""
    from voxseg.inference.preflight import PreflightLimits
    from voxseg.models.api import preflight_files

    report = preflight_files(
        input,
        model,
        opts,
        mask_dir=mask,
        file_ending=file_ending,
        series=series,
        limits=PreflightLimits(**limits),
        measure=opts.backend == "torch",
        probabilities=probabilities,
    )
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    for case, problem in report.invalid:
        err_console.print(f"[yellow]warning:[/yellow] {case} will fail: {problem}", highlight=False, soft_wrap=True)
    err_console.print(f"pre-flight: {report.summary()}", highlight=False, soft_wrap=True)
    report.check()


def _refuse_unsafe_outputs(input, output, mask, single, file_ending, outputs: dict, overwrite, dicom: dict) -> None:
    """Before the model loads and before anything is written: no output may be an input, lie in an
    input folder, or (folder input) replace a file voxseg did not write (docs/reliability.md)."""
    from voxseg.inference.inputs import select_inputs
    from voxseg.inference.outputs import check_batch_outputs, check_case_outputs

    selection = select_inputs(input, mask_dir=mask, file_ending=None if single else file_ending, series=dicom["series"])
    cases = selection.cases
    if single:
        if len(cases) != 1:
            raise InputImageError(
                input,
                f"holds {len(cases)} cases (DICOM series) but -o {output.name} is one file",
                "give -o a folder, or pick one series with --series",
            )
        check_case_outputs(cases[0], output, **outputs)
        return
    check_batch_outputs(
        input,
        cases,
        output,
        mask_dir=mask,
        file_ending=".dcm" if dicom["output_format"] == "dicom-seg" else file_ending,
        overwrite=overwrite,
        **outputs,
    )


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
    from voxseg.io import WRITE_SUFFIXES

    if output.is_dir():
        raise InputImageError(output, "output path is a folder", "give an output file such as out.nii.gz")
    if not _is_file_output(output):
        raise InputImageError(output, "unknown output suffix", f"use one of {', '.join(WRITE_SUFFIXES)} or .dcm")
    check_writable(output.parent)


def _check_output_format(output_format: str | None, input: Path, output: Path) -> None:
    from voxseg.inference.dicom_output import check_output_format, is_seg_output

    check_output_format(output_format)
    if output_format == "dicom-seg" and _is_file_output(output) and not is_seg_output(output):
        raise ConfigError(f"--output-format dicom-seg writes .dcm files; -o {output.name} is not one")


def _is_file_output(output: Path) -> bool:
    from voxseg.io import WRITE_SUFFIXES, image_suffix

    return not output.is_dir() and image_suffix(output) in (*WRITE_SUFFIXES, ".dcm")


def _tiles_per_call(text: str) -> int | str:
    value = text.strip().lower()
    if value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"--batch-size {text!r}: give a positive number of tiles or auto")
    return int(value)


def _load(model, opts):
    """The model, loaded once, with one line saying what was loaded and how long it took."""
    from voxseg.models.resolve import resolve_model

    t0 = time.perf_counter()
    predictor = resolve_model(model, opts)
    folds = len(predictor.folds) if predictor.folds is not None else "?"
    err_console.print(
        f"model {predictor.model_id} ({predictor.backend}, {folds} fold(s), {predictor.precision}, "
        f"tta {'on' if predictor.tta else 'off'}, overlap {predictor.overlap}) "
        f"loaded in {time.perf_counter() - t0:.1f} s",
        highlight=False,
    )
    return predictor


def _predict_file(input: Path, output: Path, mask: Path | None, predictor, options: dict, series) -> None:
    from voxseg.inference.batch import predict_case
    from voxseg.inference.inputs import select_inputs

    selection = select_inputs(input, mask_dir=mask, series=series)
    _print_skipped(selection.skipped)
    if len(selection.cases) != 1:
        raise InputImageError(
            input,
            f"holds {len(selection.cases)} cases (DICOM series) but -o {output.name} is one file",
            "give -o a folder, or pick one series with --series",
        )
    (case,) = selection.cases
    with progress_bar(f"{case.case_id}: tiles") as tick:
        entry = predict_case(case, output, predictor, progress=tick, **options)
    objects = f", {entry['objects']} object(s)" if entry["objects"] is not None else ""
    console.print(f"wrote {output}{objects} in {entry['seconds']['total']:.1f} s", highlight=False)


def _predict_many(input, output, mask, predictor, options: dict, file_ending, resume, dicom: dict) -> None:
    from voxseg.inference.batch import predict_folder

    with progress_bar("cases") as tick:
        report = predict_folder(
            input,
            output,
            predictor,
            mask_dir=mask,
            file_ending=file_ending,
            resume=resume,
            progress=tick,
            **options,
            **dicom,
        )
    _report(report)


def _print_skipped(skipped) -> None:
    for s in skipped:
        what = f"{s['modality'] or '?'}" + (f" {s['description']!r}" if s["description"] else "")
        err_console.print(f"skipped DICOM series {what} in {s['folder']}: {s['reason']}", highlight=False)


def _report(report) -> None:
    _print_skipped(getattr(report, "skipped_series", ()))
    for case, error in report.failed:
        err_console.print(f"[red]failed:[/red] {case}: {error}", highlight=False, soft_wrap=True)
    console.print(
        f"{len(report.done)} predicted, {len(report.skipped)} up to date, {len(report.failed)} failed "
        f"({report.seconds:.1f} s); manifest {report.manifest}",
        highlight=False,
    )
    if report.failed:
        raise typer.Exit(1)
