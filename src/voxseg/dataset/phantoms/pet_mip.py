"""``pet-mip``: 2D whole-body FDG-PET maximum-intensity projections with tumours (seed story 002).

A coarse 3D activity volume (SUV) of a body from the top of the head to the thighs is built
from ellipsoids and tubes, given Poisson-like noise and a PET point-spread function, and
projected with a real maximum along the anterior-posterior axis. Physiological uptake that
looks like tumour (brain, heart, kidneys and ureters, bladder, bowel, tonsils, an injection
site, brown fat) is present in every case; about a quarter of the cases are healthy controls.
A pixel is labelled tumour where a tumour is what the projection shows there.

Anatomy is described in millimetres of the default 256 x 128 field (1024 x 512 mm) and scaled
with the grid; the pixel size stays 4 mm and tumour radii (6-30 mm) are physical, so they do
not shrink on a smaller grid. Axis 0 runs head to feet,
axis 1 is the patient's right to left (anterior view: the heart is on the image right).
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

SPACING = (4.0, 4.0)
DEFAULT_SHAPE = (256, 128)
_FOV_MM = (1024.0, 512.0, 280.0)  # head-feet, right-left, anterior-posterior (depth of the 3D volume)
_P_CONTROL = 0.25


class _Frame:
    """Converts 'default millimetres' (y from the top, x and d from the midline) to voxel indices."""

    def __init__(self, shape: tuple[int, int]):
        h, w = shape
        depth = max(12, round(0.3 * w))
        self.shape = (h, depth, w)  # (y, d, x): the projection axis is 1
        self.scale = np.array([h / _FOV_MM[0], depth / _FOV_MM[2], w / _FOV_MM[1]])
        self.tex = np.zeros(self.shape, np.float32)  # texture field, set by the generator

    def vox(self, y: float, x: float, d: float = 0.0) -> np.ndarray:
        """Voxel index (y, d, x) of a point in default mm."""
        return np.array([y, d + _FOV_MM[2] / 2, x + _FOV_MM[1] / 2]) * self.scale - 0.5

    def radii(self, ry: float, rx: float, rd: float = 0.0) -> list[float]:
        """Voxel radii (y, d, x) of an ellipsoid given in default mm, at least 0.7 voxel."""
        return [max(0.7, float(r)) for r in np.array([ry, rd, rx]) * self.scale]

    def add(
        self,
        act: np.ndarray,
        centre: tuple[float, float, float],
        radii: tuple[float, float, float],
        value: float,
        texture: float = 0.0,
    ) -> None:
        """Blend an ellipsoid (centre y, x, d and radii in default mm) of activity ``value`` into ``act``."""
        sl, occ = S.ellipsoid_box(act.shape, self.vox(*centre), self.radii(*radii))
        S.blend(act, sl, occ, np.float32(value) * (np.float32(1) + np.float32(texture) * self.tex[sl]))

    def tube(
        self,
        act: np.ndarray,
        p0: tuple[float, float, float],
        p1: tuple[float, float, float],
        radius: float,
        value: float | np.ndarray,
    ) -> tuple[tuple[slice, ...], np.ndarray]:
        """Blend a capsule (end points y, x, d and radius in default mm) into ``act``; return box, occupancy."""
        sl, occ = S.tube_box(act.shape, self.vox(*p0), self.vox(*p1), max(0.7, radius * float(self.scale[2])))
        S.blend(act, sl, occ, value)
        return sl, occ


def _body(frame: _Frame, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Soft occupancy of the body: head, neck, torso with a waist, legs and (in 60 % of cases) arms."""
    h, nd, w = frame.shape
    y_mm = (np.arange(h, dtype=np.float32) + 0.5) / np.float32(frame.scale[0])
    d_mm = (np.arange(nd, dtype=np.float32) + 0.5) / np.float32(frame.scale[1]) - _FOV_MM[2] / 2
    x_mm = (np.arange(w, dtype=np.float32) + 0.5) / np.float32(frame.scale[2]) - _FOV_MM[1] / 2
    y, d, x = y_mm[:, None, None], d_mm[None, :, None], x_mm[None, None, :]
    k = rng.uniform(0.9, 1.1)  # body habitus
    # torso half-width / half-depth along y (shoulders, chest, waist, hips); 0 outside the torso
    ys = [250, 290, 420, 600, 760, 830]
    rx = np.interp(y_mm, ys, [60, 165 * k, 150 * k, 135 * k, 160 * k, 150 * k], left=0, right=0)
    rd = np.interp(y_mm, ys, [55, 90 * k, 110 * k, 110 * k, 100 * k, 90 * k], left=0, right=0)
    rx, rd = np.maximum(rx, 1.0)[:, None, None], np.maximum(rd, 1.0)[:, None, None]
    torso = S.soft((np.sqrt((x / rx) ** 2 + (d / rd) ** 2) - 1) * np.minimum(rx, rd), 8.0)
    torso = torso * S.soft(np.abs(y - 545) - 290, 8.0)
    head = S.ellipsoid([y, d, x], (125, 5, 0), (110, 95, 80), 8.0)
    neck = S.ellipsoid([y, d, x], (255, 10, 0), (60, 55, 55), 8.0)
    body = np.maximum(np.maximum(head, neck), torso)
    for side in (-1, 1):
        leg_x = side * 85 * k - side * np.float32(0.06) * (y - 800)  # legs converge slightly
        leg = S.soft(np.sqrt(((x - leg_x) / 75) ** 2 + (d / 80) ** 2) * 75 - 75, 8.0) * S.soft(780 - y, 8.0)
        body = np.maximum(body, leg)
    arms = bool(rng.random() < 0.6)  # down along the body (else raised above the head, out of view)
    if arms:
        for side in (-1, 1):
            arm_x = side * (rx[:, 0, 0].max() + 36)
            body = np.maximum(body, S.ellipsoid([y, d, x], (555, 0, arm_x), (255, 40, 34), 8.0))
    return body.astype(np.float32), arms


