"""PNG and JPEG written by other tools: RGB, grey stored as RGB, palettes, 16 bit, alpha."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from tests.io.helpers import assert_one_line_error, random_array
from voxseg.errors import InputImageError
from voxseg.io import read_channels, read_image

RGB = random_array(np.uint8, (5, 6, 3))
GREY = random_array(np.uint8, (5, 6), seed=1)


def test_rgb_png_gives_three_channels_and_read_image_refuses_it(tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(RGB).save(path)
    volumes = read_channels(path)
    assert len(volumes) == 3
    for k, vol in enumerate(volumes):
        assert vol.dtype == np.uint8 and vol.shape == (5, 6)
        np.testing.assert_array_equal(vol.array, RGB[..., k])
        assert vol.spacing == (1.0, 1.0)
    with pytest.raises(InputImageError) as info:
        read_image(path)
    assert_one_line_error(info.value, path, "3 channels")


def test_grey_stored_as_rgb_is_one_channel(tmp_path):
    path = tmp_path / "grey_rgb.png"
    Image.fromarray(np.stack([GREY] * 3, axis=-1)).save(path)
    assert Image.open(path).mode == "RGB"
    vol = read_image(path)
    np.testing.assert_array_equal(vol.array, GREY)


def test_palette_png_label_keeps_indices(tmp_path):
    labels = np.array([[0, 1, 2, 3], [3, 2, 1, 0], [0, 0, 3, 3]], np.uint8)
    image = Image.frombytes("P", (4, 3), labels.tobytes())  # (width, height)
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])  # black, red, green, blue
    path = tmp_path / "label.png"
    image.save(path)
    assert Image.open(path).mode == "P"
    vol = read_image(path)
    assert vol.dtype == np.uint8
    np.testing.assert_array_equal(vol.array, labels)  # indices, not colours


def test_16_bit_png(tmp_path):
    values = random_array(np.uint16, (5, 6))
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    vol = read_image(path)
    assert vol.dtype == np.uint16
    np.testing.assert_array_equal(vol.array, values)


def test_one_bit_png(tmp_path):
    mask = GREY > 128
    path = tmp_path / "mask.png"
    Image.fromarray(mask).convert("1").save(path)
    vol = read_image(path)
    assert vol.dtype == np.uint8
    np.testing.assert_array_equal(vol.array, mask.astype(np.uint8))


def test_constant_alpha_is_dropped(tmp_path, caplog):
    path = tmp_path / "la.png"
    Image.fromarray(np.stack([GREY, np.full_like(GREY, 255)], axis=-1), mode="LA").save(path)
    with caplog.at_level(logging.WARNING, logger="voxseg.io"):
        vol = read_image(path)
    np.testing.assert_array_equal(vol.array, GREY)
    assert not caplog.records


def test_varying_alpha_is_ignored_with_a_warning(tmp_path, caplog):
    path = tmp_path / "rgba.png"
    alpha = np.arange(30, dtype=np.uint8).reshape(5, 6)
    Image.fromarray(np.dstack([RGB, alpha])).save(path)
    with caplog.at_level(logging.WARNING, logger="voxseg.io"):
        volumes = read_channels(path)
    assert len(volumes) == 3
    np.testing.assert_array_equal(volumes[1].array, RGB[..., 1])
    assert any("alpha" in r.getMessage() for r in caplog.records)


def test_grey_jpeg(tmp_path):
    smooth = (np.add.outer(np.arange(16), np.arange(16)) * 6).astype(np.uint8)
    path = tmp_path / "grey.jpg"
    Image.fromarray(smooth).save(path, quality=95)
    vol = read_image(path)
    assert vol.shape == (16, 16)
    assert np.abs(vol.array.astype(int) - smooth).max() <= 8
