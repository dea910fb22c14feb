"""Deterministic synthetic datasets for the five seed tasks: voxseg's embedded demo data."""

# importing a generator module registers its phantom in PHANTOMS
from voxseg.dataset.phantoms import brain_cmb, mouse_lung, pet_mip, soft_tissue, spinal_cord  # noqa: F401
from voxseg.dataset.phantoms.base import PHANTOMS, PhantomCase, PhantomSpec, generate_case, make_phantom

__all__ = ["PHANTOMS", "PhantomCase", "PhantomSpec", "generate_case", "make_phantom"]