def _tubes(rng: np.random.Generator, shape: tuple[int, ...], sigma: float, thickness: float) -> np.ndarray:
    """Soft occupancy of random curvy tubes: where two smooth random fields are both near zero."""
    n1, n2 = S.smooth_noise(rng, shape, sigma), S.smooth_noise(rng, shape, sigma)
    return S.soft((np.sqrt(n1 * n1 + n2 * n2) - np.float32(thickness)) * np.float32(sigma * 0.75), 1.0)


def _organs(frame: _Frame, act: np.ndarray, rng: np.random.Generator, arms: bool) -> None:
    """Blend physiological uptake into ``act`` (in place); later organs cover earlier ones."""
    u = rng.uniform
    for side in (-1, 1):  # lungs take up less than soft tissue
        frame.add(act, (430, side * 78, 10), (120, 62, 80), u(0.25, 0.45), 0.2)
    brain = u(5, 12)
    frame.add(act, (118, 0, 5), (85, 68, 80), brain, 0.08)
    frame.add(act, (195, 0, 40), (25, 50, 30), brain * 0.75, 0.08)  # cerebellum
    for side in (-1, 1):
        frame.add(act, (232, side * 32, -20), (14, 12, 12), u(1.5, 4.5))  # tonsils, salivary glands
    if rng.random() < 0.15:  # activated brown fat: symmetric, neck and supraclavicular
        level = u(2, 6)
        for side in (-1, 1):
            frame.add(act, (292, side * 72, 20), (22, 38, 25), level, 0.4)
    frame.tube(act, (300, 15, 20), (700, 10, 45), 12, u(1.4, 2.2))  # aorta: blood pool
    frame.tube(act, (270, 0, 80), (790, 0, 70), 14, u(1.2, 2.0))  # vertebral marrow
    heart, hx = u(1.5, 15), u(30, 55)
    frame.add(act, (455, hx, -30), (52, 46, 46), heart, 0.1)  # left-ventricle myocardium
    frame.add(act, (455, hx, -30), (30, 26, 26), u(1.4, 2.2))  # its cavity: blood pool
    frame.add(act, (560, -62, 0), (85, 105, 85), u(1.8, 3.0), 0.12)  # liver
    frame.add(act, (555, 108, 40), (55, 34, 34), u(1.5, 2.5), 0.1)  # spleen
    _urinary(frame, act, rng)
    _bowel(frame, act, rng)
    if arms and rng.random() < 0.3:  # paravenous injection site in an arm
        frame.add(act, (u(480, 640), rng.choice([-1, 1]) * 212, 0), (10, 8, 8), u(5, 20))


