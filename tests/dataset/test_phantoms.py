"""The five phantom generators: determinism, labels, anatomy, intensities, and the dataset writer."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from voxseg.dataset import read_dataset
from voxseg.dataset.phantoms import PHANTOMS, PhantomCase, generate_case, make_phantom
from voxseg.errors import ConfigError
from voxseg.io import read_image

NAMES = ["mouse-lung-ct", "soft-tissue-mri", "pet-mip", "mouse-spinal-cord", "brain-swi-cmb"]
SMALL = {
    "mouse-lung-ct": (40, 44, 44),
    "soft-tissue-mri": (16, 48, 48),
    "pet-mip": (96, 48),
    "mouse-spinal-cord": (24, 40, 40),
    "brain-swi-cmb": (40, 44, 40),
}
SPACINGS = {
    "mouse-lung-ct": (0.1, 0.1, 0.1),
    "soft-tissue-mri": (3.0, 0.8, 0.8),
    "pet-mip": (4.0, 4.0),
    "mouse-spinal-cord": (0.05, 0.05, 0.05),
    "brain-swi-cmb": (1.0, 1.0, 1.0),
}
N_CASES = 12


@functools.cache
def cases(name: str) -> tuple[PhantomCase, ...]:
    """The first N_CASES cases of seed 0 at the small test size (generated once per session)."""
    return tuple(generate_case(name, i, seed=0, size=SMALL[name]) for i in range(N_CASES))


def _fg(case: PhantomCase) -> np.ndarray:
    return case.label.array > 0


# -- registry and metadata -------------------------------------------------------------------


def test_all_five_phantoms_are_registered():
    assert set(NAMES) <= set(PHANTOMS.names())


@pytest.mark.parametrize("name", NAMES)
def test_spec_metadata(name):
    spec = PHANTOMS.get(name)
    assert spec.name == name
    assert spec.labels["background"] == 0
    assert sorted(spec.labels.values()) == list(range(len(spec.labels)))
    assert spec.channel_names[0] in {"CT", "MRI", "PET", "SWI"}
    assert spec.default_cases >= 10
    assert len(spec.default_shape) == (2 if name == "pet-mip" else 3)
    assert spec.description


# -- determinism, types, geometry ------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_case_and_other_seed_differs(name):
    a = generate_case(name, 3, seed=7, size=SMALL[name])
    b = generate_case(name, 3, seed=7, size=SMALL[name])
    c = generate_case(name, 3, seed=8, size=SMALL[name])
    for va, vb in zip([*a.images, a.label], [*b.images, b.label], strict=True):
        np.testing.assert_array_equal(va.array, vb.array)
    assert not np.array_equal(a.images[0].array, c.images[0].array)


@pytest.mark.parametrize("name", NAMES)
def test_types_shapes_and_geometry(name):
    spec = PHANTOMS.get(name)
    for case in cases(name)[:3]:
        assert len(case.images) == len(spec.channel_names)
        assert case.label.dtype == np.uint8
        assert case.label.shape == SMALL[name]
        assert case.label.spacing == pytest.approx(SPACINGS[name])
        for img in case.images:
            assert img.dtype == np.float32
            assert img.same_geometry(case.label)
            assert np.isfinite(img.array).all()


@pytest.mark.parametrize("name", NAMES)
def test_label_values_are_declared_and_objects_appear(name):
    declared = set(PHANTOMS.get(name).labels.values())
    positives = 0
    for case in cases(name):
        assert set(np.unique(case.label.array).tolist()) <= declared
        positives += bool(_fg(case).any())
    assert positives >= N_CASES // 2


@pytest.mark.parametrize("name", ["mouse-lung-ct", "pet-mip", "brain-swi-cmb"])
def test_detection_phantoms_have_negative_cases(name):
    n_negative = sum(not _fg(c).any() for c in cases(name))
    assert 1 <= n_negative <= N_CASES // 2


@pytest.mark.parametrize(
    ("name", "option"), [("mouse-lung-ct", "max_nodules"), ("pet-mip", "max_tumours"), ("brain-swi-cmb", "max_bleeds")]
)
def test_zero_objects_option_gives_negatives(name, option):
    case = generate_case(name, 1, seed=0, size=SMALL[name], options={option: "0"})
    assert not case.label.array.any()


def test_spacing_is_fixed_and_anatomy_follows_the_size():
    case = generate_case("mouse-lung-ct", 0, seed=0, size=(48, 40, 56))
    assert case.label.shape == (48, 40, 56)
    assert case.label.spacing == pytest.approx((0.1, 0.1, 0.1))
    big = [generate_case("brain-swi-cmb", i, seed=1, size=(56, 64, 56)) for i in range(4)]
    assert any(c.label.array.any() for c in big)


def test_origin_is_centred_on_the_field_of_view():
    vol = cases("mouse-lung-ct")[0].images[0]
    centre = vol.index_to_world([(n - 1) / 2 for n in vol.shape])
    np.testing.assert_allclose(centre, 0.0, atol=1e-6)


# -- anatomy and intensities, per phantom ----------------------------------------------------


def _body_mask_ct(ct: np.ndarray) -> np.ndarray:
    """Body = inside the skin, filled slice by slice (lungs are enclosed by the chest wall)."""
    soft = ndi.gaussian_filter(ct, 1.0) > -400
    return np.stack([ndi.binary_fill_holes(s) for s in soft])


def test_lung_ct_intensities_and_nodules_inside_the_body():
    for case in cases("mouse-lung-ct"):
        ct, fg = case.images[0].array, _fg(case)
        assert ct.min() >= -1024 and ct.max() <= 3071
        assert abs(np.median(ct[:4, :4, :4]) + 1000) < 60  # air in the corner
        assert ct.max() > 300  # bone
        if fg.any():
            assert (fg & ~_body_mask_ct(ct)).sum() <= 0.02 * fg.sum()
            assert np.median(ct[fg]) > -450  # soft-tissue density, not lung or air
        assert case.info["nodules"] >= int(fg.any())


def test_lung_ct_nodule_sizes_vary_above_the_seeds_floor():
    """Nodules of very different sizes, nearly all at least the 150 voxels the seed's pipeline keeps."""
    sizes = []
    for i in range(6):
        lab, n = ndi.label(generate_case("mouse-lung-ct", i, seed=3).label.array)
        sizes += ndi.sum_labels(lab > 0, lab, index=np.arange(1, n + 1)).tolist()
    sizes = np.asarray(sizes)
    assert len(sizes) >= 6 and sizes.max() > 8 * sizes.min()
    assert np.mean(sizes >= 150) >= 0.9 and sizes.min() >= 100  # a lung-border cut may trim one a little


