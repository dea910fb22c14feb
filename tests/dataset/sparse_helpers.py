"""Helpers for the sparse-annotation tests: small spinal-cord phantoms and oblique volumes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from voxseg.dataset import DatasetSpec, DatasetWriter
from voxseg.dataset.phantoms import generate_case, make_phantom
from voxseg.io import Volume

CORD_SIZE = (24, 32, 32)
ANNOTATED = 3


def sparse_cord(root: Path, *, cases: int = 2) -> Path:
    """A spinal-cord phantom with labels on 3 axial slices per case (ignore label 3 elsewhere)."""
    return make_phantom("mouse-spinal-cord", root, cases=cases, size=CORD_SIZE, options={"annotated_slices": ANNOTATED})


def cord_truth(index: int) -> tuple[Volume, list[int]]:
    """The dense label of case ``index`` of :func:`sparse_cord` and its annotated slice indices."""
    sparse = generate_case("mouse-spinal-cord", index, size=CORD_SIZE, options={"annotated_slices": ANNOTATED})
    dense = generate_case("mouse-spinal-cord", index, size=CORD_SIZE)
    return dense.label, sorted(set(sparse.info["annotated_slices"]))


def rotation(angle: float, axes: tuple[int, int] = (1, 2)) -> np.ndarray:
    """A 3x3 rotation by ``angle`` radians in the plane of ``axes`` (an oblique direction)."""
    d = np.eye(3)
    a, b = axes
    d[a, a], d[a, b], d[b, a], d[b, b] = np.cos(angle), -np.sin(angle), np.sin(angle), np.cos(angle)
    return d


def write_volume_dataset(root: Path, images: list[list[Volume]], labels: list[Volume], *, ignore: bool = False) -> Path:
    """A dataset from given Volumes (cases ``c000``, ``c001``, ...)."""
    names = {"background": 0, "a": 1, "b": 2}
    if ignore:
        names["ignore"] = 3
    spec = DatasetSpec("vols", {k: f"MR{k}" for k in range(len(images[0]))}, names, ".nii.gz")
    with DatasetWriter(root, spec) as writer:
        for i, (imgs, lab) in enumerate(zip(images, labels, strict=True)):
            writer.add_case(f"c{i:03d}", imgs, lab)
    return root


def tree_digest(root: Path) -> str:
    """A hash of every file's name and bytes under ``root`` (to check inputs stay unmodified)."""
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()