def _urinary(frame: _Frame, act: np.ndarray, rng: np.random.Generator) -> None:
    """Kidneys with hot renal pelves, ureters with a few hot segments, and the (very hot) bladder."""
    u = rng.uniform
    for side in (-1, 1):
        ky = u(620, 660)
        frame.add(act, (ky, side * 75, 55), (55, 28, 28), u(3, 8), 0.1)
        pelvis = u(6, 25)
        frame.add(act, (ky, side * 62, 50), (16, 11, 11), pelvis)
        top, bottom = np.array([ky + 20, side * 60, 50]), np.array([790, side * 30, -10])
        for start in np.sort(u(0, 0.85, size=int(rng.integers(0, 3)))):  # urine boluses in the ureter
            p0 = top + start * (bottom - top)
            p1 = p0 + u(0.05, 0.15) * (bottom - top)
            frame.tube(act, tuple(p0), tuple(p1), 4, pelvis * u(0.3, 0.8))
    frame.add(act, (u(790, 815), 0, -30), (u(30, 45), u(40, 60), u(30, 45)), u(8, 30), 0.05)


def _bowel(frame: _Frame, act: np.ndarray, rng: np.random.Generator) -> None:
    """Curvy tubes of moderate uptake in the abdomen (bowel activity, a classic tumour mimic)."""
    centre, radii = frame.vox(700, 0, -10), frame.radii(80, 110, 70)
    sl = S.box_slices(act.shape, centre, radii)
    box_shape = tuple(s.stop - s.start for s in sl)
    sigma = max(1.5, 3.0 * min(frame.scale[0], frame.scale[2]) * 4)
    tubes = _tubes(rng, box_shape, sigma, rng.uniform(0.12, 0.25))
    region = S.ellipsoid(
        [
            np.arange(s.start, s.stop, dtype=np.float32).reshape([-1 if a == i else 1 for a in range(3)])
            for i, s in enumerate(sl)
        ],
        centre,
        radii,
        1.0,
    )
    S.blend(act, sl, tubes * region, np.float32(rng.uniform(2.0, 5.0)))


# lymph-node stations (y, |x|, d) in default mm; a tumour at a station is placed on a random side
_NODES = [
    (250, 45, 0),
    (300, 70, 0),
    (360, 130, 10),
    (400, 20, 0),
    (440, 40, 10),
    (650, 25, 40),
    (760, 60, 20),
    (850, 85, -30),
]


