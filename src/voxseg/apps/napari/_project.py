"""The "Annotate & train" project folder: corrected cases saved in the nnU-Net layout.

```
PROJECT/dataset.json        channel and label names ("ignore" added once a case is sparse)
PROJECT/imagesTr/CASE_0000.nii.gz, PROJECT/labelsTr/CASE.nii.gz   with the image's spacing
PROJECT/annotations.json    per case: its source layer and the annotated slices (None: dense)
```

A sparse case keeps the labels of its annotated slices (axis 0) only; every other voxel gets the
ignore label, which training leaves out of the loss. No Qt or napari import here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.errors import InputImageError
from voxseg.io import Volume, write_image, write_json_atomic
from voxseg.io.safe_json import read_json

__all__ = ["AnnotationProject", "edited_slices", "parse_slices"]

_ENDING = ".nii.gz"


def edited_slices(labels: np.ndarray, reference: np.ndarray | None) -> list[int]:
    """Slices (axis 0) the user worked on: those differing from the model's ``reference`` mask,
    or, without one, those holding any label."""
    labels = np.asarray(labels)
    changed = labels != 0 if reference is None else labels != np.asarray(reference)
    axes = tuple(range(1, labels.ndim))
    return [int(i) for i in np.flatnonzero(changed.any(axis=axes))]


def parse_slices(text: str, depth: int) -> list[int] | None:
    """``"3, 10-12"`` -> ``[3, 10, 11, 12]``; ``""`` -> None (dense: every slice annotated).

    Raises
    ------
    InputImageError
        A malformed list or a slice outside ``0..depth-1``.
    """
    if not text.strip():
        return None
    out: set[int] = set()
    for part in re.split(r"[,\s]+", text.strip()):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if m is None:
            what = f"annotated slices {text!r}: {part!r} is not a slice or a range"
            raise InputImageError(None, what, "e.g. 3, 10-12")
        lo, hi = int(m[1]), int(m[2] or m[1])
        out.update(range(lo, hi + 1))
    bad = [i for i in out if i >= depth]
    if bad:
        raise InputImageError(None, f"annotated slice {bad[0]} is outside 0..{depth - 1}", "list slices of the image")
    return sorted(out)


class AnnotationProject:
    """A project folder (created on the first :meth:`add`)."""

    def __init__(self, root: str | Path, *, labels: Mapping[str, int], channel: str = "image"):
        self.root = Path(root)
        self.labels = {str(k): int(v) for k, v in labels.items() if k != "ignore"}
        self.channel = channel

    @property
    def ignore_label(self) -> int:
        return max(self.labels.values()) + 1

    def _annotations(self) -> dict[str, Any]:
        path = self.root / "annotations.json"
        return dict(read_json(path)) if path.is_file() else {}

    def cases(self) -> list[str]:
        """The saved cases, in the order they were added."""
        return list(self._annotations())

    def add(
        self, image: Volume, labels: np.ndarray, *, annotated: Sequence[int] | None = None, source: str = ""
    ) -> str:
        """Save ``image`` and ``labels`` as the next case; ``annotated``: the labelled slices (None: all).

        Raises
        ------
        InputImageError
            Labels of another shape than the image, or values that are not the project's labels.
        """
        labels = np.asarray(labels)
        if labels.shape != image.shape:
            raise InputImageError(None, f"labels {labels.shape} and image {image.shape} differ in shape", "")
        known = set(self.labels.values())
        extra = sorted(set(np.unique(labels).tolist()) - known)
        if extra:
            raise InputImageError(
                None, f"labels hold value(s) {extra} that are not the model's labels {sorted(known)}", "repaint them"
            )
        seg = labels.astype(np.uint8 if self.ignore_label < 256 else np.uint16)
        if annotated is not None:
            keep = np.zeros(seg.shape[0], bool)
            keep[list(annotated)] = True
            seg[~keep] = self.ignore_label
        notes = self._annotations()
        case = f"case_{len(notes):03d}"
        while case in notes:
            case += "_"
        for folder in ("imagesTr", "labelsTr"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        geometry = {"spacing": image.spacing, "origin": image.origin, "direction": image.direction}
        write_image(image, self.root / "imagesTr" / f"{case}_0000{_ENDING}")
        write_image(Volume(seg, **geometry), self.root / "labelsTr" / f"{case}{_ENDING}")
        notes[case] = {"source": source, "annotated_slices": None if annotated is None else [int(i) for i in annotated]}
        self._write_dataset(notes)
        write_json_atomic(self.root / "annotations.json", notes)
        return case

    def _write_dataset(self, notes: Mapping[str, Any]) -> None:
        labels = dict(self.labels)
        if any(n.get("annotated_slices") is not None for n in notes.values()):
            labels["ignore"] = self.ignore_label
        write_json_atomic(
            self.root / "dataset.json",
            {
                "name": "annotations",
                "description": "cases saved by voxseg's Annotate & train widget",
                "channel_names": {"0": self.channel},
                "labels": labels,
                "numTraining": len(notes),
                "file_ending": _ENDING,
            },
        )
