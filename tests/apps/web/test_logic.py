"""The app's logic without Streamlit: configuration, models, segmentation, summary, downloads."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.apps.web.helpers import as_uint8, pet_case
from voxseg.apps.web import logic
from voxseg.apps.web.uploads import UploadedImage, read_upload
from voxseg.errors import ConfigError, InputImageError, VoxsegError
from voxseg.inference import Predictor
from voxseg.io import Volume, read_image, write_image
from voxseg.postprocessing import write_object_table

MB = 1 << 20


@pytest.fixture
def no_installed_models(tmp_path, monkeypatch):
    monkeypatch.setenv("VOXSEG_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("VOXSEG_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def model(work_2d) -> logic.LoadedModel:
    return logic.load_model(str(work_2d))


def _upload(volume: Volume, name: str, tmp_path: Path) -> UploadedImage:
    data = write_image(volume, tmp_path / "src" / name).read_bytes()
    return read_upload(name, data, tmp_path / "in", max_bytes=64 * MB)


def test_config_from_env_and_back():
    cfg = logic.WebConfig.from_env({logic.ENV_MODEL: "/m", logic.ENV_MAX_UPLOAD_MB: "2.5"})
    assert cfg == logic.WebConfig("/m", 2.5) and cfg.max_upload_bytes == int(2.5 * MB)
    assert logic.WebConfig.from_env(cfg.to_env()) == cfg
    assert logic.WebConfig.from_env({}) == logic.WebConfig(None, logic.DEFAULT_MAX_UPLOAD_MB)
    with pytest.raises(ConfigError, match=logic.ENV_MAX_UPLOAD_MB):
        logic.WebConfig.from_env({logic.ENV_MAX_UPLOAD_MB: "lots"})
    with pytest.raises(ConfigError, match="positive"):
        logic.WebConfig(max_upload_mb=0)


def test_model_choices_put_the_cli_model_first(no_installed_models, work_2d):
    choices = logic.model_choices(str(work_2d))
    assert choices[0].reference == str(work_2d) and "--model" in choices[0].label
    assert logic.model_choices(None) == [c for c in choices if c.reference != str(work_2d)]


def test_load_work_folder_with_card(model, work_2d):
    assert model.name == work_2d.name and model.spatial_dims == 2 and model.num_channels == 1
    assert model.terms == ""  # a work folder has no licence of its own
    assert model.label_names == {0: "background", 1: "tumor"}
    assert "pet-mip-web-test" in model.card and "Folds: 0" in model.card


def test_load_model_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such model"):
        logic.load_model(str(tmp_path / "nowhere" / "work"))


def test_untrained_work_folder_is_a_clear_error(tmp_path, work_2d):
    empty = tmp_path / "empty_work"
    empty.mkdir()
    (empty / "plan.json").write_text((work_2d / "plan.json").read_text())
    with pytest.raises(VoxsegError, match="no trained fold"):
        logic.load_model(str(empty))


def test_segment_equals_the_library_prediction(model, work_2d, tmp_path):
    image, _ = pet_case(5)
    up = _upload(image, "pet.nii.gz", tmp_path)
    result = logic.segment(model, up)
    expected = Predictor.from_work(work_2d).predict(read_image(tmp_path / "src" / "pet.nii.gz")).labels
    np.testing.assert_array_equal(result.labels.array, expected.array)
    assert result.labels.same_geometry(up.image)
    assert result.summary.objects == len(result.rows)
    assert result.summary.total == pytest.approx(result.labels.array.astype(bool).sum() * 16.0)
    assert result.summary.unit == "mm²" and set(result.seconds) >= {"total", "network"}
    assert all(r.label == 1 for r in result.rows)


def test_segment_refuses_wrong_channels(model, tmp_path):
    rgb = UploadedImage("rgb.png", "png", ".png", (as_uint8(pet_case(0)[0]),) * 3)
    with pytest.raises(InputImageError, match=r"rgb\.png: the image has 3 channel"):
        logic.segment(model, rgb)


def test_3d_upload_runs_slice_by_slice_with_a_2d_model(model, tmp_path):
    stack = np.stack([pet_case(i)[0].array for i in range(3)])
    up = _upload(Volume(stack, (5.0, 4.0, 4.0)), "stack.nii.gz", tmp_path)
    result = logic.segment(model, up)
    assert result.labels.shape == (3, 128, 64) and result.summary.unit == "mm³"
    assert result.summary.total == pytest.approx(result.labels.array.astype(bool).sum() * 80.0)


@pytest.mark.parametrize(
    ("name", "expected_name"),
    [
        ("pet.nii.gz", "pet_mask.nii.gz"),
        ("pet.nii", "pet_mask.nii"),
        ("pet.nrrd", "pet_mask.nrrd"),
        ("pet.mha", "pet_mask.mha"),
        ("pet.tif", "pet_mask.tif"),
        ("pet.png", "pet_mask.png"),
    ],
)
def test_mask_download_in_the_input_format_and_geometry(model, tmp_path, name, expected_name):
    image = pet_case(2)[0]
    if name.endswith(".png"):
        image = as_uint8(image)
    up = _upload(image, name, tmp_path)
    result = logic.segment(model, up)
    file_name, data, _ = logic.mask_download(result.labels, up)
    assert file_name == expected_name == logic.mask_file_name(up)
    back = tmp_path / "back" / file_name
    back.parent.mkdir()
    back.write_bytes(data)
    mask = read_image(back)
    np.testing.assert_array_equal(mask.array, result.labels.array)
    if not name.endswith((".png", ".tif")):  # PNG/TIFF keep geometry in a sidecar, not in the file
        assert mask.same_geometry(up.image)


def test_dicom_input_gives_a_nifti_mask(model):
    up = UploadedImage("series.zip", "dicom", ".zip", (pet_case(0)[0],))
    assert logic.mask_file_name(up) == "series_mask.nii.gz"


def test_table_csv_equals_write_object_table(model, tmp_path):
    up = _upload(pet_case(5)[0], "pet.nii.gz", tmp_path)
    result = logic.segment(model, up)
    data = logic.table_csv(result.rows, 2)
    reference = write_object_table(list(result.rows), tmp_path / "t.csv", ndim=2).read_bytes()
    assert data == reference
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert len(rows) == result.summary.objects and "area_mm2" in rows[0]
    assert logic.table_csv([], 3).decode().startswith("id,class,voxels,volume_mm3")
    records = logic.table_records(result.rows)
    assert json.dumps(records) and len(records) == len(rows)


def test_report_download_is_a_png(model, tmp_path):
    up = _upload(pet_case(5)[0], "pet.nii.gz", tmp_path)
    result = logic.segment(model, up)
    name, data = logic.report_download(up, result, model)
    pic = Image.open(io.BytesIO(data))
    assert name == "pet_report.png" and pic.format == "PNG" and pic.height > 200


@pytest.fixture(scope="module")
def bundle_zip(work_2d, tmp_path_factory) -> Path:
    from voxseg.bundle import export_bundle

    out = tmp_path_factory.mktemp("bundle") / "pet-test.zip"
    return export_bundle(work_2d, out, name="pet-test", version="v1", description="PET MIP test model")


def test_bundle_zip_loads_with_its_card_and_predicts_like_the_work_folder(
    bundle_zip, work_2d, tmp_path, no_installed_models
):
    loaded = logic.load_model(str(bundle_zip))
    assert loaded.name == "pet-test@v1" and "# pet-test v1" in loaded.card
    # the licence and intended use under the picker: an export without them says so
    assert loaded.terms == "Licence: not stated. Intended use: not stated."
    up = _upload(pet_case(5)[0], "pet.nii.gz", tmp_path)
    expected = Predictor.from_work(work_2d).predict(up.image).labels
    np.testing.assert_array_equal(logic.segment(loaded, up).labels.array, expected.array)


def test_installed_bundles_are_offered_by_name(bundle_zip, work_2d, no_installed_models):
    from voxseg.bundle import install

    install(str(bundle_zip))
    choices = logic.model_choices(str(work_2d))
    assert [c.reference for c in choices] == [str(work_2d), "pet-test@v1"]
    assert choices[1].label.startswith("pet-test v1")
    assert logic.load_model("pet-test@v1").name == "pet-test@v1"


def test_segmentation_job_runs_in_the_background_and_releases_the_lock(model, tmp_path):
    import threading

    up = _upload(pet_case(5)[0], "pet.nii.gz", tmp_path)
    lock = threading.Lock()
    lock.acquire()
    job = logic.SegmentationJob(model, up, key=("m", "u"), lock=lock).start()
    assert job.wait(120) and not job.running
    assert job.error is None and job.total > 0 and job.done == job.total and job.fraction == 1.0
    np.testing.assert_array_equal(job.result.labels.array, logic.segment(model, up).labels.array)
    assert lock.acquire(blocking=False)  # released by the job
    rgb = UploadedImage("rgb.png", "png", ".png", (as_uint8(pet_case(0)[0]),) * 3)
    failed = logic.SegmentationJob(model, rgb, lock=lock).start()
    assert failed.wait(60) and failed.result is None
    assert failed.error.startswith("rgb.png: the image has 3 channel") and "\n" not in failed.error
    assert lock.acquire(blocking=False)


def test_instance_model_table_and_csv_name_the_class(work_2d, tmp_path):
    from voxseg.postprocessing import PostprocessingSpec, Step

    spec = PostprocessingSpec(final=(Step.of("instances", min_size=12),))  # the pet model, as an instance model
    model = logic.load_model(str(work_2d), postprocessing=spec)
    assert model.predictor.postprocessing.makes_instances
    up = _upload(pet_case(5)[0], "pet.nii.gz", tmp_path)
    result = logic.segment(model, up)
    assert result.rows and {r.label for r in result.rows} == {1}  # single-class: every object is a tumor
    records = logic.table_records(result.rows, label_names=result.label_names)
    assert {r["class"] for r in records} == {"tumor"}
    data = logic.table_csv(result.rows, 2, label_names=result.label_names)
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert [r["class"] for r in rows] == ["tumor"] * len(result.rows)
    plain = list(csv.DictReader(io.StringIO(logic.table_csv(result.rows, 2).decode())))
    for named, numbered in zip(rows, plain, strict=True):  # every other cell as write_object_table writes it
        assert numbered["class"] == "1" and {**named, "class": "1"} == numbered
    assert any("  tumor  " in line for line in logic.report_lines(up, result, model))


def test_report_text_has_short_spacing_and_drawable_units(model, tmp_path):
    from PIL import ImageDraw, ImageFont

    from voxseg.apps.web.render import ascii_text

    image = pet_case(5)[0]
    image = Volume(image.array, (0.1, 0.1))  # stored as float32 in the NIfTI header: 0.10000000149011612
    up = _upload(image, "pet.nii.gz", tmp_path)
    assert up.image.spacing[0] != 0.1
    result = logic.segment(model, up)
    lines = logic.report_lines(up, result, model)
    assert "spacing 0.1 × 0.1 mm" in lines[0] and "0.1000" not in lines[0]
    assert any("mm²" in line for line in lines)  # the unit of a 2D table, drawn as mm^2
    font = ImageFont.load_default()

    def pixels(ch: str) -> bytes:
        pic = Image.new("L", (24, 24))
        ImageDraw.Draw(pic).text((2, 2), ch, font=font, fill=255)
        return pic.tobytes()

    missing = pixels("\u4e00")  # a character the default font has no glyph for
    drawn = "".join(ascii_text(line) for line in lines) + ascii_text("mm³ 0.5 × 0.5 ≥")
    assert "mm^2" in drawn and "mm^3" in drawn
    assert not [ch for ch in set(drawn) if ch != " " and pixels(ch) == missing]


def test_segment_states_preflight_warnings_and_png_spacing(model, tmp_path, no_installed_models):
    image, _ = pet_case(5)
    far = Volume(image.array, (0.4, 0.4))  # the model works at 4 mm: 10x finer than its training images
    result = logic.segment(model, _upload(far, "fine.nii.gz", tmp_path))
    assert any("fine.nii.gz" in w and "spacing" in w and "far from the model" in w for w in result.warnings)
    png = UploadedImage("slice.png", "png", ".png", (as_uint8(image),))
    report = logic.preflight(model, png)
    assert any("slice.png" in w and "1 mm" in w for w in report.warnings), report.warnings
    assert "1 case" in report.summary() and "tiles" in report.summary()
