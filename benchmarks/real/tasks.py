"""The real-data tasks: nnU-Net layout datasets made from one real subject each.

Every training case and every test case is one random variant of the subject (:mod:`.augment`):
training cases use seeds ``TRAIN_SEED + k``, test cases ``TEST_SEED + k`` (disjoint ranges), so no
test case is a copy of a training case, but all show the same anatomy (one subject is not a population).

| task       | subject / package                    | labels                                              |
|------------|--------------------------------------|-----------------------------------------------------|
| brain      | Colin27 T1 (mricron-data)             | 1 brain (ch2bet > 0)                                |
| aal116     | Colin27 T1                            | 1..116 AAL regions                                  |
| aal20      | Colin27 T1                            | the 20 largest AAL regions (by voxels), others 0    |
| headct     | InVesalius Cranium CT                 | 1 soft tissue, 2 bone (HU >= 226)                   |
| nuclei     | stardist img2d (2D)                   | nucleus instances (``"instances": true``: one id each) |

Written with voxseg's own :class:`voxseg.dataset.layout.DatasetWriter` (imagesTr/labelsTr,
imagesTs/labelsTs). The nuclei dataset is an instance dataset (:mod:`voxseg.dataset.instances`):
its label files hold one id per nucleus, in training and in test.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from voxseg.dataset.layout import DatasetSpec, DatasetWriter
from voxseg.io import Volume

from . import augment, sources

__all__ = ["TASKS", "Task", "build", "head_labels"]

log = logging.getLogger(__name__)
TRAIN_SEED, TEST_SEED = 1_000, 900_000
VERSION = 3  # bump when a builder changes: the cache folder name holds it
SOFT_HU = (-142, sources.BONE_HU)  # InVesalius' own soft-tissue preset lower bound


@dataclass(frozen=True)
class Task:
    name: str
    dataset: str  # folder name (DatasetXXX_Name)
    source: str  # builder that makes it (several tasks share one)
    instances: bool = False


TASKS = {
    "brain": Task("brain", "Dataset901_Colin27Brain", "colin27"),
    "aal116": Task("aal116", "Dataset902_Colin27AAL116", "colin27"),
    "aal20": Task("aal20", "Dataset903_Colin27AAL20", "colin27"),
    "headct": Task("headct", "Dataset904_CraniumCT", "cranium"),
    "nuclei": Task("nuclei", "Dataset905_StardistNuclei", "nuclei", instances=True),
    # added after the four tasks, as anatomy nobody here tuned to (another species, 0.5 mm)
    "macaque20": Task("macaque20", "Dataset906_Inia19Macaque20", "inia19"),
    "macaque_hemispheres": Task("macaque_hemispheres", "Dataset907_Inia19Hemispheres", "inia19"),
}


def _seeds(cases: int, test_cases: int) -> Iterator[tuple[str, int, bool]]:
    for k in range(cases):
        yield f"case_{k:03d}", TRAIN_SEED + k, False
    for k in range(test_cases):
        yield f"test_{k:03d}", TEST_SEED + k, True


def _vol(arr: np.ndarray, spacing, dtype=None) -> Volume:
    return Volume(arr if dtype is None else arr.astype(dtype), spacing=tuple(float(s) for s in spacing))


def _build_colin27(root: Path, cases: int, test_cases: int, cache: Path, allow_pip: bool) -> None:
    subject = sources.colin27()
    sp = subject.t1.spacing
    lut20, top20 = largest_regions(subject.aal, 20)
    names20 = [subject.aal_names[v - 1] for v in top20]
    specs = {
        "brain": DatasetSpec("Colin27Brain", {0: "MRI"}, {"background": 0, "brain": 1}),
        "aal116": DatasetSpec(
            "Colin27AAL116", {0: "MRI"}, {"background": 0, **{n: i + 1 for i, n in enumerate(subject.aal_names)}}
        ),
        "aal20": DatasetSpec(
            "Colin27AAL20", {0: "MRI"}, {"background": 0, **{n: i + 1 for i, n in enumerate(names20)}}
        ),
    }
    writers = {k: DatasetWriter(root / TASKS[k].dataset, s) for k, s in specs.items()}
    t1 = subject.t1.array.astype(np.float32)
    for case_id, seed, test in _seeds(cases, test_cases):
        v = augment.draw(seed, spacing=sp)
        img, brain, aal = augment.warp([t1, subject.brain.astype(np.uint8), subject.aal], sp, v, orders=(1, 0, 0))
        img = _vol(augment.intensity(img, v, spacing=v.spacing), v.spacing)
        writers["brain"].add_case(case_id, [img], _vol(brain, v.spacing, np.uint8), test=test)
        writers["aal116"].add_case(case_id, [img], _vol(aal, v.spacing, np.int16), test=test)
        writers["aal20"].add_case(case_id, [img], _vol(lut20[aal], v.spacing, np.uint8), test=test)
        log.info("colin27 %s: spacing %s", case_id, v.spacing)
    for w in writers.values():
        w.close()


def largest_regions(regions: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A lookup table mapping the ``n`` largest region ids (by voxels) to 1..n (others to 0), and those ids."""
    counts = np.bincount(regions.ravel())
    counts[0] = 0
    top = np.sort(np.argsort(counts)[::-1][:n])
    top = top[counts[top] > 0]
    lut = np.zeros(counts.size, np.int16)
    lut[top] = np.arange(1, top.size + 1)
    return lut, top


