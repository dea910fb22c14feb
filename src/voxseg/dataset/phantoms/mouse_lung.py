"""``mouse-lung-ct``: micro-CT of a mouse thorax with lung tumour nodules (seed story 000).

Anatomy is laid out in fractions of the field of view (the mouse is scaled to fit it); the
voxel size stays 0.1 mm. Array axes are (z, y, x) with index z growing towards the head, y
towards the back and x towards the animal's left (LPS-like); the mouse lies supine on a
scanner bed at the bottom of axial slices. (It is built caudal-first and flipped at the end.)
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

SPACING = (0.1, 0.1, 0.1)
DEFAULT_SHAPE = (96, 112, 112)
_P_NO_NODULES = 0.2
_R_MIN, _R_MAX = 3.5, 8.0  # nodule radii in voxels at the default size (log-uniform); 3.5 ≈ the seed's 150-voxel floor


def _body(grid: list[np.ndarray], shape: tuple[int, ...], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Body outline (soft), its normalised cross-section radius, and the polar angle around the body axis."""
    z, y, x = grid
    nz, ny, nx = shape
    zf = z / np.float32(nz / 2)  # -1 cranial .. +1 caudal
    widen = np.float32(1.0) + np.float32(0.08) * np.tanh(zf * 2)  # the thorax widens caudally
    ry = np.float32(ny / 2 * rng.uniform(0.6, 0.68)) * widen
    rx = np.float32(nx / 2 * rng.uniform(0.78, 0.86)) * widen
    cy = np.float32(ny / 2 * rng.uniform(-0.06, 0.02))
    rho = np.sqrt(((y - cy) / ry) ** 2 + (x / rx) ** 2)
    body = S.soft((rho - 1.0) * np.minimum(ry, rx), 1.0)
    bed_y = cy + ry * np.float32(0.93)  # the back is flattened against the bed
    body = np.minimum(body, S.soft(y - bed_y, 1.0))
    return {"body": body, "rho": rho, "angle": np.arctan2(x, y - cy), "cy": cy, "ry": ry, "rx": rx, "bed_y": bed_y}


def _organs(grid: list[np.ndarray], shape: tuple[int, ...], b: dict, rng: np.random.Generator) -> dict[str, Any]:
    """Soft occupancies of lungs, heart, liver and stomach gas, laid out in fractions of the body."""
    z, y, x = grid
    nz = shape[0]
    zf = z / np.float32(nz / 2)
    cy, ry, rx = b["cy"], b["ry"].mean(), b["rx"].mean()
    dome = np.float32(rng.uniform(0.25, 0.45)) + np.float32(0.7) * (((y - cy) / ry) ** 2 + (x / rx) ** 2)
    below_dome = S.soft((dome - zf) * np.float32(nz / 2), 1.0)  # abdomen side of the diaphragm
    heart_c = (nz / 2 * rng.uniform(0.05, 0.25), cy - ry * rng.uniform(0.25, 0.35), rx * rng.uniform(0.0, 0.15))
    heart_r = (nz / 2 * rng.uniform(0.26, 0.32), ry * rng.uniform(0.32, 0.38), rx * rng.uniform(0.26, 0.32))
    heart = S.ellipsoid(grid, heart_c, heart_r, 1.0)
    heart_pad = S.ellipsoid(grid, heart_c, [r + 2.0 for r in heart_r], 1.0)
    inner = S.soft((b["rho"] - np.float32(0.84)) * np.float32(ry), 1.0)  # inside the rib cage
    spine_pad = S.ellipsoid([y, x], (cy + ry * 0.6, 0.0), (ry * 0.34, rx * 0.2), 1.0)
    mediastinum = S.soft(np.abs(x) - np.float32(rx * 0.06), 1.0) * S.soft(cy - y, 1.0)
    lungs = []
    for side, size in ((-1, rng.uniform(1.0, 1.1)), (1, rng.uniform(0.85, 0.95))):  # right lung is larger
        centre = (nz / 2 * rng.uniform(0.0, 0.1), cy + ry * 0.1, side * rx * 0.45)
        radii = (nz / 2 * 0.82, ry * 0.85, rx * 0.5 * size)
        # egg-shaped: narrower towards the apex (cranial, negative z here)
        from_apex = (z - np.float32(centre[0] - radii[0])) / np.float32(2 * radii[0])
        taper = np.float32(0.55) + np.float32(0.45) * np.clip(from_apex * np.float32(1.8), 0, 1)
        tapered = [
            z,
            np.float32(centre[1]) + (y - np.float32(centre[1])) / taper,
            np.float32(centre[2]) + (x - np.float32(centre[2])) / taper,
        ]
        lungs.append(S.ellipsoid(tapered, centre, radii, 1.0))
    lung = np.maximum(lungs[0], lungs[1])
    lung = np.minimum(lung, inner)
    lung = np.minimum(lung, 1 - np.maximum(np.maximum(heart_pad, spine_pad), mediastinum))
    lung = np.minimum(lung, 1 - below_dome)
    liver = np.minimum(below_dome, S.soft((b["rho"] - 0.9) * ry, 1.0))
    gas_c = (nz / 2 * rng.uniform(0.75, 0.95), cy - ry * 0.1, rx * rng.uniform(0.3, 0.5))
    gas = S.ellipsoid(grid, gas_c, (nz / 2 * 0.12, ry * 0.25, rx * 0.2), 1.0) * below_dome
    hilum = (heart_c[0] - nz / 2 * 0.25, cy + ry * 0.05, 0.0)
    return {"lung": lung, "heart": heart, "liver": liver, "gas": gas, "hilum": hilum}