def test_soft_tissue_has_exactly_one_connected_tumour():
    for case in cases("soft-tissue-mri"):
        _, n = ndi.label(_fg(case))
        assert n == 1
        mri = case.images[0].array
        assert mri.min() >= 0 and np.percentile(mri, 99) < 2000


def test_pet_tumours_are_hotter_than_body_background():
    for case in cases("pet-mip"):
        suv, fg = case.images[0].array, _fg(case)
        assert suv.min() >= 0 and suv.max() < 80
        if fg.any():
            body = suv > 0.2
            assert np.median(suv[fg]) > 1.5 * np.median(suv[body & ~fg])
        assert case.info["control"] == (not fg.any())


def test_spinal_cord_labels_inside_the_cord():
    for case in cases("mouse-spinal-cord"):
        mri, lab = case.images[0].array, case.label.array
        wm, gm = lab == 1, lab == 2
        assert wm.any() and gm.any()
        assert 0.1 < gm.sum() / (wm.sum() + gm.sum()) < 0.6
        assert mri[lab > 0].mean() > 5 * mri[lab == 0].mean()  # cord bright, medium dark
        touching = gm & ndi.binary_dilation(lab == 0)
        assert touching.sum() <= 0.02 * gm.sum()  # grey matter is wrapped in white matter


def test_spinal_cord_sparse_annotation_keeps_exactly_k_slices():
    k = 3
    case = generate_case(
        "mouse-spinal-cord", 2, seed=0, size=SMALL["mouse-spinal-cord"], options={"annotated_slices": k}
    )
    lab = case.label.array
    kept = [z for z in range(lab.shape[0]) if (lab[z] != 3).any()]
    assert len(kept) == k == len(case.info["annotated_slices"])
    assert kept == sorted(case.info["annotated_slices"])
    for z in range(lab.shape[0]):
        if z in kept:
            assert set(np.unique(lab[z]).tolist()) <= {0, 1, 2}
        else:
            assert (lab[z] == 3).all()
    dense = generate_case("mouse-spinal-cord", 2, seed=0, size=SMALL["mouse-spinal-cord"])
    np.testing.assert_array_equal(dense.images[0].array, case.images[0].array)
    np.testing.assert_array_equal(dense.label.array[kept], lab[kept])


def test_spinal_cord_rejects_more_annotated_slices_than_slices():
    with pytest.raises(ConfigError, match="annotated_slices"):
        generate_case("mouse-spinal-cord", 0, size=(16, 40, 40), options={"annotated_slices": 17})


def test_brain_mask_channel_and_dark_microbleeds():
    for case in cases("brain-swi-cmb"):
        swi, mask, fg = case.images[0].array, case.images[1].array, _fg(case)
        assert set(np.unique(mask).tolist()) <= {0.0, 1.0}
        assert mask.sum() > 0.1 * mask.size
        assert not (fg & (mask == 0)).any()
        if fg.any():
            assert swi[fg].mean() < 0.7 * np.median(swi[mask > 0])


# -- writing datasets ------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_make_phantom_writes_an_nnunet_dataset(tmp_path: Path, name):
    spec = PHANTOMS.get(name)
    out = make_phantom(name, tmp_path / name, cases=2, seed=5, size=SMALL[name])
    ds = read_dataset(out)
    assert ds.spec.channel_names == spec.channel_names
    assert ds.spec.labels == spec.labels
    assert ds.spec.num_training == 2 == len(ds.training)
    assert len(list((out / "imagesTr").iterdir())) == 2 * len(spec.channel_names)
    assert len(list((out / "labelsTr").iterdir())) == 2
    label = read_image(ds.training[0].label)
    assert label.shape == SMALL[name]
    assert label.spacing == pytest.approx(SPACINGS[name])
    expected = generate_case(name, 0, seed=5, size=SMALL[name]).label.array
    np.testing.assert_array_equal(label.array, expected)


def test_make_phantom_sparse_cord_declares_the_ignore_label(tmp_path: Path):
    out = make_phantom(
        "mouse-spinal-cord",
        tmp_path / "cord",
        cases=1,
        size=SMALL["mouse-spinal-cord"],
        options={"annotated_slices": "2"},
    )
    data = json.loads((out / "dataset.json").read_text())
    assert data["labels"]["ignore"] == 3
    label = read_image(out / "labelsTr" / "mouse_spinal_cord_000.nii.gz").array
    assert sum((label[z] != 3).any() for z in range(label.shape[0])) == 2
