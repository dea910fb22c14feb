"""plan_experiment: raw dataset -> work folder, on real files (tiny dataset and small phantoms)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_tiny_dataset
from voxseg.dataset import read_splits
from voxseg.dataset.phantoms import make_phantom
from voxseg.errors import ConfigError
from voxseg.experiment import WorkDir
from voxseg.experiment.plan import SETTINGS_KEY, DatasetRefused, configuration_parameters, plan_experiment
from voxseg.fingerprint import Fingerprint
from voxseg.planning import Plan
from voxseg.preprocessing import list_preprocessed, read_preprocessed


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_tiny_dataset_end_to_end_and_rerun_is_a_no_op(tiny_dataset: Path, tmp_path: Path) -> None:
    work = WorkDir(tmp_path / "work")
    stages: set[str] = set()
    plan = plan_experiment(
        tiny_dataset, work.root, folds=2, num_workers=1, snapshots=2, progress=lambda s, d, t: stages.add(s)
    )
    assert stages == {"verify", "fingerprint", "preprocess 3d", "preprocess 2d"}
    assert Plan.load(work.plan_path) == plan and set(plan.configurations) == {"3d", "2d"}
    assert Fingerprint.load(work.fingerprint_path).dataset_name == "tiny"
    copy = json.loads(work.dataset_path.read_text())
    assert copy["voxseg_source"] == str(tiny_dataset.resolve()) and copy[SETTINGS_KEY]["folds"] == 2
    assert work.source_dataset() == tiny_dataset.resolve()
    folds = read_splits(work.splits_path)
    assert len(folds) == 2 and sorted(c for f in folds for c in f.val) == [f"case_{i:03d}" for i in range(4)]
    for name, conf in plan.configurations.items():
        assert list_preprocessed(work.preprocessed_dir(name)) == [f"case_{i:03d}" for i in range(4)]
        case = read_preprocessed(work.preprocessed_dir(name) / "case_000")
        assert case.properties.target_spacing[-len(conf.target_spacing) :] == pytest.approx(conf.target_spacing)
        assert sorted(p.name for p in (work.snapshots_dir / name).iterdir()) == ["case_000.png", "case_001.png"]
    assert configuration_parameters(plan)["3d"] > 0

    before = _mtimes(work.root)
    again = plan_experiment(tiny_dataset, work.root, folds=2, num_workers=1, snapshots=2)
    assert again == plan and _mtimes(work.root) == before  # nothing rewritten


@pytest.mark.slow
def test_interrupted_preprocessing_resumes(tiny_dataset: Path, tmp_path: Path) -> None:
    work = WorkDir(tmp_path / "work")
    plan_experiment(tiny_dataset, work.root, configurations=("3d",), folds=2, num_workers=2)
    lost = work.preprocessed_dir("3d") / "case_002.json"
    lost.unlink()
    kept = (work.preprocessed_dir("3d") / "case_001.npy").stat().st_mtime_ns
    plan_experiment(tiny_dataset, work.root, configurations=("3d",), folds=2, num_workers=2)
    assert lost.is_file() and (work.preprocessed_dir("3d") / "case_001.npy").stat().st_mtime_ns == kept


def test_broken_dataset_is_refused_before_any_work(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "data", cases=3)
    (data / "labelsTr" / "case_001.nii.gz").unlink()
    (data / "imagesTr" / "case_002_0000.nii.gz").write_bytes(b"garbage")
    work = tmp_path / "work"
    with pytest.raises(DatasetRefused) as info:
        plan_experiment(data, work, folds=2, num_workers=1)
    assert len(info.value.problems) >= 2
    message = str(info.value)
    assert "\n" not in message and "case_001" in message and "case_002" in message
    assert not work.exists()


def test_other_dataset_or_settings_are_refused(tiny_dataset: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    plan_experiment(tiny_dataset, work, configurations=("2d",), folds=2, num_workers=1)
    with pytest.raises(ConfigError, match=r"other settings \(seed 0 then, 1 now"):
        plan_experiment(tiny_dataset, work, configurations=("2d",), folds=2, seed=1, num_workers=1)
    with pytest.raises(ConfigError, match=r"other settings \(overrides"):
        plan_experiment(tiny_dataset, work, configurations=("2d",), folds=2, overrides=["lr=0.1"], num_workers=1)
    other = write_tiny_dataset(tmp_path / "other", cases=4, seed=5)
    with pytest.raises(ConfigError, match="another dataset"):
        plan_experiment(other, work, configurations=("2d",), folds=2, num_workers=1)
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an empty voxseg work folder"):
        plan_experiment(tiny_dataset, stranger, folds=2, num_workers=1)


def test_overrides_and_unbuildable_networks(tiny_dataset: Path, tmp_path: Path) -> None:
    plan = plan_experiment(
        tiny_dataset,
        tmp_path / "a",
        configurations=("3d",),
        folds=2,
        num_workers=1,
        overrides=["network.name=attention_unet", "loss=dice_focal", "loss.lambda_other=10"],
    )
    assert plan.configuration("3d").network.name == "attention_unet"
    assert plan.training["loss"] == {"name": "dice_focal", "lambda_other": 10}
    with pytest.raises(ConfigError, match="configuration '3d'"):
        plan_experiment(
            tiny_dataset, tmp_path / "b", configurations=("3d",), folds=2, overrides=["network.kernel_size=5"]
        )
    assert not WorkDir(tmp_path / "b").plan_path.exists()
    assert not WorkDir(tmp_path / "b").preprocessed_dir("3d").exists()
    with pytest.raises(ConfigError, match="budget"):
        plan_experiment(tiny_dataset, tmp_path / "c", budget="tpu")
    with pytest.raises(ConfigError, match="cannot make 5 folds"):
        plan_experiment(tiny_dataset, tmp_path / "d", configurations=("2d",))
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
def test_small_phantoms(tmp_path: Path) -> None:
    lung = make_phantom("mouse-lung-ct", tmp_path / "lung", cases=3, size=32)
    plan = plan_experiment(lung, tmp_path / "w_lung", folds=3, num_workers=2)
    assert plan.normalization[0].scheme == "ct" and plan.default_configuration == "3d"
    data = read_preprocessed(WorkDir(tmp_path / "w_lung").preprocessed_dir("3d") / "mouse_lung_ct_000").data
    assert np.isfinite(data).all()

    cmb = make_phantom("brain-swi-cmb", tmp_path / "cmb", cases=3, size=(24, 32, 32))
    plan = plan_experiment(cmb, tmp_path / "w_cmb", configurations=("3d",), folds=3, num_workers=1)
    assert [n.scheme for n in plan.normalization] == ["percentile_minmax", "mask"]
    assert plan.normalization[0].mask_channel == 1

    pet = make_phantom("pet-mip", tmp_path / "pet", cases=3, size=(64, 32))
    plan = plan_experiment(pet, tmp_path / "w_pet", folds=3, num_workers=1)
    assert tuple(plan.configurations) == ("2d",) and plan.data_ndim == 2


def test_gpu_plan_on_a_cpu_machine_warns(tiny_dataset: Path, tmp_path: Path, caplog) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    plan = plan_experiment(tiny_dataset, tmp_path / "w", configurations=("2d",), folds=2, budget="gpu", num_workers=1)
    assert plan.budget == "gpu"
    assert any("sized for a GPU" in r.getMessage() for r in caplog.records)
