"""A small real model (a MONAI UNet in the registry, seeded weights) and a folder of phantom cases."""

from __future__ import annotations

from pathlib import Path

from tests.inference.helpers import make_plan, unet_spec, write_work
from voxseg.dataset.phantoms import generate_case
from voxseg.io import write_image
from voxseg.planning import Normalization

PHANTOM = "mouse-lung-ct"
SIZE = 24


def phantom_folder(folder: Path, cases: int = 6) -> Path:
    """``caseK_0000.nii.gz`` for K < ``cases``: small mouse-lung CT phantoms."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(cases):
        case = generate_case(PHANTOM, k, seed=3, size=SIZE)
        write_image(case.images[0], folder / f"case{k}_0000.nii.gz")
    return folder


def unet_work(root: Path, spacing) -> Path:
    """A work folder whose fold 0 is a seeded random UNet (a registered network: workers can build it)."""
    plan = make_plan(
        target_spacing=spacing,
        patch_size=(16, 16, 16),
        network=unet_spec(3, 1, 2),
        normalization=[Normalization("zscore")],
    )
    return write_work(root, plan, seed=7)
