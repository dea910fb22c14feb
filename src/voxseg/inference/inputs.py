"""Which cases to predict: an image file, a folder in nnU-Net naming or a ``.txt``/``.csv`` list.

- an image file: one case (a ``CASE_0000`` file of a multi-channel model brings its ``_0001``...
  siblings along);
- a folder: nnU-Net naming ``CASE_0000<ending>`` groups channels; other image files are
  single-channel cases named after the file;
- a ``.txt`` / ``.csv`` list: one case per line, its channel files separated by commas (relative
  paths start at the list's folder; ``#`` comments, blank lines and a header line are skipped);
- DICOM: every series found in a folder and its subfolders is one case (:mod:`voxseg.inference.dicom_inputs`);
  a list line may name a series folder.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path

from voxseg.dataset.layout import CHANNEL_RE
from voxseg.errors import InputImageError
from voxseg.inference.case import CaseInput
from voxseg.io import image_suffix, is_image_file

__all__ = ["CaseInput", "Selection", "collect_inputs", "select_inputs", "output_ending", "LIST_SUFFIXES"]

LIST_SUFFIXES = (".txt", ".csv")
_LOSSY_OR_READONLY = {".jpg": ".png", ".jpeg": ".png", ".dcm": ".nii.gz"}


@dataclass(frozen=True)
class Selection:
    """The cases an input names, and the DICOM series left out (with why)."""

    cases: list[CaseInput]
    skipped: list[dict[str, object]] = field(default_factory=list)


def _case_name(path: Path) -> tuple[str, int | None]:
    """(case id, channel index or None) of an image file name."""
    stem = path.name[: len(path.name) - len(image_suffix(path))] if image_suffix(path) else path.stem
    m = CHANNEL_RE.match(stem)
    return (m["case"], int(m["channel"])) if m else (stem, None)


def _from_folder(folder: Path, file_ending: str | None) -> list[CaseInput]:
    groups: dict[str, dict[int, Path]] = {}
    for f in sorted(folder.iterdir()):
        if not is_image_file(f) or (file_ending and not f.name.endswith(file_ending)) or image_suffix(f) == ".dcm":
            continue  # DICOM files are grouped into series by voxseg.inference.dicom_inputs
        case, channel = _case_name(f)
        if channel is None:
            case, channel = f"{case}", -1
        if channel in groups.setdefault(case, {}):
            raise InputImageError(f, f"case {case!r} has two files for channel {channel}", "rename one of them")
        groups[case][channel] = f
    cases = []
    for case, files in groups.items():
        if -1 in files and len(files) > 1:
            raise InputImageError(folder, f"case {case!r} mixes a plain file and _XXXX channel files", "rename one")
        cases.append(CaseInput(case, tuple(files[k] for k in sorted(files))))
    return cases


def _from_file(path: Path) -> CaseInput:
    case, channel = _case_name(path)
    if channel != 0:
        return CaseInput(case if channel is None else f"{case}_{channel:04d}", (path,))
    suffix = image_suffix(path)
    files = [path]
    k = 1
    while (path.parent / f"{case}_{k:04d}{suffix}").is_file():
        files.append(path.parent / f"{case}_{k:04d}{suffix}")
        k += 1
    return CaseInput(case, tuple(files))


def _from_list(path: Path, series: str | None, skipped: list[dict[str, object]]) -> list[CaseInput]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputImageError(path, f"cannot read the list of inputs ({exc})") from None
    cases, seen = [], set()
    for number, row in enumerate(csv.reader(line for line in text.splitlines() if not line.lstrip().startswith("#"))):
        cells = [c.strip() for c in row if c.strip()]
        if not cells:
            continue
        files = [Path(c).expanduser() if Path(c).expanduser().is_absolute() else path.parent / c for c in cells]
        if number == 0 and image_suffix(files[0]) not in _known_suffixes() and not files[0].is_dir():
            continue  # a header line
        if files[0].is_dir():  # a DICOM series folder (or a folder of them)
            found = dicom_cases(files[0], series=series, skipped=skipped)
            cases.extend(c for c in found if c.case_id not in seen)
            seen.update(c.case_id for c in found)
            continue
        case, _ = _case_name(files[0])
        if case in seen:
            raise InputImageError(path, f"case {case!r} is listed twice", "list each case once")
        seen.add(case)
        cases.append(CaseInput(case, tuple(files)))
    return cases


def dicom_cases(folder: Path, *, series: str | None, skipped: list[dict[str, object]]) -> list[CaseInput]:
    from voxseg.inference.dicom_inputs import dicom_cases as find

    return find(folder, series=series, skipped=skipped)


def _known_suffixes() -> tuple[str, ...]:
    from voxseg.io import READ_SUFFIXES

    return READ_SUFFIXES


def _find_mask(mask_dir: Path, case_id: str) -> Path | None:
    for f in sorted(mask_dir.iterdir()):
        if is_image_file(f) and _case_name(f)[0] == case_id:
            return f
    return None


def collect_inputs(
    inputs: str | Path, *, file_ending: str | None = None, mask_dir: str | Path | None = None
) -> list[CaseInput]:
    """The cases named by ``inputs`` (a file, a folder or a list file), see the module docstring.

    ``mask_dir`` is a folder holding ``CASE<suffix>`` masks (a case without one is predicted
    without a mask), or a mask file when ``inputs`` is one image file.
    """
    return select_inputs(inputs, file_ending=file_ending, mask_dir=mask_dir).cases


def select_inputs(
    inputs: str | Path,
    *,
    file_ending: str | None = None,
    mask_dir: str | Path | None = None,
    series: str | None = None,
) -> Selection:
    """:func:`collect_inputs` with DICOM series picked by ``series`` (a modality such as ``CT``, a
    SeriesDescription substring or a SeriesInstanceUID) and the series left out, with why."""
    path = Path(inputs).expanduser()
    skipped: list[dict[str, object]] = []
    if not path.exists():
        raise InputImageError(path, "input not found", "give an image file, a folder of images or a .txt/.csv list")
    if path.is_dir():
        cases = _from_folder(path, file_ending)
        if file_ending in (None, ".dcm"):
            cases += dicom_cases(path, series=series, skipped=skipped)
        if not cases:
            ending = f" ending in {file_ending}" if file_ending else ""
            why = f" ({len(skipped)} DICOM series skipped: {_reasons(skipped)})" if skipped else ""
            raise InputImageError(
                path, f"no image files{ending} in this folder{why}", "check the folder, --file-ending and --series"
            )
    elif path.suffix.lower() in LIST_SUFFIXES:
        cases = _from_list(path, series, skipped)
        if not cases:
            raise InputImageError(path, "the list names no image files", "one case per line: CHANNEL0[,CHANNEL1...]")
    else:
        cases = [_from_file(path)]
    return Selection(_with_masks(cases, mask_dir), skipped)


def _reasons(skipped: list[dict[str, object]]) -> str:
    listed = "; ".join(f"{s['modality'] or '?'} {s['reason']}" for s in skipped[:3])
    return listed + ("; ..." if len(skipped) > 3 else "")


def _with_masks(cases: list[CaseInput], mask_dir: str | Path | None) -> list[CaseInput]:
    if mask_dir is None:
        return cases
    masks = Path(mask_dir).expanduser()
    if masks.is_file():
        if len(cases) != 1:
            raise InputImageError(masks, "a mask file fits a single input image", "give a folder of CASE masks")
        return [replace(cases[0], mask=masks)]
    if not masks.is_dir():
        raise InputImageError(masks, "mask file or folder not found", "check the path given with -b/--mask")
    return [replace(c, mask=_find_mask(masks, c.case_id)) for c in cases]


def output_ending(case: CaseInput, file_ending: str | None = None) -> str:
    """``file_ending`` or the first input's suffix (JPEG -> .png, DICOM -> .nii.gz)."""
    if file_ending:
        return file_ending
    suffix = ".nii.gz" if case.series_uid is not None else image_suffix(case.images[0]) or ".nii.gz"
    return _LOSSY_OR_READONLY.get(suffix, suffix)
