"""``soft-tissue-mri``: MRI of a limb section with one soft-tissue tumour (seed story 001).

The limb (skin, subcutaneous fat, muscle compartments separated by fat septa, one or two
bones with cortex and fatty marrow, neurovascular bundles) runs along z and is laid out in
fractions of the in-plane field of view. Each case has exactly one lobulated, heterogeneous
tumour (sometimes with a necrotic core and a dark pseudo-capsule), a single connected object
as needed for extreme-point interaction. Cases are T1- or T2-like at random (``info["weighting"]``).
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

SPACING = (3.0, 0.8, 0.8)
DEFAULT_SHAPE = (32, 96, 96)

# arbitrary MR units per tissue, for the two weightings
_TISSUES = {
    "T1": {
        "fat": 900,
        "muscle": 380,
        "marrow": 780,
        "cortex": 40,
        "skin": 460,
        "vessel": 60,
        "tumor": (420, 560),
        "necrosis": 170,
        "edema": 340,
        "capsule": 150,
    },
    "T2": {
        "fat": 760,
        "muscle": 230,
        "marrow": 650,
        "cortex": 30,
        "skin": 330,
        "vessel": 50,
        "tumor": (560, 780),
        "necrosis": 950,
        "edema": 430,
        "capsule": 120,
    },
}


def _limb(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
    """Limb outline, fat layer and muscle region (soft occupancies, voxel units)."""
    nz, ny, nx = shape
    z, y, x = S.mm_grid(shape, (1.0, 1.0, 1.0))
    zf = z / np.float32(nz / 2)
    half = min(ny, nx) / 2
    ry, rx = half * rng.uniform(0.78, 0.9), half * rng.uniform(0.72, 0.88)
    taper = np.float32(1.0) - np.float32(rng.uniform(0.0, 0.12)) * zf
    theta = np.arctan2(y / np.float32(ry), x / np.float32(rx))
    wobble = np.float32(1.0)
    for k in (2, 3, 4):
        wobble = wobble + np.float32(rng.uniform(0, 0.04)) * np.cos(k * theta + np.float32(rng.uniform(0, 2 * np.pi)))
    rho = np.sqrt((y / np.float32(ry)) ** 2 + (x / np.float32(rx)) ** 2) / (wobble * taper)
    scale = np.float32(min(ry, rx))
    body = S.soft((rho - 1.0) * scale, 1.0)
    skin = S.soft(np.abs(rho - np.float32(0.985)) * scale - np.float32(0.6), 1.0)
    fat_in = np.float32(rng.uniform(0.78, 0.9)) + np.float32(0.06) * np.cos(theta - np.float32(rng.uniform(0, 6.3)))
    muscle = S.soft((rho - fat_in) * scale, 1.0)
    return {"grid": (z, y, x), "rho": rho, "scale": scale, "body": body, "skin": skin, "muscle": muscle, "zf": zf}


def _septa(rng: np.random.Generator, yx: tuple[np.ndarray, np.ndarray], scale: float) -> np.ndarray:
    """Fat septa between muscle compartments: where the two nearest of a few seeds are equidistant."""
    y, x = yx
    shape2d = (y.shape[1], x.shape[2])
    y = y[0] + np.float32(0.08 * scale) * S.smooth_noise(rng, shape2d, 0.25 * scale)  # wavy boundaries
    x = x[0] + np.float32(0.08 * scale) * S.smooth_noise(rng, shape2d, 0.25 * scale)
    seeds = rng.uniform(-0.65, 0.65, size=(int(rng.integers(4, 7)), 2)) * scale
    dists = np.stack([np.sqrt((y - np.float32(sy)) ** 2 + (x - np.float32(sx)) ** 2) for sy, sx in seeds])
    dists.sort(axis=0)
    return S.soft(dists[1] - dists[0] - np.float32(0.6), 1.0)[None]


def _bones(rng: np.random.Generator, limb: dict) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float]]]:
    """Soft occupancy of bone (cortex + marrow), of marrow alone, and the bone centres (voxels)."""
    _, y, x = limb["grid"]
    scale = float(limb["scale"])
    n_bones = 1 if rng.random() < 0.5 else 2
    bone = np.zeros((1, y.shape[1], x.shape[2]), np.float32)
    marrow = np.zeros_like(bone)
    centres = []
    for k in range(n_bones):
        r = scale * (rng.uniform(0.17, 0.24) if k == 0 else rng.uniform(0.08, 0.11))
        angle = rng.uniform(0, 2 * np.pi)
        dist = scale * (rng.uniform(0.0, 0.2) if k == 0 else rng.uniform(0.45, 0.55))
        cy, cx = dist * np.sin(angle), dist * np.cos(angle)
        if k == 1:  # keep the second bone away from the first
            cy, cx = centres[0][0] - 0.5 * scale * np.sin(angle), centres[0][1] - 0.5 * scale * np.cos(angle)
        centres.append((cy, cx))
        drift = np.float32(rng.uniform(-0.03, 0.03) * scale) * limb["zf"]
        cortex = max(1.0, r * rng.uniform(0.2, 0.3))
        bone = np.maximum(bone, S.ellipsoid([y + drift, x], (cy, cx), (r, r * rng.uniform(0.85, 1.15)), 1.0))
        marrow = np.maximum(marrow, S.ellipsoid([y + drift, x], (cy, cx), (r - cortex, r - cortex), 1.0))
    return bone, marrow, centres


def _tumour(
    rng: np.random.Generator, shape: tuple[int, ...], seed_region: np.ndarray, allowed: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """One lobulated tumour (main body plus overlapping daughter lobes) clipped to ``allowed``.

    Returns the soft occupancy and the hard label (exactly one connected component).
    """
    nz = shape[0]
    spacing = SPACING
    zrange = seed_region.copy()
    zrange[: int(nz * 0.25)] = False
    zrange[int(np.ceil(nz * 0.75)) :] = False
    centre = S.sample_in_mask(rng, zrange if zrange.any() else seed_region, 1)
    centre = centre[0].astype(float) if len(centre) else np.array([(n - 1) / 2 for n in shape])
    radius = scale * SPACING[1] * rng.uniform(0.18, 0.36)
    sl, occ = S.star_blob(
        rng,
        shape,
        spacing,
        centre,
        radius,
        lobes=int(rng.integers(3, 8)),
        lobulation=rng.uniform(0.3, 0.8),
        elongation=rng.uniform(0.0, 0.8),
    )
    occ_full = np.zeros(shape, np.float32)
    occ_full[sl] = occ
    for _ in range(int(rng.integers(1, 5))):  # daughter lobes centred inside the main body
        inside = S.sample_in_mask(rng, occ_full >= 0.5, 1)
        if len(inside) == 0:
            break
        lsl, locc = S.star_blob(
            rng, shape, spacing, inside[0], radius * rng.uniform(0.35, 0.7), lobes=3, lobulation=0.4
        )
        occ_full[lsl] = np.maximum(occ_full[lsl], locc)
    occ_full *= allowed
    hard = occ_full >= 0.5
    lab, n = ndi.label(hard)
    if n > 1:  # clipping by bone or skin can cut off a sliver: keep the main piece
        main = 1 + int(np.argmax(ndi.sum_labels(hard, lab, index=np.arange(1, n + 1))))
        hard = lab == main
        occ_full *= (lab == 0) | hard
    if not hard.any():  # a degenerate draw (tiny FOV): fall back to the seed voxel
        hard[tuple(int(c) for c in centre)] = True
        occ_full = np.maximum(occ_full, hard.astype(np.float32))
    return occ_full, hard


def _tumour_values(
    rng: np.random.Generator, tissue: dict, occ: np.ndarray, hard: np.ndarray, tex: np.ndarray
) -> np.ndarray:
    """Heterogeneous tumour signal: textured solid part, optional necrotic core and dark capsule."""
    lo, hi = tissue["tumor"]
    values = np.float32(rng.uniform(lo, hi)) * (np.float32(1.0) + np.float32(rng.uniform(0.08, 0.2)) * tex)
    depth = ndi.distance_transform_edt(hard, sampling=SPACING).astype(np.float32)
    if rng.random() < 0.5 and depth.max() > 4.0:  # necrotic core: the deepest part of the tumour
        core = S.soft(np.float32(depth.max() * rng.uniform(0.35, 0.6)) - depth, 1.5)
        values += core * (np.float32(tissue["necrosis"]) - values)
    if rng.random() < 0.5:  # pseudo-capsule: a thin dark rim
        rim = S.soft(np.abs(depth - np.float32(0.8)) - np.float32(0.6), 0.8) * hard
        values += rim * (np.float32(tissue["capsule"]) - values)
    return values


def generate(rng: np.random.Generator, shape: tuple[int, ...], options: Mapping[str, Any]) -> PhantomCase:
    """Generate one limb MRI case (float32, arbitrary units) with its single-tumour label (uint8)."""
    shape = tuple(int(n) for n in shape)
    weighting = "T1" if rng.random() < 0.5 else "T2"
    t = _TISSUES[weighting]
    limb = _limb(rng, shape)
    _, y, x = limb["grid"]
    bone, marrow, _ = _bones(rng, limb)
    septa = _septa(rng, (y, x), float(limb["scale"])) * limb["muscle"] * (1 - bone)
    tex = S.smooth_noise(rng, shape, 1.5)
    img = limb["body"] * (np.float32(t["fat"]) * (np.float32(1) + np.float32(0.03) * tex))
    S.blend(img, (), limb["skin"] * limb["body"], float(t["skin"]))
    muscle_value = np.float32(t["muscle"]) * (np.float32(1) + np.float32(0.06) * tex)
    S.blend(img, (), limb["muscle"], muscle_value)
    S.blend(img, (), septa, float(t["fat"]) * 0.9)
    S.blend(img, (), np.broadcast_to(bone, shape), float(t["cortex"]))
    S.blend(img, (), np.broadcast_to(marrow, shape), np.float32(t["marrow"]) * (np.float32(1) + np.float32(0.05) * tex))
    _vessels(rng, img, limb, bone, t)
    seed_region = (limb["muscle"] >= 0.5) & (np.broadcast_to(bone, shape) < 0.05)
    allowed = limb["body"] * (1 - limb["skin"]) * (1 - np.broadcast_to(bone, shape))
    occ, hard = _tumour(rng, shape, seed_region, allowed, float(limb["scale"]))
    halo = ndi.gaussian_filter(occ, (0.7, 4.0, 4.0)) * (1 - occ) * limb["muscle"] * np.float32(rng.uniform(0.3, 0.9))
    S.blend(img, (), halo, float(t["edema"]))
    S.blend(img, (), occ, _tumour_values(rng, t, occ, hard, S.smooth_noise(rng, shape, 2.5)))
    img = ndi.gaussian_filter(img, (0.5, 0.4, 0.4))  # slice profile and in-plane PSF
    img *= S.bias_field(rng, shape, rng.uniform(0.15, 0.35))
    img = S.rician(rng, img, float(rng.uniform(0.015, 0.035) * t["fat"]))
    origin = S.centred_origin(shape, SPACING)
    return PhantomCase(
        images=[Volume(img.astype(np.float32), SPACING, origin)],
        label=Volume(hard.astype(np.uint8), SPACING, origin),
        info={"weighting": weighting, "tumor_voxels": int(hard.sum())},
    )


def _vessels(rng: np.random.Generator, img: np.ndarray, limb: dict, bone: np.ndarray, tissue: dict) -> None:
    """Two or three neurovascular bundles: dark flow voids with a thin fat rim, running along z."""
    _, y, x = limb["grid"]
    scale = float(limb["scale"])
    where = (limb["muscle"][img.shape[0] // 2] >= 0.5) & (bone[0] < 0.01)
    for cy, cx in S.sample_in_mask(rng, where, int(rng.integers(2, 4))):
        r = max(0.8, scale * rng.uniform(0.025, 0.045))
        drift = np.float32(rng.uniform(-0.05, 0.05) * scale) * limb["zf"]
        yy = y - np.float32(cy - (img.shape[1] - 1) / 2)
        xx = x - np.float32(cx - (img.shape[2] - 1) / 2) + drift
        dist = np.sqrt(yy * yy + xx * xx)
        S.blend(img, (), S.soft(dist - np.float32(r + 1.2), 1.0) * limb["muscle"], float(tissue["fat"]) * 0.85)
        S.blend(img, (), S.soft(dist - np.float32(r), 1.0) * limb["muscle"], float(tissue["vessel"]))


SPEC = PHANTOMS.register(
    "soft-tissue-mri",
    PhantomSpec(
        name="soft-tissue-mri",
        description="3D MRI (T1/T2-like) of a limb section with exactly one lobulated soft-tissue tumour",
        channel_names={0: "MRI"},
        labels={"background": 0, "tumor": 1},
        default_shape=DEFAULT_SHAPE,
        default_cases=20,
        generate=generate,
    ),
)
