"""Render docs/images/interactive-encodings.png: extreme points and their encodings on a phantom.

Run from the repository root (needs matplotlib; a few seconds)::

    python tools/make_interactive_pictures.py [--out docs/images] [--seed 0]

Takes the soft-tissue-mri case (among the first eight) with the largest tumour, simulates six
jittered extreme points, crops the case to the points plus 15 mm, and shows the axial slice
through the tumour's centre: the MRI with the tumour outline and the points (in-plane points as
dots, the two z-extreme points as crosses at their in-plane position), then the geodesic map
(lamb 1, InteractiveNet's setting), the geodesic map with lamb 0.5, and the Gaussian map.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from voxseg.dataset.phantoms import generate_case
from voxseg.interactive import crop_to_points, encode_points, extreme_points


def render(out: Path, seed: int) -> Path:
    cases = [generate_case("soft-tissue-mri", i, seed=seed) for i in range(8)]
    index = int(np.argmax([c.info["tumor_voxels"] for c in cases]))
    case = cases[index]
    spacing = case.images[0].spacing
    image, label = case.images[0].array, case.label.array
    points = extreme_points(label, rng=seed, inward=(1, 2, 2), jitter=1.0, spacing=spacing)
    (img, lab), box = crop_to_points([image, label], points, margin_mm=15.0, spacing=spacing)
    img = (img - img.mean()) / img.std()
    local = points - np.asarray(box.start)
    maps = [
        ("geodesic, lamb=1 (InteractiveNet)", encode_points(img, local, method="geodesic", spacing=spacing)),
        (
            "geodesic, lamb=0.5, scale=10",
            encode_points(img, local, method="geodesic", spacing=spacing, lamb=0.5, scale=10.0),
        ),
        ("gaussian, sigma=5 mm", encode_points(img, local, method="gaussian", spacing=spacing, sigma_mm=5.0)),
    ]
    z = int(np.rint(np.argwhere(lab).mean(axis=0)[0]))
    aspect = spacing[1] / spacing[2]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.6), constrained_layout=True)
    axes[0].imshow(img[z], cmap="gray", aspect=aspect)
    axes[0].contour(lab[z], levels=[0.5], colors="tab:red", linewidths=1)
    for k, (_, y, x) in enumerate(local):
        marker = "x" if k < 2 else "o"
        axes[0].plot(x, y, marker, color="yellow", markersize=8, markeredgewidth=2, fillstyle="none")
    axes[0].set_title(f"soft-tissue-mri case {index}, slice {box.start[0] + z}\n6 extreme points (x: z-ends)")
    for ax, (title, gmap) in zip(axes[1:], maps, strict=True):
        shown = ax.imshow(gmap[z], cmap="magma", vmin=0, vmax=1, aspect=aspect)
        ax.contour(lab[z], levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_title(title)
    fig.colorbar(shown, ax=axes[1:], shrink=0.8, label="encoding value")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    out.mkdir(parents=True, exist_ok=True)
    path = out / "interactive-encodings.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(render(args.out, args.seed))


if __name__ == "__main__":
    main()
