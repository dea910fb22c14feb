"""``mouse-spinal-cord``: ex-vivo T1w MRI of a mouse spinal-cord segment, grey/white matter (seed story 003).

The cord runs along z (it drifts and twists a little). Its cross-section is an ellipse with a
ventral median fissure; the grey matter is a butterfly built from thick segments (dorsal horns,
ventral horns, intermediate zone, commissure around the central canal) whose sizes change
smoothly along z, as between the cervical enlargement and the thoracic cord. White matter is the
rest of the cord. The cord lies in a dark perfluoropolyether (Fomblin-like) medium with scraps
of dura and nerve roots (cord-like intensity, label 0). T1w contrast: grey matter is a little
darker than white matter.

Option ``annotated_slices=K`` keeps the labels of K axial slices only (evenly spread with
jitter); every other voxel gets the ignore label 3, as for sparsely annotated training data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from voxseg.dataset.phantoms import _shapes as S
from voxseg.dataset.phantoms.base import PHANTOMS, PhantomCase, PhantomSpec
from voxseg.errors import ConfigError
from voxseg.io import Volume

__all__ = ["SPEC", "generate", "annotated_slice_indices"]

SPACING = (0.05, 0.05, 0.05)
DEFAULT_SHAPE = (64, 80, 80)
IGNORE = 3


def _series(rng: np.random.Generator, n: int, base: float, amp: float, knots: int = 4) -> np.ndarray:
    """A smooth random function of z (length ``n``): ``base`` plus up to ``amp`` of slow variation."""
    xs = np.linspace(0, n - 1, knots)
    ys = rng.uniform(-1, 1, size=knots)
    t = np.arange(n)
    # cosine interpolation between knots: smooth, no overshoot
    idx = np.clip(np.searchsorted(xs, t, side="right") - 1, 0, knots - 2)
    f = (t - xs[idx]) / (xs[idx + 1] - xs[idx])
    w = (1 - np.cos(np.pi * f)) / 2
    return (base + amp * (ys[idx] * (1 - w) + ys[idx + 1] * w)).astype(np.float32)


def _cord_frame(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
    """Per-slice cord centre, semi-axes and rotation; normalised cross-section coordinates (u, v)."""
    nz, ny, nx = shape
    _, y, x = S.mm_grid(shape, (1.0, 1.0, 1.0))
    col = (nz, 1, 1)
    ax = _series(rng, nz, nx * rng.uniform(0.28, 0.33), nx * 0.02).reshape(col)
    ay = _series(rng, nz, ny * rng.uniform(0.2, 0.24), ny * 0.015).reshape(col)
    cx = _series(rng, nz, 0.0, nx * 0.025, knots=3).reshape(col)
    cy = _series(rng, nz, 0.0, ny * 0.025, knots=3).reshape(col)
    theta = _series(rng, nz, rng.uniform(-0.15, 0.15), 0.08).reshape(col)
    cos, sin = np.cos(theta), np.sin(theta)
    xr = (x - cx) * cos + (y - cy) * sin
    yr = -(x - cx) * sin + (y - cy) * cos
    u, v = xr / ax, yr / ay  # v < 0 dorsal (top of the image), v > 0 ventral
    scale = (ax + ay) / 2  # voxels per normalised unit
    return {"u": u, "v": v, "ax": ax, "ay": ay, "scale": scale, "nz": nz}


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (merges the horns into one butterfly without creases)."""
    h = np.clip(np.float32(k) - np.abs(a - b), 0, None) / np.float32(k)
    return np.minimum(a, b) - h * h * np.float32(k / 4)


def _capsule_z(u: np.ndarray, v: np.ndarray, p0: tuple, p1: tuple) -> np.ndarray:
    """Distance (normalised units) to the segment p0 -> p1 whose end points may vary with z."""
    du, dv = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((u - p0[0]) * du + (v - p0[1]) * dv) / (du * du + dv * dv + 1e-9), 0, 1)
    return np.sqrt((u - p0[0] - t * du) ** 2 + (v - p0[1] - t * dv) ** 2)