def _build_inia19(root: Path, cases: int, test_cases: int, cache: Path, allow_pip: bool) -> None:
    """The macaque brain is about half the human one: deformations are drawn at half the millimetres.

    NeuroMaps numbers a region ``X`` in one hemisphere and ``1000 + X`` in the other (the two id ranges
    lie on either side of the midline, checked on the image), which gives the hemispheres task.
    """
    subject = sources.inia19()
    sp = subject.t1.spacing
    lut, top = largest_regions(subject.regions, 20)
    hemispheres = np.where(subject.regions >= 1000, 2, np.where(subject.regions > 0, 1, 0)).astype(np.uint8)
    specs = {
        "macaque20": DatasetSpec(
            "Inia19Macaque20", {0: "MRI"}, {"background": 0, **{f"neuromaps_{v}": i + 1 for i, v in enumerate(top)}}
        ),
        "macaque_hemispheres": DatasetSpec(
            "Inia19Hemispheres", {0: "MRI"}, {"background": 0, "ids_below_1000": 1, "ids_from_1000": 2}
        ),
    }
    writers = {k: DatasetWriter(root / TASKS[k].dataset, s) for k, s in specs.items()}
    t1 = subject.t1.array.astype(np.float32)
    for case_id, seed, test in _seeds(cases, test_cases):
        v = augment.draw(seed, spacing=sp, displacement_mm=(0.75, 2.0))
        img, regions, halves = augment.warp([t1, lut[subject.regions], hemispheres], sp, v, orders=(1, 0, 0))
        img = _vol(augment.intensity(img, v, spacing=v.spacing), v.spacing)
        writers["macaque20"].add_case(case_id, [img], _vol(regions, v.spacing, np.uint8), test=test)
        writers["macaque_hemispheres"].add_case(case_id, [img], _vol(halves, v.spacing, np.uint8), test=test)
    for w in writers.values():
        w.close()


def head_labels(ct: np.ndarray, bone: np.ndarray) -> np.ndarray:
    """0 outside, 1 soft tissue, 2 bone.

    The head is the largest connected part of HU >= -142 (the CT table and the air are outside), its
    holes filled slice by slice; soft tissue is the head where -142 <= HU < 226 (sinus air stays 0).
    """
    body = ct >= SOFT_HU[0]
    parts, n = ndimage.label(body)
    if n:
        sizes = np.bincount(parts.ravel())
        sizes[0] = 0
        body = parts == int(np.argmax(sizes))
    for z in range(body.shape[0]):
        body[z] = ndimage.binary_fill_holes(body[z])
    labels = np.zeros(ct.shape, np.uint8)
    labels[body & (ct >= SOFT_HU[0]) & (ct < SOFT_HU[1])] = 1
    labels[bone & body] = 2
    return labels


