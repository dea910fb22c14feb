"""Speed of the prompt encodings on a 128³ crop: the points → mask latency budget (2 s).

One command, prints a table::

    python benchmarks/interactive_encoding.py            # 128³, best of 3
    python benchmarks/interactive_encoding.py --size 96 --repeats 5

The volume is a z-scored soft-tissue-mri phantom case resampled (nearest, by index repetition)
to ``S³``, with six extreme points of its tumour. Rows: extreme-point simulation, the Gaussian
map, and the geodesic map at 1-4 raster-scan iterations for ``lamb`` 1 (InteractiveNet's
setting) and 0.5. The baseline is scipy's Euclidean distance transform from the same points
(a C implementation of the simplest distance map), so ``x baseline`` reads "this many EDTs".
The last column is the largest difference to a converged (8-iteration) geodesic map. Wall and
CPU seconds are both shown (the work is single-threaded numpy, so on an idle machine they agree;
on a shared one, CPU time is the fairer figure).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage as ndi

from voxseg.dataset.phantoms import generate_case
from voxseg.interactive import extreme_points, gaussian_map, geodesic_map, seed_mask


def _case(size: int) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    case = generate_case("soft-tissue-mri", 0)
    image, label = case.images[0].array, case.label.array
    index = [np.linspace(0, n - 1, size).round().astype(int) for n in image.shape]
    grid = np.ix_(*index)
    image = image[grid].astype(np.float32)
    image = (image - image.mean()) / image.std()
    spacing = tuple(float(s) * n / size for s, n in zip(case.images[0].spacing, case.images[0].shape, strict=True))
    return image, label[grid], spacing


def _best(fn, repeats: int) -> tuple[tuple[float, float], object]:
    """Best wall time and best CPU time of ``repeats`` calls (CPU time is robust to a busy machine)."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return (min(walls), min(cpus)), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    image, label, spacing = _case(args.size)
    points = extreme_points(label, inward=2, spacing=spacing)
    seeds = seed_mask(image.shape, points)
    base, _ = _best(lambda: ndi.distance_transform_edt(~seeds, sampling=spacing), args.repeats)
    rows = [("euclidean EDT (scipy, baseline)", base, None)]
    t, _ = _best(lambda: extreme_points(label, inward=2, spacing=spacing), args.repeats)
    rows.append(("extreme points from the label", t, None))
    t, _ = _best(lambda: gaussian_map(image.shape, points, spacing=spacing, sigma_mm=5.0), args.repeats)
    rows.append(("gaussian map", t, None))
    for lamb in (1.0, 0.5):
        converged = geodesic_map(image, points, spacing=spacing, lamb=lamb, iterations=8)
        for iterations in (1, 2, 3, 4):
            t, gmap = _best(
                lambda lamb=lamb, it=iterations: geodesic_map(image, points, spacing=spacing, lamb=lamb, iterations=it),
                args.repeats,
            )
            diff = float(np.abs(gmap - converged).max())
            rows.append((f"geodesic map lamb={lamb:g} iterations={iterations}", t, diff))
    print(f"volume {image.shape} spacing {tuple(round(s, 3) for s in spacing)}, best of {args.repeats}")
    print(f"{'encoding':44s} {'wall s':>7s} {'cpu s':>7s} {'x baseline (cpu)':>17s} {'max |diff| to converged':>24s}")
    for name, (wall, cpu), diff in rows:
        diff_text = "" if diff is None else f"{diff:.4f}"
        print(f"{name:44s} {wall:7.3f} {cpu:7.3f} {cpu / base[1]:17.1f} {diff_text:>24s}")


if __name__ == "__main__":
    main()
