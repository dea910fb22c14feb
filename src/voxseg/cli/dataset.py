"""``voxseg dataset ...``: make phantoms, verify, import, convert, show, extract slices, crop, pseudo-label."""

from __future__ import annotations

from pathlib import Path

import typer

from voxseg.cli._common import console, err_console, parse_key_values, parse_size, progress_bar
from voxseg.errors import ConfigError, VoxsegError
from voxseg.io.safe_json import loads_json, read_json

app = typer.Typer(no_args_is_help=True, help="Make, check, import, convert and look at datasets (nnU-Net v2 layout).")


class VerifyFailed(VoxsegError):
    """verify found errors (already printed)."""


@app.command()
def phantom(
    name: str = typer.Argument(None, help="Phantom name (see --list)."),
    out_dir: Path = typer.Argument(None, help="Output dataset folder."),
    cases: int = typer.Option(None, "--cases", "-n", help="Number of cases (default: the phantom's default)."),
    seed: int = typer.Option(0, "--seed", "-s", help="Random seed; case i depends only on (seed, i)."),
    size: str = typer.Option(None, "--size", help="Shape: one integer for all axes or e.g. 48,96,96."),
    option: list[str] = typer.Option(None, "--option", "-O", help="Phantom option KEY=VALUE (repeatable)."),
    file_ending: str = typer.Option(".nii.gz", "--file-ending", help="Image file suffix."),
    list_: bool = typer.Option(False, "--list", help="List the phantoms and their options, then exit."),
) -> None:
    """Write a deterministic synthetic dataset (embedded demo data) in nnU-Net v2 layout."""
    from voxseg.dataset.phantoms import PHANTOMS, make_phantom

    if list_:
        for n in PHANTOMS.names():
            spec = PHANTOMS.get(n)
            console.print(
                f"[bold]{n}[/bold] ({spec.ndim}D, default shape {spec.default_shape}, "
                f"{spec.default_cases} cases): {spec.description}"
            )
            for key, (default, text) in spec.options.items():
                console.print(f"    --option {key}=... (default {default}): {text}")
        return
    if name is None or out_dir is None:
        raise typer.BadParameter("give a phantom NAME and an OUT_DIR (or --list)")
    if (out_dir / "dataset.json").exists():
        raise ConfigError(f"{out_dir}: already holds a dataset (choose another folder or delete it)")
    with progress_bar(f"phantom {name}") as update:
        make_phantom(
            name,
            out_dir,
            cases=cases,
            seed=seed,
            size=parse_size(size),
            options=parse_key_values(option),
            file_ending=file_ending,
            progress=update,
        )
    console.print(f"wrote {name} phantom to {out_dir}")


@app.command()
def verify(
    path: Path = typer.Argument(..., help="Dataset folder."),
    strict: bool = typer.Option(False, "--strict", help="Fail on warnings too."),
    workers: int = typer.Option(2, "--workers", "-j", help="Threads reading files."),
) -> None:
    """Check a dataset and list every problem; exit 1 if there are errors."""
    from voxseg.dataset import errors_only, verify_dataset

    with progress_bar("verifying") as update:
        problems = verify_dataset(path, num_workers=workers, progress=update)
    errors = errors_only(problems)
    for p in problems:
        style = "red" if p.severity == "error" else "yellow"
        err_console.print(f"[{style}]{p.severity}[/{style}]: {p.path}: {p.message}", highlight=False, soft_wrap=True)
    warnings = len(problems) - len(errors)
    if errors or (strict and warnings):
        raise VerifyFailed(f"{path}: {len(errors)} error(s), {warnings} warning(s)")
    console.print(f"{path}: OK ({warnings} warning(s))")


@app.command()
def convert(
    src: Path = typer.Argument(..., help="An MSD task (TaskXX_Name) or nnU-Net v2 dataset folder."),
    out_dir: Path = typer.Argument(..., help="Output folder (nnU-Net v2 layout)."),
    file_ending: str = typer.Option(".nii.gz", "--file-ending", help="Suffix of the written files."),
) -> None:
    """Convert an MSD task (4D images split into channels) or re-encode an nnU-Net v2 dataset."""
    from voxseg.dataset import convert_dataset

    with progress_bar("converting") as update:
        convert_dataset(src, out_dir, file_ending=file_ending, progress=update)
    console.print(f"wrote {out_dir}")


