"""Scale check (reported, not asserted): instances + object table on a 256³ mask with ~2000 objects."""

from __future__ import annotations

import time

import numpy as np

from voxseg.postprocessing import instances, object_table


def _many_balls(shape=(256, 256, 256), n=2000, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, np.uint8)
    for c, r in zip(rng.integers(8, 248, size=(n, 3)), rng.uniform(1.5, 5.0, n), strict=True):
        k = int(np.ceil(r))
        grid = np.indices((2 * k + 1,) * 3) - k
        mask[tuple(slice(ci - k, ci + k + 1) for ci in c)][(grid**2).sum(0) <= r * r] = 1
    return mask


def test_instances_and_table_on_256_cubed(record_property, capsys):
    mask = _many_balls()
    image = np.random.default_rng(1).normal(0, 1, mask.shape).astype(np.float32)
    t0 = time.perf_counter()
    inst = instances(mask)
    t1 = time.perf_counter()
    rows = object_table(inst, image=image, spacing=(1.0, 0.5, 0.5))
    t2 = time.perf_counter()
    n = int(inst.max())
    assert 1500 < n <= 2000 and len(rows) == n  # overlapping balls merge
    assert sum(r.voxels for r in rows) == int(np.count_nonzero(mask))
    assert [r.voxels for r in rows] == sorted((r.voxels for r in rows), reverse=True)  # id 1 = largest
    record_property("instances_s", round(t1 - t0, 3))
    record_property("object_table_s", round(t2 - t1, 3))
    with capsys.disabled():
        print(f"\n256³, {n} objects: instances {t1 - t0:.2f} s, object_table {t2 - t1:.2f} s")