def _build_cranium(root: Path, cases: int, test_cases: int, cache: Path, allow_pip: bool) -> None:
    subject = sources.cranium(cache=cache)
    sp = subject.ct.spacing
    labels = head_labels(subject.ct.array, subject.bone)
    spec = DatasetSpec("CraniumCT", {0: "CT"}, {"background": 0, "soft_tissue": 1, "bone": 2})
    ct = subject.ct.array.astype(np.float32) + 1024.0  # warp with 0 = air outside the field
    with DatasetWriter(root / TASKS["headct"].dataset, spec) as w:
        for case_id, seed, test in _seeds(cases, test_cases):
            v = augment.draw(seed, spacing=sp, anisotropy=(1.0, 2.0), noise=0.02)
            img, lab = augment.warp([ct, labels], sp, v, orders=(1, 0))
            img = augment.intensity(img, v, spacing=v.spacing, bias=False, gamma=False) - 1024.0
            img = np.clip(np.rint(img), -1024, 3071).astype(np.int16)
            w.add_case(case_id, [_vol(img, v.spacing)], _vol(lab, v.spacing, np.uint8), test=test)


def _build_nuclei(root: Path, cases: int, test_cases: int, cache: Path, allow_pip: bool) -> None:
    """Train on variants of the left half, test on the right half cut into tiles (not augmented)."""
    subject = sources.nuclei(cache, allow_pip=allow_pip)
    img = subject.image.astype(np.float32)
    inst = subject.instances.astype(np.int32)
    half = img.shape[1] // 2
    spec = DatasetSpec("StardistNuclei", {0: "microscopy"}, {"background": 0, "nucleus": 1}, extra={"instances": True})
    out = root / TASKS["nuclei"].dataset
    with DatasetWriter(out, spec) as w:
        for case_id, seed, test in _seeds(cases, 0):
            v = augment.draw(seed, spacing=(1.0, 1.0), anisotropy=(1.0, 1.3), displacement_mm=(1.0, 3.0))
            a, b = augment.warp([img[:, :half], inst[:, :half]], (1.0, 1.0), v, orders=(1, 0))
            a = augment.intensity(a, v, spacing=(1.0, 1.0))
            w.add_case(case_id, [_vol(a, (1.0, 1.0))], _vol(b, (1.0, 1.0), np.uint16), test=test)
        rows = max(1, test_cases)
        edges = np.linspace(0, img.shape[0], rows + 1).astype(int)
        for k in range(rows):
            sl = (slice(edges[k], edges[k + 1]), slice(half, None))
            w.add_case(f"test_{k:03d}", [_vol(img[sl], (1.0, 1.0))], _vol(inst[sl], (1.0, 1.0), np.uint16), test=True)


BUILDERS: dict[str, Callable[[Path, int, int, Path, bool], None]] = {
    "colin27": _build_colin27,
    "cranium": _build_cranium,
    "nuclei": _build_nuclei,
    "inia19": _build_inia19,
}


def build(task: str, *, cache: Path, cases: int, test_cases: int, allow_pip: bool = True) -> Path:
    """The dataset folder of ``task`` (built once into ``cache``, reused afterwards)."""
    t = TASKS[task]
    root = cache / "datasets" / f"v{VERSION}_train{cases}_test{test_cases}"
    done = root / f".{t.source}.done"
    if not done.is_file():
        staging = root / f".{t.source}.staging"
        if staging.exists():
            shutil.rmtree(staging)
        BUILDERS[t.source](staging, cases, test_cases, cache, allow_pip)
        for folder in staging.iterdir():
            if (root / folder.name).exists():
                shutil.rmtree(root / folder.name)
            folder.replace(root / folder.name)
        staging.rmdir()
        done.write_text(json.dumps({"cases": cases, "test_cases": test_cases, "version": VERSION}))
    return root / t.dataset