@app.command("import")
def import_(
    source: Path = typer.Argument(
        ..., help="Folder of images (then MASKS), a folder with images/ and masks/, or a .csv/.tsv of pairs."
    ),
    masks: Path = typer.Argument(None, help="Folder of masks, paired with the images by name."),
    output: Path = typer.Option(..., "--output", "-o", help="New dataset folder (nnU-Net v2 layout)."),
    labels: str = typer.Option(None, "--labels", help='Label names: \'{"1":"liver","2":"tumour"}\' or a .json file.'),
    channels: str = typer.Option(None, "--channels", help="Channel names, comma-separated: CT or T1,T2 (CT: CT norm)."),
    name: str = typer.Option(None, "--name", help="Dataset name in dataset.json (default: the output folder's)."),
    file_ending: str = typer.Option(".nii.gz", "--file-ending", help="Suffix of the written files."),
    fix_geometry: bool = typer.Option(
        False, "--fix-geometry", help="Copy the image's header onto a mask of the same shape whose header differs."
    ),
    tolerance: float = typer.Option(1e-4, "--tolerance", help="Spacing/origin agreement, in mm."),
    unlabelled_to_test: bool = typer.Option(
        False, "--unlabelled-to-test", help="Put images without a mask in imagesTs (refused otherwise)."
    ),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Import the good cases when some are refused."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
    instances: str = typer.Option(
        None,
        "--instances",
        metavar="NAME",
        help="Masks hold one id per object of class NAME (e.g. nucleus): trained to split touching objects.",
    ),
) -> None:
    """Make a dataset from a folder of images and a folder of masks (any format), or a CSV of pairs."""
    from voxseg.dataset.importer import ImportRefused, import_dataset

    names = _channel_names(channels)
    try:
        with progress_bar("importing") as update:
            report = import_dataset(
                source,
                masks,
                out=output,
                labels=labels,
                channels=names,
                name=name,
                file_ending=file_ending,
                fix_geometry=fix_geometry,
                tolerance=tolerance,
                unlabelled_to_test=unlabelled_to_test,
                skip_bad=skip_bad,
                overwrite=overwrite,
                progress=update,
                instances=instances,
            )
    except ImportRefused as exc:
        _print_import(exc.report)
        raise
    if report.up_to_date:
        console.print(f"{output}: already holds this import (inputs unchanged): nothing to do", soft_wrap=True)
        return
    _print_import(report)
    train = sum(c.status == "training" for c in report.cases)
    test = sum(c.status == "test" for c in report.cases)
    console.print(
        f"wrote {output}: {train} training, {test} test case(s), {len(report.refused)} refused; "
        f"labels {report.labels} (next: voxseg dataset verify {output})",
        soft_wrap=True,
        highlight=False,
    )


def _channel_names(text: str | None) -> list[str] | None:
    if text is None:
        return None

    stripped = text.strip()
    if stripped.startswith("["):
        values = loads_json(stripped, source="--channels", error=ConfigError, fix='give e.g. \'["T1", "T2"]\'')
    else:
        values = stripped.split(",")
    names = [str(v).strip() for v in values]
    if not names or not all(names):
        raise ConfigError(f"--channels {text!r}: expected names like CT or T1,T2")
    return names


def _print_import(report) -> None:
    from rich.table import Table

    table = Table("case", "status", "channels", "shape", "spacing mm", "mask values", title="import")
    for c in report.cases:
        style = {"refused": "red", "test": "yellow"}.get(c.status, "")
        table.add_row(
            c.case_id,
            f"[{style}]{c.status}[/{style}]" if style else c.status,
            str(c.channels or "-"),
            "x".join(map(str, c.shape)) or "-",
            "x".join(f"{v:.3g}" for v in c.spacing) or "-",
            ",".join(map(str, c.values)) or "-",
        )
    console.print(table)
    for p in report.problems:
        style = "red" if p.severity == "error" else "yellow"
        err_console.print(f"[{style}]{p.severity}[/{style}]: {p.path}: {p.message}", highlight=False, soft_wrap=True)


@app.command()
def show(
    path: Path = typer.Argument(..., help="A dataset folder or an image file."),
    case: list[str] = typer.Option(None, "--case", "-c", help="Case id(s) to show (default: the first case)."),
    label: Path = typer.Option(None, "--label", "-l", help="Label file, when PATH is an image file."),
    output: Path = typer.Option(None, "--output", "-o", help="PNG file (one case) or folder (several)."),
) -> None:
    """Write a PNG of the slices through the labels (mid-slices if empty), labels overlaid."""
    from voxseg.dataset.show import show_dataset_cases, show_image

    if path.is_dir() and (path / "dataset.json").exists():
        written = show_dataset_cases(path, case or None, output)
    else:
        written = [show_image(path, label, output)]
    for w in written:
        console.print(f"wrote {w}")


