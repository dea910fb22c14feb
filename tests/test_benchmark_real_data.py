"""benchmarks/real_data.py's builders: cases from one subject, labels warped with their image, skips."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import real_data  # noqa: E402
from real import augment, machine, sources, tasks  # noqa: E402

from voxseg.dataset.layout import read_dataset  # noqa: E402
from voxseg.dataset.verify import verify_dataset  # noqa: E402
from voxseg.io import read_image  # noqa: E402


def _ball(shape, radius):
    grid = np.indices(shape).astype(np.float32)
    centre = (np.asarray(shape, dtype=np.float32) - 1) / 2
    return np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))) <= radius


def test_warp_moves_labels_with_their_image_onto_the_new_grid():
    mask = _ball((40, 48, 44), 14)
    image = mask.astype(np.float32) * 100.0
    v = augment.draw(3, spacing=(1.0, 1.0, 1.0), anisotropy=(2.0, 2.0))
    warped_img, warped_lab = augment.warp([image, mask.astype(np.uint8)], (1.0, 1.0, 1.0), v, orders=(1, 0))
    assert warped_lab.dtype == np.uint8 and set(np.unique(warped_lab)) <= {0, 1}
    assert warped_img.shape == warped_lab.shape
    thick = int(np.argmax(v.spacing))
    assert warped_img.shape[thick] < mask.shape[thick] * 0.6  # one axis resampled to ~2 mm
    agree = ((warped_img > 50) == (warped_lab > 0)).mean()
    assert agree > 0.97
    assert 0.7 < warped_lab.sum() * np.prod(v.spacing) / mask.sum() < 1.4  # a deformation, not a rescue


def test_variants_are_reproducible_and_differ_between_seeds():
    assert augment.draw(7, spacing=(1.0, 1.0)) == augment.draw(7, spacing=(1.0, 1.0))
    assert augment.draw(7, spacing=(1.0, 1.0)) != augment.draw(8, spacing=(1.0, 1.0))
    img = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    v = augment.draw(7, spacing=(1.0, 1.0))
    a = augment.intensity(augment.warp([img], (1.0, 1.0), v, orders=(1,))[0], v, spacing=v.spacing)
    b = augment.intensity(augment.warp([img], (1.0, 1.0), v, orders=(1,))[0], v, spacing=v.spacing)
    np.testing.assert_array_equal(a, b)


def test_train_and_test_seeds_are_disjoint():
    seeds = list(tasks._seeds(500, 500))
    train = {s for _, s, test in seeds if not test}
    test = {s for _, s, test in seeds if test}
    assert len(train) == len(test) == 500 and not train & test


def test_head_labels_soft_tissue_bone_and_what_is_left_out():
    ct = np.full((12, 40, 40), -1024, np.int16)
    head = _ball((12, 40, 40), 15)
    ct[head] = 40
    ct[head & ~_ball((12, 40, 40), 12)] = 1000  # skull shell
    ct[5:7, 18:22, 18:22] = -900  # an air cavity inside the head
    ct[:, 38:, :] = 100  # the CT table, not connected to the head
    labels = tasks.head_labels(ct, ct >= sources.BONE_HU)
    assert (labels[ct == 1000] == 2).all()
    assert labels[6, 20, 20] == 0  # sinus air stays background
    assert (labels[:, 38:, :] == 0).all()  # the table is not soft tissue
    assert labels[2, 20, 20] == 1


def _fake_wheel(cache: Path) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 50, (64, 64)).astype(np.uint16)
    inst = np.zeros((64, 64), np.uint16)
    for k, (y, x) in enumerate([(10, 10), (40, 12), (12, 45), (45, 50)], start=1):
        inst[y - 5 : y + 5, x - 5 : x + 5] = k
        img[inst == k] = 200
    (cache / "wheels").mkdir(parents=True)
    with zipfile.ZipFile(cache / "wheels" / "stardist-0.0-py3-none-any.whl", "w") as zf:
        for name, arr in (("img2d.tif", img), ("mask2d.tif", inst)):
            path = cache / name
            tifffile.imwrite(path, arr)
            zf.write(path, f"stardist/data/images/{name}")


def test_nuclei_dataset_trains_on_the_left_half_and_tests_on_the_right(tmp_path):
    _fake_wheel(tmp_path)
    data = tasks.build("nuclei", cache=tmp_path, cases=2, test_cases=2, allow_pip=False)
    ds = read_dataset(data)
    assert [c.case_id for c in ds.training] == ["case_000", "case_001"]
    assert [c.case_id for c in ds.test] == ["test_000", "test_001"]
    assert not [p for p in verify_dataset(data) if p.severity == "error"]
    ref = tifffile.imread(tmp_path / "mask2d.tif")
    assert ds.spec.instances  # one id per nucleus, trained as background/interior/boundary
    tiles = [read_image(data / "labelsTs" / f"test_00{k}.nii.gz").array for k in (0, 1)]
    np.testing.assert_array_equal(np.concatenate(tiles, axis=0), ref[:, 32:])  # the right half, untouched
    train_label = read_image(ds.training[0].label).array
    assert train_label.shape[1] <= 36 and len(np.unique(train_label)) > 2  # ids, from the left half
    assert set(np.unique(ds.read_label(ds.training[0]).array)) <= {0, 1, 2}


def test_a_missing_package_skips_its_task_with_the_install_command(tmp_path, capsys):
    with pytest.raises(sources.MissingSource, match="apt-get install -y mricron-data"):
        sources.colin27(tmp_path)
    with pytest.raises(sources.MissingSource, match="invesalius-examples"):
        sources.cranium(tmp_path / "Cranium.inv3", cache=tmp_path)
    args = real_data.parse(["--tasks", "nuclei", "--cases", "2", "--test-cases", "1", "--no-pip"])
    row = real_data.run_task("nuclei", args, tmp_path, tmp_path / "out")
    assert "pip download --no-deps stardist" in row["skipped"]
    assert "skip nuclei" in capsys.readouterr().out
    assert "skipped" in real_data.table([row])


@pytest.mark.skipif(not sources.CRANIUM.is_file(), reason="Debian invesalius-examples not installed")
def test_cranium_reader_gives_hounsfield_units_and_the_package_bone_mask(tmp_path):
    subject = sources.cranium(cache=tmp_path)
    assert subject.ct.shape == (108, 256, 256)
    np.testing.assert_allclose(subject.ct.spacing, (1.5, 0.957031, 0.957031), atol=1e-5)
    np.testing.assert_array_equal(subject.bone, subject.ct.array >= sources.BONE_HU)


def test_machine_line_names_cores_and_flags():
    line = machine.describe()
    assert "cores usable" in line and "avx2" in line


def test_table_shows_instance_scores_for_nuclei_and_failures():
    ok = {"dice_hd95": (0.867, 6.7), "minutes": 2.0, "train_minutes": 1.4}
    ok["instances"] = {"f1": 0.32, "matched_iou": 0.83}
    row = {"task": "nuclei", "classes": 2, "train": 3, "test": 1, "voxseg": ok, "monai": {"failed": "boom"}}
    text = real_data.table([row])
    assert "0.867 (F1 0.32, IoU 0.83)" in text and "1.4/2.0" in text and "failed" in text
    ok["configuration"] = "2d"  # the configuration the planner chose and voxseg trained
    assert "0.867 (F1 0.32, IoU 0.83) [2d]" in real_data.table([row])


@pytest.mark.skipif(not (sources.MRICRON / "aal.nii.gz").is_file(), reason="Debian mricron-data not installed")
def test_colin27_reader_gives_all_116_aal_regions_and_a_brain_mask():
    subject = sources.colin27()
    assert len(subject.aal_names) == 116 and subject.aal_names[0] == "Precentral_L"
    assert set(np.unique(subject.aal)) == set(range(117))
    assert subject.brain.any() and subject.brain[subject.aal > 0].mean() > 0.9


def test_largest_regions_maps_the_n_biggest_ids_in_order_and_drops_the_rest():
    regions = np.zeros((4, 10), np.int32)
    regions[0, :7] = 9  # 7 voxels
    regions[1, :3] = 4  # 3
    regions[2, :5] = 2  # 5
    regions[3, :1] = 30  # 1
    lut, top = tasks.largest_regions(regions, 2)
    assert top.tolist() == [2, 9]  # the two largest, in id order
    assert lut[regions].max() == 2 and set(np.unique(lut[regions])) == {0, 1, 2}
    assert (lut[regions] == 1).sum() == 5 and (lut[regions] == 2).sum() == 7
    _, everything = tasks.largest_regions(regions, 50)
    assert everything.tolist() == [2, 4, 9, 30]  # never an empty region


@pytest.mark.skipif(
    not (sources.MRICRON / "inia19-NeuroMaps.nii.gz").is_file(), reason="Debian mricron-data not installed"
)
def test_inia19_reader_gives_the_macaque_t1_and_its_regions_on_one_grid():
    subject = sources.inia19()
    assert subject.t1.shape == subject.regions.shape == (128, 206, 168)
    np.testing.assert_allclose(subject.t1.spacing, (0.5, 0.5, 0.5))
    assert subject.regions.min() == 0 and len(np.unique(subject.regions)) > 100
    assert subject.t1.array[subject.regions > 0].mean() > 2 * subject.t1.array[subject.regions == 0].mean()
