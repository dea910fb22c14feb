import json

import pytest

from voxseg.dataset import load_or_create_splits, make_splits, read_splits
from voxseg.errors import ConfigError, DatasetFormatError

IDS = [f"c{i:02d}" for i in range(23)]


def test_splits_are_deterministic_disjoint_and_complete():
    a = make_splits(IDS, k=5, seed=3)
    b = make_splits(list(reversed(IDS)), k=5, seed=3)
    assert a == b
    vals = [set(f.val) for f in a]
    assert set().union(*vals) == set(IDS)
    assert sum(len(v) for v in vals) == len(IDS)
    for f in a:
        assert not set(f.train) & set(f.val)
        assert set(f.train) | set(f.val) == set(IDS)
    assert max(len(v) for v in vals) - min(len(v) for v in vals) <= 1
    assert make_splits(IDS, k=5, seed=4) != a


def test_groups_stay_together():
    groups = {cid: f"mouse{i // 3}" for i, cid in enumerate(IDS)}
    for fold in make_splits(IDS, k=4, seed=0, groups=groups):
        val_groups = {groups[c] for c in fold.val}
        train_groups = {groups[c] for c in fold.train}
        assert not val_groups & train_groups


def test_bad_k():
    with pytest.raises(ConfigError, match="k >= 2"):
        make_splits(IDS, k=1)
    with pytest.raises(ConfigError, match="cannot make"):
        make_splits(IDS[:3], k=5)


def test_load_or_create_reuses_and_detects_changes(tmp_path):
    path = tmp_path / "splits.json"
    first = load_or_create_splits(path, IDS, k=5, seed=1)
    data = json.loads(path.read_text())
    assert data["k"] == 5 and data["seed"] == 1 and len(data["folds"]) == 5
    assert load_or_create_splits(path, IDS, k=5, seed=999) == first  # reused, not remade
    with pytest.raises(DatasetFormatError, match="delete the file"):
        load_or_create_splits(path, IDS[:-1])


def test_reads_nnunet_splits_final(tmp_path):
    path = tmp_path / "splits_final.json"
    path.write_text(json.dumps([{"train": ["a", "b"], "val": ["c"]}, {"train": ["a", "c"], "val": ["b"]}]))
    folds = read_splits(path)
    assert folds[1].val == ("b",)
