"""Deterministic k-fold splits, stored as ``splits.json``.

Cases of one group (e.g. several chunks of one mouse) always land in the same fold, so no
subject is in both training and validation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxseg.errors import ConfigError, DatasetFormatError
from voxseg.io import write_json_atomic
from voxseg.io.safe_json import read_json

__all__ = ["Fold", "make_splits", "write_splits", "read_splits", "load_or_create_splits"]

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Fold:
    train: tuple[str, ...]
    val: tuple[str, ...]


def make_splits(
    case_ids: Sequence[str], *, k: int = 5, seed: int = 12345, groups: Mapping[str, str] | None = None
) -> list[Fold]:
    """Split ``case_ids`` into ``k`` folds deterministically (same input and seed, same folds).

    Groups are shuffled with ``seed`` and dealt, largest first, to the fold with the fewest
    cases, so folds differ in size by at most one group.
    """
    ids = sorted(set(case_ids))
    if len(ids) != len(case_ids):
        raise ConfigError("case ids must be unique")
    if k < 2:
        raise ConfigError(f"k-fold needs k >= 2, got {k}")
    by_group: dict[str, list[str]] = {}
    for cid in ids:
        by_group.setdefault((groups or {}).get(cid, cid), []).append(cid)
    if len(by_group) < k:
        raise ConfigError(f"{len(by_group)} cases/groups cannot make {k} folds (use fewer folds or more cases)")
    names = sorted(by_group)
    order = np.random.default_rng(seed).permutation(len(names))
    shuffled = [names[i] for i in order]
    shuffled.sort(key=lambda g: -len(by_group[g]))  # stable: shuffled order within equal sizes
    folds: list[list[str]] = [[] for _ in range(k)]
    for g in shuffled:
        target = min(range(k), key=lambda f: (len(folds[f]), f))
        folds[target].extend(by_group[g])
    return [
        Fold(tuple(sorted(c for j, f in enumerate(folds) if j != i for c in f)), tuple(sorted(folds[i])))
        for i in range(k)
    ]


def write_splits(path: str | Path, folds: Sequence[Fold], *, seed: int) -> Path:
    data = {
        "schema_version": SCHEMA_VERSION,
        "k": len(folds),
        "seed": seed,
        "folds": [{"train": list(f.train), "val": list(f.val)} for f in folds],
    }
    return write_json_atomic(path, data)


def read_splits(path: str | Path) -> list[Fold]:
    """Read ``splits.json`` (voxseg's format, or nnU-Net's ``splits_final.json`` list)."""
    path = Path(path)
    try:
        data = read_json(path)
        folds = data if isinstance(data, list) else data["folds"]
        return [Fold(tuple(f["train"]), tuple(f["val"])) for f in folds]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetFormatError(f"{path}: not a valid splits file ({exc})") from None


def load_or_create_splits(
    path: str | Path, case_ids: Sequence[str], *, k: int = 5, seed: int = 12345, groups: Mapping[str, str] | None = None
) -> list[Fold]:
    """Reuse ``path`` if it exists and covers exactly ``case_ids``; otherwise create it."""
    path = Path(path)
    if path.exists():
        folds = read_splits(path)
        covered = {c for f in folds for c in f.val}
        if covered != set(case_ids):
            raise DatasetFormatError(
                f"{path}: splits cover {len(covered)} cases but the dataset has {len(set(case_ids))} "
                "(delete the file to make new splits)"
            )
        return folds
    folds = make_splits(case_ids, k=k, seed=seed, groups=groups)
    write_splits(path, folds, seed=seed)
    return folds
