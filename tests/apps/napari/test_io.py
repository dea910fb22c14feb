"""Reader, writers and sample data of the voxseg napari plugin, through napari's own entry points."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from voxseg.apps.napari._io import napari_get_reader, read_layers
from voxseg.apps.napari._sample import SAMPLES
from voxseg.io import Volume, read_image, write_image

SPACING = (3.0, 0.8, 0.5)
ORIGIN = (-12.0, 4.5, 30.0)


@pytest.fixture
def ct_file(tmp_path):
    rng = np.random.default_rng(0)
    image = Volume(rng.normal(0, 1, (6, 20, 24)).astype(np.float32), SPACING, ORIGIN)
    return write_image(image, tmp_path / "ct.nii.gz"), image


def test_reader_claims_medical_formats_only():
    for name in ("a.nii.gz", "a.nii", "a.nrrd", "a.mha", "a.mhd", "a.tif"):
        assert napari_get_reader(name) is not None
    for name in ("a.png", "a.csv", "a.zarr", ["a.nii", "b.txt"]):
        assert napari_get_reader(name) is None


def test_open_and_save_keep_anisotropic_geometry(make_napari_viewer, voxseg_plugin, ct_file, tmp_path):
    path, image = ct_file
    labels = Volume((image.array > 1).astype(np.uint8), SPACING, ORIGIN)
    label_path = write_image(labels, tmp_path / "ct_seg.nrrd")
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin="voxseg")
    [seg] = viewer.open(label_path, plugin="voxseg")
    assert layer.name == "ct" and type(layer).__name__ == "Image"
    assert type(seg).__name__ == "Labels"  # integer voxels and "seg" in the name
    assert np.allclose(layer.scale, SPACING) and np.allclose(layer.translate, ORIGIN)
    assert np.allclose(seg.scale, SPACING) and np.allclose(seg.translate, ORIGIN)
    # the anisotropic aspect is right: first to last voxel centre spans (shape - 1) * spacing mm
    extent = layer.extent.world
    assert np.allclose(extent[0], ORIGIN)
    assert np.allclose(extent[1] - extent[0], (np.asarray(image.shape) - 1) * SPACING)

    seg.data[0, 0, 0] = 3  # an edit must be saved
    out = tmp_path / "edited.nii.gz"
    viewer.layers.selection = {seg}
    viewer.layers.save(str(out), selected=True, plugin="voxseg")
    back = read_image(out)
    assert back.same_geometry(labels)
    assert back.array[0, 0, 0] == 3 and back.dtype == np.uint8
    assert np.array_equal(back.array[1:], labels.array[1:])

    out_image = tmp_path / "image.mha"
    viewer.layers.selection = {layer}
    viewer.layers.save(str(out_image), selected=True, plugin="voxseg")
    again = read_image(out_image)
    assert again.same_geometry(image) and np.array_equal(again.array, image.array)


def test_oblique_direction_warns_and_survives_a_round_trip(tmp_path):
    c, s = np.cos(0.3), np.sin(0.3)
    direction = ((1.0, 0.0, 0.0), (0.0, c, -s), (0.0, s, c))
    volume = Volume(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), SPACING, ORIGIN, direction)
    path = write_image(volume, tmp_path / "oblique.nii.gz")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        [(data, kwargs, kind)] = read_layers(path)
    assert any("not aligned" in str(w.message) for w in caught)
    assert kind == "image"
    from voxseg.apps.napari._io import write_image_layer

    [written] = write_image_layer(str(tmp_path / "back.nii.gz"), data, kwargs)
    assert read_image(written).same_geometry(volume)


def test_multichannel_files_give_one_layer_per_channel(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "two.tif"
    tifffile.imwrite(path, np.zeros((2, 8, 9), np.uint16), metadata={"axes": "CYX"}, imagej=False)
    layers = read_layers(path)
    assert len(layers) in (1, 2)  # TIFF without axes metadata may read as a 3D stack
    assert all(data.ndim in (2, 3) for data, _, _ in layers)


@pytest.mark.slow
def test_every_sample_loads_with_geometry(make_napari_viewer, voxseg_plugin):
    viewer = make_napari_viewer()
    for key in sorted(SAMPLES):
        viewer.layers.clear()
        layers = viewer.open_sample("voxseg", key)
        kinds = [type(layer).__name__ for layer in layers]
        assert kinds[0] == "Image" and kinds[-1] == "Labels", key
        image, labels = layers[0], layers[-1]
        assert labels.data.shape == image.data.shape, key
        assert np.allclose(labels.scale, image.scale) and np.all(np.asarray(image.scale) > 0), key
        assert layers[0].name.startswith(SAMPLES[key]), key