def _grey_matter(rng: np.random.Generator, f: dict) -> np.ndarray:
    """Signed distance (voxels) to the grey-matter butterfly; its shape varies smoothly along z."""
    nz, u, v = f["nz"], f["u"], f["v"]
    col = (nz, 1, 1)

    def s(base: float, amp: float) -> np.ndarray:
        return _series(rng, nz, base, amp).reshape(col)

    d = _capsule_z(u, v, (s(-0.18, 0.03), s(0.05, 0.02)), (s(0.18, 0.03), s(0.05, 0.02))) - 0.11
    for side in (-1, 1):
        hx, hy = s(0.3, 0.05), s(-0.58, 0.06)  # dorsal horn head
        neck = _capsule_z(u, v, (side * 0.08, s(0.0, 0.02)), (side * hx, hy)) - s(0.08, 0.015)
        head = _capsule_z(u, v, (side * hx * 0.9, hy + 0.04), (side * hx * 1.1, hy - 0.1)) - s(0.12, 0.02)
        vx, vy = s(0.44, 0.06), s(0.42, 0.06)  # ventral horn: a bulbous end on a short stalk
        stalk = _capsule_z(u, v, (side * 0.1, s(0.12, 0.03)), (side * vx * 0.8, vy * 0.8)) - 0.15
        horn = _capsule_z(u, v, (side * vx * 0.9, vy * 0.85), (side * vx * 1.05, vy)) - s(0.2, 0.04)
        lateral = _capsule_z(u, v, (side * 0.15, s(0.05, 0.02)), (side * s(0.45, 0.05), s(0.05, 0.04))) - 0.09
        for part in (neck, head, stalk, horn, lateral):
            d = _smin(d, part, 0.1)
    return d * f["scale"]


def annotated_slice_indices(rng: np.random.Generator, nz: int, k: int) -> np.ndarray:
    """``k`` distinct axial slice indices spread evenly over ``nz`` slices, each jittered a little."""
    if k < 0 or k > nz:
        raise ConfigError(f"annotated_slices={k}: must be between 0 and the {nz} slices along z (0 = dense labels)")
    gap = nz / k
    base = (np.arange(k) + 0.5) * gap
    jitter = rng.uniform(-0.25, 0.25, size=k) * max(gap - 1, 0)
    return np.clip(np.floor(base + jitter), 0, nz - 1).astype(int)


def _cord(rng: np.random.Generator, f: dict) -> np.ndarray:
    """Soft occupancy of the cord: a slightly wobbly ellipse with a ventral median fissure."""
    u, v, scale = f["u"], f["v"], f["scale"]
    angle = np.arctan2(v, u)
    wobble = np.float32(1.0)
    for k in (2, 3):
        wobble = wobble + np.float32(rng.uniform(0, 0.03)) * np.cos(k * angle + np.float32(rng.uniform(0, 6.3)))
    cord = S.soft((np.sqrt(u * u + v * v) / wobble - 1) * scale, 1.0)
    fissure = S.soft(np.abs(u) * f["ax"] - np.float32(0.6), 1.0) * S.soft((np.float32(0.7) - v) * f["ay"], 1.0)
    return cord * (1 - fissure)