def _tumour_centre(frame: _Frame, body: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A tumour position (voxel index): a lymph-node station, a lung, the liver, bone or anywhere in the trunk."""
    kind = rng.choice(["node", "lung", "liver", "bone", "trunk"], p=[0.45, 0.15, 0.12, 0.13, 0.15])
    side = rng.choice([-1, 1])
    u = rng.uniform
    if kind == "node":
        y, x, d = _NODES[int(rng.integers(len(_NODES)))]
        mm = (y + u(-20, 20), side * x + u(-15, 15), d + u(-25, 25))
    elif kind == "lung":
        mm = (430 + u(-90, 90), side * (78 + u(-40, 40)), u(-50, 60))
    elif kind == "liver":
        mm = (560 + u(-60, 60), -62 + u(-70, 60), u(-50, 50))
    elif kind == "bone":
        mm = (u(280, 780), u(-12, 12), 75 + u(-10, 10)) if rng.random() < 0.7 else (u(740, 800), side * u(60, 110), 40)
    else:
        trunk = body >= 0.5
        trunk[: int(frame.shape[0] * 0.25)] = False
        trunk[int(frame.shape[0] * 0.86) :] = False
        picked = S.sample_in_mask(rng, trunk, 1)
        return picked[0].astype(float) if len(picked) else frame.vox(500, 0, 0)
    return frame.vox(*mm)


def _tumours(
    frame: _Frame, act: np.ndarray, body: np.ndarray, rng: np.random.Generator, max_tumours: int
) -> tuple[np.ndarray, int]:
    """Blend 0..max_tumours hot lesions into ``act``; return the 2D label of the visible ones and the count.

    A lesion is labelled (its projected outline, where it is not covered by something at least
    twice as hot) if it shows, i.e. reaches 70% of the projection over half its footprint; a
    lesion drowned in liver uptake or hidden behind the bladder is not.
    """
    n = 0 if rng.random() < _P_CONTROL or max_tumours < 1 else int(np.ceil(max_tumours * rng.random() ** 1.5))
    spacing = SPACING[0] * frame.scale[0] / frame.scale  # physical mm per voxel of the 3D volume
    centre, lesions = None, []
    for _ in range(n):
        if centre is None or rng.random() < 0.6:
            centre = _tumour_centre(frame, body, rng)
        else:  # a conglomerate: next to the previous lesion
            centre = centre + rng.normal(0, 8, size=3) * frame.scale
        radius = float(np.exp(rng.uniform(np.log(6), np.log(30))))  # physical mm: does not scale with the grid
        sl, occ = S.star_blob(rng, act.shape, spacing, centre, radius, lobes=4, lobulation=0.25, elongation=0.3)
        occ = occ * (body[sl] >= 0.5)
        value = np.float32(np.exp(rng.uniform(np.log(3), np.log(20)))) * (np.float32(1) + 0.15 * frame.tex[sl])
        S.blend(act, sl, occ, value)
        lesions.append((sl, (occ >= 0.5).any(axis=1), np.where(occ >= 0.5, value, 0).max(axis=1)))
    mip = act.max(axis=1)
    label = np.zeros(mip.shape, bool)
    for sl, footprint, peak in lesions:
        sl2 = (sl[0], sl[2])
        if footprint.any() and np.mean(peak[footprint] >= 0.7 * mip[sl2][footprint]) >= 0.5:
            label[sl2] |= footprint & (2 * peak >= mip[sl2])
    return ndi.binary_fill_holes(label), n


def generate(rng: np.random.Generator, shape: tuple[int, ...], options: Mapping[str, Any]) -> PhantomCase:
    """Generate one PET MIP (SUV, float32) and its tumour label (uint8)."""
    frame = _Frame((int(shape[0]), int(shape[1])))
    frame.tex = S.smooth_noise(rng, frame.shape, 1.5)
    body, arms = _body(frame, rng)
    act = body * np.float32(rng.uniform(0.5, 1.0)) * (np.float32(1) + np.float32(0.1) * frame.tex)
    _organs(frame, act, rng, arms)
    visible, n = _tumours(frame, act, body, rng, int(options.get("max_tumours", 10)))
    act = np.maximum(act * body, 0)  # nothing outside the body
    noisy = act + np.sqrt(act) * rng.standard_normal(act.shape, dtype=np.float32) * np.float32(rng.uniform(0.5, 0.9))
    noisy = ndi.gaussian_filter(noisy, (1.0, 0.7, 1.0)) + rng.standard_normal(act.shape, dtype=np.float32) * 0.01
    mip = np.clip(noisy.max(axis=1) * np.float32(rng.uniform(0.85, 1.15)), 0, None).astype(np.float32)
    origin = S.centred_origin(mip.shape, SPACING)
    return PhantomCase(
        images=[Volume(mip, SPACING, origin)],
        label=Volume(visible.astype(np.uint8), SPACING, origin),
        info={"tumours": n, "control": not visible.any()},
    )


SPEC = PHANTOMS.register(
    "pet-mip",
    PhantomSpec(
        name="pet-mip",
        description="2D whole-body FDG-PET maximum-intensity projections (SUV); ~25% healthy controls",
        channel_names={0: "PET"},
        labels={"background": 0, "tumor": 1},
        default_shape=DEFAULT_SHAPE,
        default_cases=20,
        generate=generate,
        options={"max_tumours": (10, "largest number of tumours in a case (0 gives only controls)")},
    ),
)
