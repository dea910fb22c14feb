"""``brain-swi-cmb``: SWI-like head MRI with cerebral microbleeds (seed story 004).

A head (scalp, skull, cerebrospinal fluid, a folded cortical ribbon over white matter, lateral
ventricles, iron-rich deep grey nuclei that look dark in SWI, a superior sagittal sinus and many
thin dark veins) at 1 mm isotropic. 0 to 8 microbleeds per case (about a quarter of the cases
have none): small round very dark spots of 2-10 mm diameter with a blooming halo, lobar or
deep. Veins are the main mimic: dark too, but tubular in 3D; the dark deep nuclei are the other.

Channel 1, named ``"mask"``, is the binary brain mask (float32 0/1) as a second input image.
Anatomy is laid out in fractions of the field of view (the default head is smaller than a real
one to keep it cheap); microbleed sizes are in millimetres and do not scale with the grid.
Axes (z, y, x) run inferior->superior, anterior->posterior, right->left.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from voxseg.dataset.phantoms import _shapes as S
from voxseg.dataset.phantoms.base import PHANTOMS, PhantomCase, PhantomSpec
from voxseg.io import Volume

__all__ = ["SPEC", "generate"]

SPACING = (1.0, 1.0, 1.0)
DEFAULT_SHAPE = (80, 96, 80)
_P_NO_BLEEDS = 0.25
_LEVELS = {
    "wm": 450.0,
    "gm": 520.0,
    "csf": 760.0,
    "scalp": 620.0,
    "skull": 50.0,
    "diploe": 200.0,
    "vein": 110.0,
    "putamen": 380.0,
    "pallidum": 230.0,
    "thalamus": 470.0,
    "bleed": 40.0,
}


class _Head:
    """Voxel-index geometry of the head, from positions given as fractions (-1..1) of the field of view."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape
        self.half = np.array(shape, dtype=float) / 2
        self.grid = S.mm_grid(shape, (1.0, 1.0, 1.0))  # voxel units, centred

    def idx(self, frac: tuple[float, float, float]) -> np.ndarray:
        """Voxel index of a position given in fractions of the half field of view."""
        return (np.asarray(frac) + 1) * self.half - 0.5

    def vox(self, frac: tuple[float, float, float]) -> np.ndarray:
        """Centred voxel coordinates of a fractional position (for the full-volume grid)."""
        return np.asarray(frac) * self.half

    def r(self, frac: float) -> float:
        """Voxel length of a fraction of the smallest half axis."""
        return max(0.6, float(frac * self.half.min()))