def _bones(
    grid: list[np.ndarray], shape: tuple[int, ...], b: dict, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Soft occupancy and HU of ribs and spine (cortical shell, marrow, costal cartilage)."""
    z, y, x = grid
    nz, ny, nx = shape
    sf = min(ny, nx) / 112
    cy, ry, rx = b["cy"], float(b["ry"].mean()), float(b["rx"].mean())
    period = np.float32(nz * rng.uniform(0.085, 0.1))
    phase = np.float32(rng.uniform(0, period))
    # ribs: periodic along z, tilted caudally towards the sternum, in the body wall
    dorsal_angle = np.abs(b["angle"]).astype(np.float32)  # 0 at the spine, pi at the sternum
    zr = z - np.float32(rng.uniform(0.9, 1.3)) * period * dorsal_angle / np.float32(np.pi) - phase
    dz = np.abs(np.mod(zr, period) - period / 2)
    dr = (b["rho"] - np.float32(0.88)) * np.float32(ry)
    rib_r = np.float32(max(0.8, 1.4 * sf))
    zf = z / np.float32(nz / 2)
    ribs = S.soft(np.sqrt(dz * dz + dr * dr) - rib_r, 1.0) * S.soft(zf - 0.45, 0.1) * S.soft(-zf - 0.85, 0.1)
    ribs = ribs * S.soft(dorsal_angle - np.float32(2.7), 0.15)  # no bone at the sternum gap
    cartilage = S.soft(np.float32(2.3) - dorsal_angle, 0.3)  # ventral ends are costal cartilage
    rib_hu = np.float32(750) - np.float32(580) * cartilage
    # spine: vertebral bodies with discs, neural arches around the canal
    dzv = np.abs(np.mod(z - phase, period) - period / 2)
    segment = S.soft(dzv - period * np.float32(0.38), 1.0)
    vb_c, vb_r = (cy + ry * 0.5, 0.0), (ry * 0.12, rx * 0.1)
    body = S.ellipsoid([y, x], vb_c, vb_r, 1.0)
    marrow = S.ellipsoid([y, x], vb_c, (vb_r[0] - 1.2 * sf - 0.3, vb_r[1] - 1.2 * sf - 0.3), 1.0)
    canal_y, canal_r = cy + ry * 0.69, ry * 0.065
    arch_d = np.sqrt((y - np.float32(canal_y)) ** 2 + x * x)
    arch = S.soft(np.abs(arch_d - np.float32(canal_r * 1.45)) - np.float32(canal_r * 0.4), 1.0)
    process = S.soft(np.abs(x) - np.float32(max(0.6, 0.9 * sf)), 1.0) * S.soft(
        np.abs(y - np.float32(canal_y + ry * 0.15)) - np.float32(ry * 0.06), 1.0
    )
    arch = np.maximum(arch, process)
    spine = np.maximum(body, arch) * segment
    occ = np.maximum(ribs, spine)
    return occ, np.where(spine >= ribs, np.float32(950) - np.float32(600) * marrow, rib_hu)


def _vessels(rng: np.random.Generator, shape: tuple[int, ...], grid: list[np.ndarray], hilum: tuple) -> np.ndarray:
    """Soft occupancy of a branching-looking network of thin tubes (the lung vessels).

    The tubes are where two smooth random fields are both near zero (the intersection of two
    random surfaces is a set of random curves); they are thicker near the hilum.
    """
    sf = min(shape[1:]) / 112
    sigma = 4.5 * sf + 1.0
    n1 = S.smooth_noise(rng, shape, sigma)
    n2 = S.smooth_noise(rng, shape, sigma)
    d2 = sum((g - np.float32(h)) ** 2 for g, h in zip(grid, hilum, strict=True))
    near = np.exp(-d2 / np.float32(2 * (0.3 * shape[2]) ** 2))
    thickness = np.float32(0.16) * (np.float32(1.0) + np.float32(1.6) * near)
    r = np.sqrt(n1 * n1 + n2 * n2)
    return S.soft((r - thickness) * np.float32(sigma * 0.75), 1.0)


def _airways(img: np.ndarray, shape: tuple[int, ...], b: dict, hilum: tuple) -> None:
    """Trachea and main bronchi (air with a soft-tissue wall), in place."""
    nz, ny, nx = shape
    centre = np.array([(n - 1) / 2 for n in shape])
    sf = min(ny, nx) / 112
    radius = max(1.2, 2.2 * sf)
    ry, rx = float(b["ry"].mean()), float(b["rx"].mean())
    carina = centre + np.array([hilum[0], b["cy"] + ry * 0.05, 0.0])
    top = centre + np.array([-nz / 2 - 2, b["cy"] + ry * 0.15, 0.0])
    segments = [(top, carina, radius)]
    for side in (-1, 1):
        end = centre + np.array([hilum[0] + nz * 0.12, b["cy"] + ry * 0.15, side * rx * 0.4])
        segments.append((carina, end, radius * 0.75))
    for p0, p1, r in segments:
        sl, wall = S.tube_box(shape, p0, p1, r + 1.0)
        S.blend(img, sl, wall, 30.0)
    for p0, p1, r in segments:
        sl, lumen = S.tube_box(shape, p0, p1, r)
        S.blend(img, sl, lumen, -980.0)


def _nodules(
    img: np.ndarray,
    lung: np.ndarray,
    tex: np.ndarray,
    rng: np.random.Generator,
    hilum_idx: np.ndarray,
    max_nodules: int,
) -> tuple[np.ndarray, int]:
    """Draw 0..max_nodules lobulated nodules (with a feeding vessel) in the lungs; return label, count."""
    shape = img.shape
    sf = min(shape[1:]) / 112
    lung_hard = lung >= 0.5
    label = np.zeros(shape, dtype=bool)
    n = 0 if rng.random() < _P_NO_NODULES or max_nodules < 1 else int(np.ceil(max_nodules * rng.random() ** 1.6))
    r_max = max(2.0, _R_MAX * sf)
    r_min = min(r_max, max(1.0, _R_MIN * sf))
    for centre in S.sample_in_mask(rng, lung_hard, n):
        radius = float(np.exp(rng.uniform(np.log(r_min), np.log(r_max))))
        towards = hilum_idx - centre
        towards = towards / max(float(np.linalg.norm(towards)), 1e-6)
        end = centre + towards * (radius + rng.uniform(3, 10) * sf)
        sl, vessel = S.tube_box(shape, centre, end, max(0.6, rng.uniform(0.5, 0.9) * sf + 0.2))
        S.blend(img, sl, vessel * lung[sl], 35.0)
        sl, occ = S.star_blob(
            rng,
            shape,
            (1.0, 1.0, 1.0),
            centre,
            radius,
            lobes=int(rng.integers(3, 7)),
            lobulation=rng.uniform(0.1, 0.45),
            elongation=0.3,
        )
        value = np.float32(rng.uniform(10, 70)) + np.float32(12) * tex[sl]
        S.blend(img, sl, occ * lung[sl], value)
        label[sl] |= (occ >= 0.5) & lung_hard[sl]
    return label, n


def _render_tissue(
    grid: list[np.ndarray], shape: tuple[int, ...], b: dict, o: dict, tex: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """HU image of body wall, fat, abdomen, heart and lung parenchyma with vessels."""
    y = grid[1]
    img = np.float32(-1000) + b["body"] * (np.float32(1035) + np.float32(8) * tex)
    fat = b["body"] * S.soft((np.float32(0.92) - b["rho"]) * b["ry"], 1.0)
    S.blend(img, (), fat, np.float32(-90) + np.float32(10) * tex)
    S.blend(img, (), o["liver"], np.float32(rng.uniform(55, 75)) + np.float32(6) * tex)
    S.blend(img, (), o["heart"], np.float32(rng.uniform(35, 55)) + np.float32(5) * tex)
    S.blend(img, (), o["gas"], -900.0)
    base = np.float32(rng.uniform(-720, -560))
    gravity = np.float32(rng.uniform(30, 90)) * (y - b["cy"]) / b["ry"]  # dorsal lung is denser
    S.blend(img, (), o["lung"], base + gravity + np.float32(30) * tex)
    vessels = _vessels(rng, shape, grid, o["hilum"]) * o["lung"]
    S.blend(img, (), vessels, 40.0)
    normal = S.random_unit_vectors(rng, 1, 3)[0]
    offset = np.float32(rng.uniform(-0.2, 0.2) * shape[2] / 2)
    plane = np.abs(sum(g * np.float32(c) for g, c in zip(grid, normal, strict=True)) - offset)
    fissure = S.soft(plane - np.float32(0.3), 1.0) * o["lung"] * S.soft(grid[2], 1.0)  # right lung only
    S.blend(img, (), fissure, np.float32(-350))
    return img


def generate(rng: np.random.Generator, shape: tuple[int, ...], options: Mapping[str, Any]) -> PhantomCase:
    """Generate one mouse thorax micro-CT case (HU, float32) and its nodule label (uint8)."""
    shape = tuple(int(n) for n in shape)
    grid = S.mm_grid(shape, (1.0, 1.0, 1.0))  # voxel units, centred
    b = _body(grid, shape, rng)
    o = _organs(grid, shape, b, rng)
    tex = S.smooth_noise(rng, shape, 1.2)
    img = _render_tissue(grid, shape, b, o, tex, rng)
    _airways(img, shape, b, o["hilum"])
    centre = np.array([(n - 1) / 2 for n in shape])
    label, n = _nodules(img, o["lung"], tex, rng, centre + np.asarray(o["hilum"]), int(options.get("max_nodules", 15)))
    bone, bone_hu = _bones(grid, shape, b, rng)
    S.blend(img, (), bone * b["body"], bone_hu)
    y = grid[1]
    plate = S.soft(np.abs(y - b["bed_y"] - np.float32(2.5)) - np.float32(1.5), 1.0) * S.soft(
        np.abs(grid[2]) - 0.45 * shape[2], 1
    )
    S.blend(img, (), np.broadcast_to(plate, shape), float(rng.uniform(-50, 150)))
    img = ndi.gaussian_filter(img, 0.6)  # scanner point-spread function
    img = (img + np.float32(1000)) * S.bias_field(rng, shape, 0.02, order=1) - np.float32(1000)
    noise = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 0.7)
    img += noise * np.float32(rng.uniform(18, 40) / max(float(noise.std()), 1e-6))
    img = np.ascontiguousarray(np.clip(img, -1024, 3071)[::-1], dtype=np.float32)  # index z grows cranially
    label = np.ascontiguousarray(label[::-1])
    origin = S.centred_origin(shape, SPACING)
    return PhantomCase(
        images=[Volume(img, SPACING, origin)],
        label=Volume(label.astype(np.uint8), SPACING, origin),
        info={"nodules": n},
    )


SPEC = PHANTOMS.register(
    "mouse-lung-ct",
    PhantomSpec(
        name="mouse-lung-ct",
        description="3D micro-CT (HU) of a mouse thorax with 0-15 lobulated lung tumour nodules",
        channel_names={0: "CT"},
        labels={"background": 0, "tumor": 1},
        default_shape=DEFAULT_SHAPE,
        default_cases=24,
        generate=generate,
        options={"max_nodules": (15, "largest number of nodules in a case (0 gives only negatives)")},
    ),
)
