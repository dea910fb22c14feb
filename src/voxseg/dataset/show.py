"""Overview PNGs of dataset cases and image files (thin wrappers over voxseg.io.pictures)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from voxseg.dataset.layout import Case, DatasetSpec, read_dataset
from voxseg.errors import ConfigError
from voxseg.io import image_suffix, read_image
from voxseg.io.pictures import overview_png

__all__ = ["show_case", "show_dataset_cases", "show_image"]


def show_case(case: Case, spec: DatasetSpec, path: str | Path) -> Path:
    """Write the overview PNG of one case (all channels, label on the first) to ``path``."""
    images = [read_image(p) for p in case.images]
    label = read_image(case.label) if case.label is not None else None
    names = {v: k for k, v in spec.labels.items()}
    chans = ", ".join(f"{k}:{v}" for k, v in sorted(spec.channel_names.items()))
    return overview_png(
        images, label, path, title=f"{case.case_id}  [{chans}]", label_names=names, ignore_label=spec.ignore_label
    )


def show_dataset_cases(root: str | Path, case_ids: Sequence[str] | None, output: str | Path | None) -> list[Path]:
    """Overview PNGs for ``case_ids`` (default: the first case) of the dataset at ``root``.

    With one case, ``output`` is the PNG path (default ``CASE.png`` in the current folder);
    with several it is a folder (default the current folder).
    """
    ds = read_dataset(root)
    cases = [*ds.training, *ds.test]
    if not cases:
        raise ConfigError(f"{root}: the dataset has no cases to show")
    chosen = [ds.case(c) for c in case_ids] if case_ids else cases[:1]
    if len(chosen) == 1 and output is not None and Path(output).suffix.lower() == ".png":
        return [show_case(chosen[0], ds.spec, output)]
    folder = Path(output) if output is not None else Path.cwd()
    return [show_case(c, ds.spec, folder / f"{c.case_id}.png") for c in chosen]


def show_image(image: str | Path, label: str | Path | None, output: str | Path | None) -> Path:
    """Overview PNG of one image file (and optional label); default ``NAME.png`` here."""
    image = Path(image)
    img = read_image(image)
    lab = read_image(label) if label is not None else None
    if output is None:
        suffix = image_suffix(image)
        output = Path.cwd() / f"{image.name[: -len(suffix)] if suffix else image.name}.png"
    return overview_png([img], lab, output, title=image.name)