def _shells(h: _Head, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Head, skull, CSF and brain as nested ellipsoids; the brain's normalised depth below its surface."""
    c = h.vox((rng.uniform(-0.12, -0.05), rng.uniform(-0.03, 0.03), 0.0))
    radii = np.array([0.98, 0.9, 0.86]) * h.half * rng.uniform(0.93, 1.0)
    rho = np.sqrt(sum(((g - np.float32(ci)) / np.float32(ri)) ** 2 for g, ci, ri in zip(h.grid, c, radii, strict=True)))
    rmin = np.float32(radii.min())
    t = rmin / np.float32(38.0)  # shell thicknesses scale with the head (38 voxels: default half-width)
    head = S.soft((rho - 1) * rmin, 1.0)
    skull_out = S.soft((rho - 1) * rmin + np.float32(3.5 * t), 1.0)
    skull_in = S.soft((rho - 1) * rmin + np.float32(7.0 * t), 1.0)
    inset = np.float32(rng.uniform(8.0, 10.0) * t)
    brain = S.soft((rho - 1) * rmin + inset, 1.0)
    depth = (1 - rho) * rmin - inset  # voxels (mm) below the brain surface, approximately
    return {
        "head": head,
        "skull_out": skull_out,
        "skull_in": skull_in,
        "brain": brain,
        "depth": depth,
        "centre": c,
        "radii": radii,
    }


def _cortex(h: _Head, sh: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Soft occupancies of sulcal CSF (folds cut into the brain) and of the cortical grey-matter ribbon."""
    sigma = max(1.5, 2.8 * h.half.min() / 40)
    field = S.smooth_noise(rng, h.shape, sigma)
    sheet = np.abs(field) * np.float32(sigma * 0.9)  # ~ distance (voxels) to the zero surface of the field
    depth = sh["depth"]
    sulcus_depth = np.float32(rng.uniform(5.0, 8.0) * h.half.min() / 40)
    sulci = S.soft(sheet - np.float32(0.6), 1.0) * S.soft(depth - sulcus_depth, 1.5)
    # interhemispheric fissure: a midline cleft, except through the central core (corpus callosum, diencephalon)
    zc, yc = h.grid[0] - np.float32(sh["centre"][0]), h.grid[1] - np.float32(sh["centre"][1])
    rz, ry = sh["radii"][0], sh["radii"][1]
    core = np.sqrt((zc / np.float32(0.45 * rz) + np.float32(0.35)) ** 2 + (yc / np.float32(0.5 * ry)) ** 2) - 1
    core_sd = core * np.float32(0.45 * rz)  # ~ signed distance (voxels) to the core, negative inside
    midline = np.abs(h.grid[2])
    fissure = S.soft(midline - np.float32(0.4), 1.0) * S.soft(-core_sd, 1.5)
    to_csf = np.minimum(np.maximum(depth, 0), sheet + np.maximum(depth - sulcus_depth, 0))
    to_csf = np.minimum(to_csf, midline + np.maximum(-core_sd, 0))
    ribbon = np.float32(2.5 * max(0.6, h.half.min() / 40))
    gm = S.soft(to_csf - ribbon, 1.0)
    sulci = np.maximum(sulci, fissure)
    return sulci * sh["brain"], gm * sh["brain"]


def _deep(h: _Head, img: np.ndarray, brain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lateral ventricles (bright CSF) and deep grey nuclei (dark, iron-rich) in place; return ventricle occupancy."""
    vent = np.zeros(h.shape, np.float32)
    size = rng.uniform(0.05, 0.1)  # ventricular enlargement varies a lot between (older) subjects
    for side in (-1, 1):
        s = side
        path = [(0.08, -0.38, s * 0.07), (0.2, -0.05, s * 0.1), (0.12, 0.3, s * 0.16), (-0.15, 0.2, s * 0.28)]
        radius = [size * 0.8, size, size * 0.9, size * 0.5]
        for k in range(len(path) - 1):
            sl, occ = S.tube_box(h.shape, h.idx(path[k]), h.idx(path[k + 1]), h.r(radius[k]))
            vent[sl] = np.maximum(vent[sl], occ)
        nuclei = [
            ((-0.02, -0.08, s * 0.3), (0.14, 0.17, 0.06), "putamen"),
            ((-0.02, -0.02, s * 0.21), (0.09, 0.1, 0.045), "pallidum"),
            ((0.04, 0.15, s * 0.1), (0.11, 0.12, 0.08), "thalamus"),
        ]
        for centre, radii, name in nuclei:
            sl, occ = S.ellipsoid_box(h.shape, h.idx(centre), [h.r(r) * rng.uniform(0.9, 1.1) for r in radii])
            S.blend(img, sl, occ * brain[sl], _LEVELS[name] * rng.uniform(0.85, 1.15))
    S.blend(img, (), vent * brain, _LEVELS["csf"])
    return vent * brain


def _veins(h: _Head, sh: dict, rng: np.random.Generator) -> np.ndarray:
    """Soft occupancy of veins: the superior sagittal sinus and many thin curvy medullary/cortical veins."""
    sigma = max(2.5, 5.0 * h.half.min() / 40)
    n1, n2 = S.smooth_noise(rng, h.shape, sigma), S.smooth_noise(rng, h.shape, sigma)
    thin = np.float32(rng.uniform(0.1, 0.16)) * (np.float32(1) + np.float32(0.8) * S.soft(sh["depth"] - 4.0, 3.0))
    veins = S.soft((np.sqrt(n1 * n1 + n2 * n2) - thin) * np.float32(sigma * 0.7), 1.0)
    veins = veins * S.soft(-sh["depth"] - 1.5, 1.0)  # inside the brain and its CSF layer
    # superior sagittal sinus: along the midline, in the CSF just under the skull, upper half
    z0 = h.grid[0] - np.float32(sh["centre"][0])
    sss = S.soft(np.sqrt(h.grid[2] ** 2 + (sh["depth"] + np.float32(3.0)) ** 2) - np.float32(h.r(0.05)), 1.0)
    return np.maximum(veins, sss * (z0 > np.float32(-0.05 * sh["radii"][0])))


def _bleeds(
    h: _Head, img: np.ndarray, allowed: np.ndarray, depth: np.ndarray, rng: np.random.Generator, max_bleeds: int
) -> tuple[np.ndarray, int]:
    """0..max_bleeds round dark microbleeds (2-10 mm) with a blooming halo; return the label and count.

    A bleed is kept inside the brain: its radius is at most its centre's depth below the brain surface.
    """
    label = np.zeros(h.shape, bool)
    n = 0 if rng.random() < _P_NO_BLEEDS or max_bleeds < 1 else int(np.ceil(max_bleeds * rng.random() ** 1.3))
    for centre in S.sample_in_mask(rng, allowed, n):
        diameter = 2.0 * 5.0 ** (rng.random() ** 1.5)  # 2-10 mm, mostly small
        r = min(diameter / 2, float(depth[tuple(centre)]) - 0.5)
        centre = centre + rng.uniform(-0.3, 0.3, size=3)
        sl, occ = S.ellipsoid_box(h.shape, centre, [r / s for s in SPACING], 1.0)
        halo_sl, halo = S.ellipsoid_box(h.shape, centre, [1.6 * r / s + 1.0 for s in SPACING], 3.0)
        img[halo_sl] *= np.float32(1) - np.float32(rng.uniform(0.2, 0.45)) * halo
        S.blend(img, sl, occ, _LEVELS["bleed"] * rng.uniform(0.5, 2.5))
        hard = occ >= 0.5
        if not hard.any():  # the voxel nearest the centre is always labelled
            nearest = np.round(centre).astype(int) - [s.start for s in sl]
            hard[tuple(np.clip(nearest, 0, np.array(hard.shape) - 1))] = True
        label[sl] |= hard
    return label, n


def generate(rng: np.random.Generator, shape: tuple[int, ...], options: Mapping[str, Any]) -> PhantomCase:
    """Generate one SWI head case: channels [SWI, brain mask] (float32) and the microbleed label (uint8)."""
    shape = tuple(int(n) for n in shape)
    h = _Head(shape)
    sh = _shells(h, rng)
    tex = S.smooth_noise(rng, shape, 1.5)
    lv = _LEVELS
    img = sh["head"] * np.float32(lv["scalp"]) * (1 + np.float32(0.05) * tex)
    S.blend(img, (), sh["skull_out"], np.float32(lv["diploe"]) * (1 + np.float32(0.2) * tex))
    diploe = S.soft(np.abs(sh["depth"] + np.float32(7.3)) - np.float32(0.8), 1.0) * sh["skull_out"]
    S.blend(img, (), np.maximum(sh["skull_out"] - diploe, 0), float(lv["skull"]))
    S.blend(img, (), sh["skull_in"], float(lv["csf"]))
    sulci, gm = _cortex(h, sh, rng)
    S.blend(img, (), sh["brain"], np.float32(lv["wm"]) * (1 + np.float32(0.03) * tex))
    S.blend(img, (), gm, np.float32(lv["gm"]) * (1 + np.float32(0.04) * tex))
    vent = _deep(h, img, sh["brain"], rng)
    S.blend(img, (), sulci, float(lv["csf"]))
    veins = _veins(h, sh, rng) * sh["skull_in"]
    S.blend(img, (), veins, np.float32(lv["vein"]) * (1 + np.float32(0.3) * tex))
    brain = (sh["brain"] >= 0.5) & (sulci < 0.5)
    allowed = brain & (vent < 0.1) & (sh["depth"] > 3.0) & (veins < 0.1)
    label, n = _bleeds(h, img, allowed, sh["depth"], rng, int(options.get("max_bleeds", 8)))
    img = ndi.gaussian_filter(img, 0.5)
    img *= S.bias_field(rng, shape, rng.uniform(0.1, 0.25))
    img = S.rician(rng, img, float(rng.uniform(0.02, 0.04) * lv["wm"]))
    mask = (sh["brain"] >= 0.5).astype(np.float32)
    origin = S.centred_origin(shape, SPACING)
    return PhantomCase(
        images=[Volume(img.astype(np.float32), SPACING, origin), Volume(mask, SPACING, origin)],
        label=Volume(label.astype(np.uint8), SPACING, origin),
        info={"microbleeds": n},
    )


SPEC = PHANTOMS.register(
    "brain-swi-cmb",
    PhantomSpec(
        name="brain-swi-cmb",
        description="3D SWI-like head MRI (1 mm) with 0-8 cerebral microbleeds; channel 1 is the brain mask",
        channel_names={0: "SWI", 1: "mask"},
        labels={"background": 0, "microbleed": 1},
        default_shape=DEFAULT_SHAPE,
        default_cases=20,
        generate=generate,
        options={"max_bleeds": (8, "largest number of microbleeds in a case (0 gives only negatives)")},
    ),
)
