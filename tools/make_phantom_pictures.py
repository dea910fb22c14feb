"""Render docs/images/phantom-NAME.png: mid-slices of one phantom case with its label overlaid.

Run from the repository root (takes a few seconds)::

    python tools/make_phantom_pictures.py [--out docs/images] [--seed 0] [NAME ...]

For each phantom the case (among the first eight of the seed, default size) with the most
labelled objects is shown, so the picture has something to look at. The first row has the label
overlaid, the second shows the same slices without it, further rows show the other channels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from voxseg.dataset.phantoms import PHANTOMS, PhantomCase, generate_case
from voxseg.io.pictures import overview_png


def _objects(label: np.ndarray) -> int:
    return int(ndi.label(label > 0)[1])


def render(name: str, out: Path, seed: int, candidates: int = 8) -> Path:
    spec = PHANTOMS.get(name)
    scored = [(i, generate_case(name, i, seed=seed)) for i in range(candidates)]

    # most objects first; for the cord, prefer the usual T1w contrast (grey matter darker)
    def score(ic: tuple[int, PhantomCase]) -> tuple:
        lab = ic[1].label.array
        return (_objects(lab), ic[1].info.get("gm_darker", True), int((lab == 1).sum()), -ic[0])

    index, case = max(scored, key=score)
    vol = case.images[0]
    if vol.ndim == 2:  # a single narrow panel: keep the title short
        title = f"{name} case {index}"
    else:
        spacing = " x ".join(f"{s:g}" for s in vol.spacing)
        shape = " x ".join(str(n) for n in vol.shape)
        title = f"{name}  case {index} (seed {seed})  {shape} voxels of {spacing} mm"
    names = {v: k for k, v in spec.labels.items()}
    rows = [vol, *case.images]  # the first channel twice: with and without the label
    return overview_png(rows, case.label, out / f"phantom-{name}.png", title=title, label_names=names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="phantoms to render (default: all)")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names or PHANTOMS.names():
        print(render(name, args.out, args.seed))


if __name__ == "__main__":
    main()
