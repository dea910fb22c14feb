"""Which axes may be mirrored: flipping must not turn one class into another (left/right pairs).

Mirroring is nnU-Net's standard augmentation and test-time augmentation, on every axis. It is wrong
where classes come in mirror pairs, e.g. left and right hemispheres, the AAL atlas's ``_L``/``_R``
regions, left and right kidneys: a flipped image shows the left structure where the right one was,
still labelled left, so position, the one cue that tells them apart, becomes noise (found on the
real macaque hemispheres: one class learnt, the other 0.10 Dice). TotalSegmentator trains such
classes without mirroring for this reason.

Measured from the labels, not from class names: within the bounding box of the foreground, flip the
label map along an axis; among voxels that are foreground both before and after the flip, the
fraction whose class changes is the axis's **swap fraction**. One foreground class has nothing to
swap; nested classes (a core inside a ball, in the tests) swap under 0.1; the real macaque
hemispheres swap 0.93 along the left-right axis, the 20 largest AAL regions 0.52, 0.73 and 0.95
along the three axes. An axis whose median swap fraction over the training cases exceeds
:data:`MIRROR_SWAP_LIMIT` is not mirrored (augmentation and TTA); the plan's notes say why.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MIRROR_SWAP_LIMIT", "swap_fractions", "swapping_axes"]

#: An axis whose flip changes the class of more than this fraction of foreground voxels is not mirrored.
MIRROR_SWAP_LIMIT = 0.5


def swap_fractions(label: np.ndarray, ignore_label: int | None = None) -> tuple[float, ...] | None:
    """Per axis, the fraction of foreground voxels a flip (about the foreground's box) gives another class.

    None when the label holds fewer than two foreground classes (a flip cannot swap anything).
    """
    lab = np.asarray(label)
    fg = lab > 0
    if ignore_label is not None:
        fg &= lab != ignore_label
    present = np.unique(lab[fg]) if fg.any() else np.zeros(0)
    if present.size < 2:
        return None
    where = np.nonzero(fg)
    box = tuple(slice(int(w.min()), int(w.max()) + 1) for w in where)
    lab, fg = lab[box], fg[box]
    out = []
    for axis in range(lab.ndim):
        both = fg & np.flip(fg, axis=axis)
        n = int(both.sum())
        changed = int((both & (lab != np.flip(lab, axis=axis))).sum())
        out.append(round(changed / n, 4) if n else 0.0)
    return tuple(out)


def swapping_axes(per_case: list[tuple[float, ...] | None]) -> dict[int, float]:
    """The axes not to mirror, with their median swap fraction over the cases that have one."""
    swaps = [s for s in per_case if s is not None]
    if not swaps:
        return {}
    median = np.median(np.asarray(swaps), axis=0)
    return {a: round(float(v), 4) for a, v in enumerate(median) if v > MIRROR_SWAP_LIMIT}
