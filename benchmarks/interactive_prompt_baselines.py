"""Dice from six extreme points without any learning: the floor an interactive model must beat.

One command, prints a table::

    python benchmarks/interactive_prompt_baselines.py               # 10 soft-tissue-mri cases
    python benchmarks/interactive_prompt_baselines.py --cases 20 --clicks 5

Each case is a soft-tissue-mri phantom (seed 1, so not the cases a model trains on by default)
at its default size. A simulated user (:func:`voxseg.interactive.simulate_user`) gives six
extreme points with 2 mm jitter and then corrective clicks; each click adds or removes a ball
of 3 mm around the click. Non-learned segmenters of the points:

- ``box``: the points' bounding box (the crop an interactive model sees, without margin);
- ``ellipsoid``: the ellipsoid inscribed in that box;
- ``geodesic``: the ellipsoid dilated by 2 voxels in plane, kept where InteractiveNet's geodesic
  map (lamb 1, on the z-scored crop) exceeds ``exp(-1)``.

The baseline row is the box. Columns: mean Dice after the points and after each click.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage as ndi

from voxseg.dataset.phantoms import generate_case
from voxseg.fingerprint.cropping import CropBox, uncrop
from voxseg.interactive import crop_to_points, geodesic_map, mean_curve, simulate_user


def _ellipsoid(shape: tuple[int, ...]) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float64)
    radius = [max(n / 2, 0.5) for n in shape]
    centre = [(n - 1) / 2 for n in shape]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radius, strict=True)) <= 1.0


def _apply_clicks(mask, clicks, spacing, radius_mm=3.0):
    if not clicks:
        return mask
    last = clicks[-1]
    grid = np.indices(mask.shape, dtype=np.float64)
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, last.position, spacing, strict=True))
    out = mask.copy()
    out[d2 <= radius_mm**2] = last.positive
    return out


def make_segmenter(kind: str, image: np.ndarray, spacing: tuple[float, ...]):
    def segment(points, clicks, previous):
        if previous is not None:
            return _apply_clicks(previous, clicks, spacing)
        _, box = crop_to_points([image], points)
        if kind == "box":
            mask = np.ones(box.shape, bool)
        elif kind == "ellipsoid":
            mask = _ellipsoid(box.shape)
        else:
            (wide,), wbox = crop_to_points([image], points, margin=(0, 2, 2))
            norm = (wide - wide.mean()) / (wide.std() + 1e-6)
            gmap = geodesic_map(norm, points - np.asarray(wbox.start), spacing=spacing)
            shape_prior = ndi.binary_dilation(
                uncrop(_ellipsoid(box.shape), _shift(box, wbox), wide.shape), iterations=2
            )
            return uncrop(shape_prior & (gmap > np.exp(-1.0)), wbox, image.shape)
        return uncrop(mask, box, image.shape)

    return segment


def _shift(box: CropBox, outer: CropBox) -> CropBox:
    """``box`` in the coordinates of the crop ``outer``."""
    start = tuple(a - o for a, o in zip(box.start, outer.start, strict=True))
    stop = tuple(b - o for b, o in zip(box.stop, outer.start, strict=True))
    return CropBox(start, stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--clicks", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    kinds = ("box", "ellipsoid", "geodesic")
    curves = {k: [] for k in kinds}
    seconds = dict.fromkeys(kinds, 0.0)
    for index in range(args.cases):
        case = generate_case("soft-tissue-mri", index, seed=args.seed)
        image, label, spacing = case.images[0].array, case.label.array, case.label.spacing
        for kind in kinds:
            start = time.perf_counter()
            curve = simulate_user(
                make_segmenter(kind, image, spacing),
                label,
                max_clicks=args.clicks,
                rng=np.random.default_rng([args.seed, index]),
                inward=(1, 2, 2),
                jitter=2.0,
                spacing=spacing,
            )
            seconds[kind] += time.perf_counter() - start
            curves[kind].append(curve)
    base = mean_curve(curves["box"])
    header = " ".join(f"{'dice@' + str(k):>8s}" for k in range(args.clicks + 1))
    print(f"soft-tissue-mri seed {args.seed}, {args.cases} cases, 6 jittered points then {args.clicks} clicks")
    print(f"{'segmenter':12s} {header} {'vs box@0':>9s} {'s/case':>7s}")
    for kind in kinds:
        mean = mean_curve(curves[kind])
        cells = " ".join(f"{v:8.3f}" for v in mean)
        print(f"{kind:12s} {cells} {mean[0] - base[0]:+9.3f} {seconds[kind] / args.cases:7.2f}")


if __name__ == "__main__":
    main()