def _surroundings(rng: np.random.Generator, f: dict, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Scraps of dura (a thin broken ring around the cord) and nerve roots, as soft occupancies."""
    u, v, scale = f["u"], f["v"], f["scale"]
    gap = np.float32(rng.uniform(1.12, 1.3))
    ring = S.soft(np.abs(np.sqrt(u * u + v * v) - gap) * scale - np.float32(0.5), 1.0)
    dura = ring * (S.smooth_noise(rng, shape, 6.0) > np.float32(rng.uniform(-0.3, 0.6)))
    roots = np.zeros(shape, np.float32)
    nz = shape[0]
    for _ in range(int(rng.integers(1, 5))):
        side = rng.choice([-1.0, 1.0])
        start = np.array(
            [
                rng.uniform(0, nz),
                (shape[1] - 1) / 2 + rng.uniform(-0.3, 0.3) * shape[1],
                (shape[2] - 1) / 2 + side * rng.uniform(0.36, 0.45) * shape[2],
            ]
        )
        end = start + np.array(
            [rng.uniform(0.3, 0.6) * nz, rng.uniform(-0.1, 0.1) * shape[1], side * rng.uniform(0.0, 0.1) * shape[2]]
        )
        sl, occ = S.tube_box(shape, start, end, max(0.8, rng.uniform(0.02, 0.04) * shape[2]))
        roots[sl] = np.maximum(roots[sl], occ)
    return dura, roots


def generate(rng: np.random.Generator, shape: tuple[int, ...], options: Mapping[str, Any]) -> PhantomCase:
    """Generate one cord MRI case (float32) with white/grey-matter labels (uint8; ignore = 3 if sparse)."""
    shape = tuple(int(n) for n in shape)
    f = _cord_frame(rng, shape)
    cord = _cord(rng, f)
    gm = np.minimum(S.soft(_grey_matter(rng, f) + S.smooth_noise(rng, shape, 3.0) * np.float32(0.4), 1.0), cord)
    dura, roots = _surroundings(rng, f, shape)
    wm_level = 800.0
    contrast = rng.uniform(0.12, 0.25) * (1 if rng.random() < 0.85 else -1)  # GM usually darker in T1w
    tex = S.smooth_noise(rng, shape, 2.0)
    img = np.full(shape, np.float32(rng.uniform(5, 25)), np.float32)  # Fomblin: almost no signal
    S.blend(img, (), dura, wm_level * rng.uniform(0.35, 0.6))
    S.blend(img, (), roots, np.float32(wm_level * rng.uniform(0.85, 1.0)) * (1 + np.float32(0.04) * tex))
    dorsal_columns = S.soft((f["v"] + np.float32(0.45)) * f["scale"], 3.0) * S.soft(np.abs(f["u"]) - 0.2, 0.1)
    wm = np.float32(wm_level) * (1 + np.float32(0.035) * tex - np.float32(0.04) * dorsal_columns)
    S.blend(img, (), cord, wm)
    S.blend(img, (), gm, np.float32(wm_level * (1 - contrast)) * (1 + np.float32(0.03) * tex))
    canal = S.soft(np.sqrt(f["u"] ** 2 + (f["v"] - np.float32(0.05)) ** 2) * f["scale"] - np.float32(0.7), 1.0)
    S.blend(img, (), canal, wm_level * 0.45)
    img = img * S.bias_field(rng, shape, rng.uniform(0.05, 0.15))
    img = S.rician(rng, img, float(rng.uniform(0.025, 0.05) * wm_level))
    label = np.where(cord >= 0.5, np.where(gm >= 0.5, 2, 1), 0).astype(np.uint8)
    k = int(options.get("annotated_slices", 0) or 0)
    kept = annotated_slice_indices(rng, shape[0], k) if k > 0 else np.arange(shape[0])
    if k > 0:
        sparse = np.full(shape, IGNORE, np.uint8)
        sparse[kept] = label[kept]
        label = sparse
    origin = S.centred_origin(shape, SPACING)
    return PhantomCase(
        images=[Volume(img.astype(np.float32), SPACING, origin)],
        label=Volume(label, SPACING, origin),
        info={"annotated_slices": [int(i) for i in kept] if k > 0 else None, "gm_darker": bool(contrast > 0)},
    )


SPEC = PHANTOMS.register(
    "mouse-spinal-cord",
    PhantomSpec(
        name="mouse-spinal-cord",
        description="3D ex-vivo T1w MRI of a mouse spinal cord segment (0.05 mm) with white- and grey-matter labels",
        channel_names={0: "MRI"},
        labels={"background": 0, "white matter": 1, "grey matter": 2},
        default_shape=DEFAULT_SHAPE,
        default_cases=20,
        generate=generate,
        options={"annotated_slices": (0, "keep labels on K axial slices only; the rest = ignore label")},
    ),
)