@app.command("extract-slices")
def extract_slices(
    data: Path = typer.Argument(..., help="A sparsely annotated 3D dataset folder (only read)."),
    out_dir: Path = typer.Argument(..., help="New 2D dataset folder."),
    axis: int = typer.Option(0, "--axis", help="Array axis to slice along: 0 = z (axial), 1 = y, 2 = x."),
    all_: bool = typer.Option(False, "--all", help="Every slice, not only the annotated ones."),
    ignore_label: int = typer.Option(None, "--ignore-label", help="Unannotated label value (default: dataset.json)."),
    file_ending: str = typer.Option(None, "--file-ending", help="Suffix of the 2D files (default: the source's)."),
) -> None:
    """Write the annotated slices of a 3D dataset as a 2D dataset (cases CASE_zNNN, slices.json)."""

    from voxseg.dataset.slices import SLICES_JSON
    from voxseg.dataset.slices import extract_slices as run

    with progress_bar("extracting slices") as update:
        run(
            data,
            out_dir,
            axis=axis,
            only_annotated=not all_,
            ignore_label=ignore_label,
            file_ending=file_ending,
            progress=update,
        )
    record = read_json(out_dir / SLICES_JSON)
    console.print(f"wrote {len(record['slices'])} slices of {len(record['cases'])} cases to {out_dir}", soft_wrap=True)


@app.command()
def crop(
    data: Path = typer.Argument(..., help="Dataset folder (only read)."),
    out_dir: Path = typer.Argument(..., help="New dataset folder."),
    box: str = typer.Option(None, "--box", help="Index ranges in array order z,y,x, e.g. 10:50,:,: or 5:-5,:,:."),
    to_label: bool = typer.Option(False, "--to-label", help="Crop to the label's bounding box (ignore excluded)."),
    margin: str = typer.Option("0", "--margin", help="Around the label's box: voxels (5) or mm (2mm), or per axis."),
    skip_empty: bool = typer.Option(False, "--skip-empty", help="With --to-label, leave out cases with no label."),
) -> None:
    """Crop images and labels to a box and/or the label's bounding box; geometry stays in place."""
    from voxseg.dataset.crop import crop_dataset

    with progress_bar("cropping") as update:
        crop_dataset(
            data,
            out_dir,
            box=box,
            to_label=to_label,
            margin=margin,
            empty="skip" if skip_empty else "error",
            progress=update,
        )
    console.print(f"wrote {out_dir}")


@app.command("pseudo-labels")
def pseudo_labels(
    data: Path = typer.Argument(..., help="The sparsely annotated dataset folder (only read)."),
    pred_dir: Path = typer.Argument(..., help="Folder of predicted labels named like the cases (CASE.nii.gz)."),
    out_dir: Path = typer.Argument(..., help="New, densely labelled dataset folder."),
    predictions_only: bool = typer.Option(
        False, "--predictions-only", help="Use the predictions alone (do not keep the annotated voxels)."
    ),
    min_dice: float = typer.Option(
        None, "--min-dice", help="Leave out cases whose prediction scores a lower Dice on the annotated voxels."
    ),
) -> None:
    """Make a dense dataset: predicted labels, with every annotated voxel kept from the annotation."""
    from rich.table import Table

    from voxseg.dataset.pseudo import merge_pseudo_labels

    with progress_bar("merging pseudo-labels") as update:
        report = merge_pseudo_labels(
            data, pred_dir, out_dir, keep_annotated=not predictions_only, min_dice=min_dice, progress=update
        )
    table = Table("case", "manual", "predicted", "agreement", "Dice", caption="prediction vs annotation")
    for case_id, c in [*report.cases.items(), *report.dropped.items()]:
        scores = ["-" if v is None else f"{v:.3f}" for v in (c.agreement, c.dice)]
        name = f"{case_id} (left out)" if case_id in report.dropped else case_id
        table.add_row(name, str(c.manual), str(c.predicted), *scores)
    console.print(table)
    console.print(f"wrote {out_dir} ({report.manual} manual, {report.predicted} predicted voxels)", soft_wrap=True)
