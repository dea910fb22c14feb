"""Builders of hostile files: each writes its files into a folder and returns the CLI arguments
that feed them to voxseg, the file the error must name, and the output location that must stay
empty. Real files only; the bundles are perturbed copies of a built-in model."""

from __future__ import annotations

import gzip
import io
import json
import stat
import struct
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import tifffile
from PIL import Image

import voxseg
from voxseg.bundle._util import sha256_bytes

BASE_BUNDLE = Path(voxseg.__file__).parent / "bundle" / "models" / "mouse-lung-nodules-v1.zip"
WEIGHTS = "weights/fold_0.safetensors"


@dataclass(frozen=True)
class Case:
    args: list[str]  # after "voxseg"
    names: Path  # the file (or folder) the error line must name
    output: Path  # must not exist (or be empty) afterwards


Builder = Callable[[Path], Case]


# -- images (fed to `voxseg points IMAGE -o OUT/points.json`) ---------------------------------------------


def _label() -> np.ndarray:
    a = np.zeros((8, 10, 12), np.uint8)
    a[3:5, 4:7, 5:9] = 1
    return a


def _nifti_bytes(array: np.ndarray | None = None, spacing=(1.0, 1.0, 2.0)) -> bytes:
    img = sitk.GetImageFromArray(_label() if array is None else array)
    img.SetSpacing(spacing)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.nii"
        sitk.WriteImage(img, str(path), useCompression=False)
        return path.read_bytes()


def _patched(raw: bytes, fmt: str, offset: int, *values) -> bytes:
    b = bytearray(raw)
    struct.pack_into(fmt, b, offset, *values)
    return bytes(b)


def _image_case(folder: Path, name: str, data: bytes | None) -> Case:
    path = folder / name
    if data is not None:
        path.write_bytes(data)
    return Case(["points", str(path), "-o", str(folder / "out" / "points.json")], path, folder / "out")


def _pixdim(value: float, axis: int = 1) -> Builder:
    return lambda f: _image_case(f, "pixdim.nii", _patched(_nifti_bytes(), "<f", 76 + 4 * axis, value))


def _truncated_nii(f: Path) -> Case:
    raw = _nifti_bytes()
    return _image_case(f, "truncated.nii", raw[: 352 + 200])


def _truncated_gz(f: Path) -> Case:
    raw = gzip.compress(_nifti_bytes(np.random.default_rng(0).normal(size=(8, 10, 12)).astype(np.float32)))
    return _image_case(f, "truncated.nii.gz", raw[: len(raw) // 2])


def _wrong_magic(f: Path) -> Case:
    return _image_case(f, "magic.nii", b"NOTNIFTI" + bytes(600))


def _not_gzip(f: Path) -> Case:
    return _image_case(f, "plain.nii.gz", _nifti_bytes())


def _negative_dim(f: Path) -> Case:
    return _image_case(f, "negdim.nii", _patched(_nifti_bytes(), "<h", 42, -12))


def _six_d(f: Path) -> Case:
    raw = _patched(_nifti_bytes(), "<8h", 40, 6, 12, 10, 2, 2, 1, 2, 1)  # 960 voxels, as written
    return _image_case(f, "sixd.nii", raw)


def _huge_dims(f: Path) -> Case:
    return _image_case(f, "huge.nii", _patched(_nifti_bytes(), "<4h", 40, 3, 30000, 30000, 30000))


def _nan_only(f: Path) -> Case:
    return _image_case(f, "nan.nii", _nifti_bytes(np.full((8, 10, 12), np.nan, np.float32)))


def _empty(f: Path) -> Case:
    return _image_case(f, "empty.nii.gz", b"")


def _directory(f: Path) -> Case:
    (f / "x.nii.gz").mkdir()
    return _image_case(f, "x.nii.gz", None)


def _tiff(numerator: int, denominator: int) -> Builder:
    """A TIFF in centimetres whose X/Y resolution tags are patched to ``numerator / denominator``."""

    def build(f: Path) -> Case:
        path = f / "res.tif"
        tifffile.imwrite(path, _label()[4], resolution=(10, 10), resolutionunit="CENTIMETER")
        with tifffile.TiffFile(path) as tif:
            offsets = [tif.pages[0].tags[n].valueoffset for n in ("XResolution", "YResolution")]
        raw = bytearray(path.read_bytes())
        for offset in offsets:
            struct.pack_into("<II", raw, offset, numerator, denominator)
        return _image_case(f, "res.tif", bytes(raw))

    return build


def _png_truncated(f: Path) -> Case:
    buf = io.BytesIO()
    Image.fromarray(_label()[4] * 255).save(buf, format="PNG")
    return _image_case(f, "cut.png", buf.getvalue()[:60])


def _png_sidecar(sidecar: str) -> Builder:
    def build(f: Path) -> Case:
        Image.fromarray(_label()[4] * 255).save(f / "side.png")
        (f / "side.png.json").write_text(sidecar)
        return _image_case(f, "side.png", None)

    return build


def _itk_header(suffix: str, old: bytes, new: bytes) -> Builder:
    def build(f: Path) -> Case:
        path = f / f"sp{suffix}"
        img = sitk.GetImageFromArray(_label())
        img.SetSpacing((1.0, 1.0, 2.0))
        sitk.WriteImage(img, str(path), useCompression=False)
        raw = path.read_bytes()
        assert old in raw
        return _image_case(f, path.name, raw.replace(old, new, 1))

    return build


def _dicom_without_spacing(f: Path) -> Case:
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelSpacing
    path = f / "nospacing.dcm"
    ds.save_as(path)
    return _image_case(f, path.name, None)


IMAGES: dict[str, Builder] = {
    "nifti-pixdim-0": _pixdim(0.0),
    "nifti-pixdim-negative-zero": _pixdim(-0.0, 2),
    "nifti-pixdim-nan": _pixdim(float("nan"), 2),
    "nifti-pixdim-inf": _pixdim(float("inf"), 3),
    "nifti-pixdim-1e9": _pixdim(1e9),
    "nifti-pixdim-1e-9": _pixdim(1e-9),
    "nifti-truncated": _truncated_nii,
    "nifti-gz-truncated": _truncated_gz,
    "nifti-wrong-magic": _wrong_magic,
    "nifti-gz-not-gzip": _not_gzip,
    "nifti-negative-dim": _negative_dim,
    "nifti-6d": _six_d,
    "nifti-huge-dims-tiny-file": _huge_dims,
    "nifti-nan-only": _nan_only,
    "empty-file": _empty,
    "directory-named-nii-gz": _directory,
    "tiff-zero-resolution": _tiff(0, 1),
    "tiff-zero-denominator": _tiff(10, 0),
    "png-truncated": _png_truncated,
    "png-sidecar-spacing-0": _png_sidecar('{"spacing": [0, 1]}'),
    "png-sidecar-deep": _png_sidecar('{"spacing": ' + "[" * 1000 + "]" * 1000 + "}"),
    "mha-spacing-0": _itk_header(".mha", b"ElementSpacing = 1 1 2", b"ElementSpacing = 0 1 2"),
    "mha-spacing-nan": _itk_header(".mha", b"ElementSpacing = 1 1 2", b"ElementSpacing = nan 1 2"),
    "nrrd-spacing-1e9": _itk_header(".nrrd", b"(0,0,2)", b"(0,0,1e9)"),
    "nrrd-spacing-0": _itk_header(".nrrd", b"(0,0,2)", b"(0,0,0)"),
    "dicom-missing-pixelspacing": _dicom_without_spacing,
}


# -- datasets (fed to `voxseg plan DATA -o WORK`) ----------------------------------------------------------

GOOD_DATASET = {
    "channel_names": {"0": "CT"},
    "labels": {"background": 0, "tumor": 1},
    "numTraining": 1,
    "file_ending": ".nii.gz",
}


def _dataset(content: bytes | Callable[[dict], object]) -> Builder:
    def build(f: Path) -> Case:
        data = f / "Dataset001_Bad"
        (data / "imagesTr").mkdir(parents=True)
        (data / "labelsTr").mkdir()
        (data / "imagesTr" / "case_0000.nii.gz").write_bytes(gzip.compress(_nifti_bytes()))
        (data / "labelsTr" / "case.nii.gz").write_bytes(gzip.compress(_nifti_bytes()))
        raw = content if isinstance(content, bytes) else json.dumps(content(dict(GOOD_DATASET))).encode()
        (data / "dataset.json").write_bytes(raw)
        return Case(["plan", str(data), "-o", str(f / "WORK")], data / "dataset.json", f / "WORK")

    return build


DEEP = ("[" * 1000 + "]" * 1000).encode()
DATASETS: dict[str, Builder] = {
    "dataset-json-deep": _dataset(b'{"channel_names": ' + DEEP + b"}"),
    "dataset-json-50mb": _dataset(b'{"description": "' + b"x" * (50 << 20) + b'"}'),
    "dataset-json-invalid-utf8": _dataset(b'{"name": "\xff\xfe\xfa"}'),
    "dataset-json-nan-literal": _dataset(
        json.dumps(GOOD_DATASET).replace('"numTraining": 1', '"numTraining": NaN').encode()
    ),
    "dataset-json-a-list": _dataset(lambda d: [d]),
    "dataset-labels-wrong-type": _dataset(lambda d: {**d, "labels": ["background", "tumor"]}),
    "dataset-labels-non-integer": _dataset(lambda d: {**d, "labels": {"background": 0, "tumor": 1.5}}),
    "dataset-channel-names-missing": _dataset(lambda d: {k: v for k, v in d.items() if k != "channel_names"}),
}


# -- bundles (fed to `voxseg install ZIP` and `voxseg bundle verify ZIP`) ----------------------------------


def base_members() -> dict[str, bytes]:
    with zipfile.ZipFile(BASE_BUNDLE) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _rehash(members: dict[str, bytes]) -> dict[str, bytes]:
    """bundle.json's sha256 table updated, so the perturbation itself is what gets checked."""
    manifest = json.loads(members["bundle.json"])
    manifest["files"] = {n: sha256_bytes(members[n]) for n in manifest["files"] if n in members}
    return {**members, "bundle.json": json.dumps(manifest, indent=2).encode()}


def _zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for info, data in members:
            zf.writestr(info, data)
    return path


def _safetensors(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _bundle(command: str, perturb: Callable[[dict[str, bytes]], list]) -> Builder:
    def build(f: Path) -> Case:
        path = _zip(f / "bad.zip", perturb(base_members()))
        if command == "install":
            args = ["install", str(path), "--cache", str(f / "cache"), "--models", str(f / "models")]
            return Case(args, path, f / "models")
        return Case(["bundle", "verify", str(path)], path, f / "models")

    return build


def _bomb(members: dict[str, bytes]) -> list:
    return [*members.items()] + [(f"zeros/{i:04d}.bin.txt", bytes(1 << 20)) for i in range(400)]


def _symlink(members: dict[str, bytes]) -> list:
    info = zipfile.ZipInfo("weights/link")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return [*members.items(), (info, b"/etc/passwd")]


def _network(filters: list[int]) -> Callable[[dict[str, bytes]], list]:
    def perturb(members: dict[str, bytes]) -> list:
        manifest = json.loads(members["bundle.json"])
        manifest["network"]["kwargs"]["filters"] = filters
        for conf in manifest["plan"]["configurations"].values():
            conf["network"]["kwargs"]["filters"] = filters
        return list(_rehash({**members, "bundle.json": json.dumps(manifest).encode()}).items())

    return perturb


def _weights(header: dict, data: bytes) -> Callable[[dict[str, bytes]], list]:
    return lambda m: list(_rehash({**m, WEIGHTS: _safetensors(header, data)}).items())


def _flipped(members: dict[str, bytes]) -> list:
    w = bytearray(members[WEIGHTS])
    w[-10] ^= 0xFF
    return [*{**members, WEIGHTS: bytes(w)}.items()]


def _deep_manifest(members: dict[str, bytes]) -> list:
    return [*{**members, "bundle.json": b'{"files": {}, "x": ' + DEEP + b"}"}.items()]


F32 = "F32"
BUNDLES: dict[str, Builder] = {
    "bundle-zip-bomb-install": _bundle("install", _bomb),
    "bundle-zip-bomb-verify": _bundle("verify", _bomb),
    "bundle-path-traversal": _bundle("install", lambda m: [*m.items(), ("weights/../../evil.txt", b"x")]),
    "bundle-symlink-member": _bundle("install", _symlink),
    "bundle-unlisted-member": _bundle("install", lambda m: [*m.items(), ("extra/notes.txt", b"hello")]),
    "bundle-absurd-network-install": _bundle("install", _network([1 << 20, 16, 32, 64])),
    "bundle-absurd-network-verify": _bundle("verify", _network([1 << 20, 16, 32, 64])),
    "bundle-network-bigger-than-weights": _bundle("install", _network([512, 1024, 2048, 4096])),
    "bundle-perturbed-sha": _bundle("install", _flipped),
    "bundle-safetensors-string-offsets": _bundle(
        "install", _weights({"w": {"dtype": F32, "shape": [2], "data_offsets": ["0", "8"]}}, bytes(8))
    ),
    "bundle-safetensors-float-offsets": _bundle(
        "verify", _weights({"w": {"dtype": F32, "shape": [2], "data_offsets": [0.0, 8.5]}}, bytes(8))
    ),
    "bundle-safetensors-overlapping": _bundle(
        "install",
        _weights(
            {
                "a": {"dtype": F32, "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": F32, "shape": [2], "data_offsets": [4, 12]},
            },
            bytes(12),
        ),
    ),
    "bundle-safetensors-huge-shape": _bundle(
        "install", _weights({"w": {"dtype": F32, "shape": [1 << 40, 1 << 40], "data_offsets": [0, 8]}}, bytes(8))
    ),
    "bundle-safetensors-unknown-dtype": _bundle(
        "verify", _weights({"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, bytes(16))
    ),
    "bundle-manifest-deep": _bundle("install", _deep_manifest),
    "bundle-not-a-zip": lambda f: _not_zip(f),
    "bundle-truncated-zip": lambda f: _truncated_zip(f),
}


def _not_zip(f: Path) -> Case:
    path = f / "bad.zip"
    path.write_bytes(b"this is not a zip archive" * 10)
    return Case(["install", str(path), "--cache", str(f / "cache"), "--models", str(f / "models")], path, f / "models")


def _truncated_zip(f: Path) -> Case:
    path = f / "bad.zip"
    path.write_bytes(BASE_BUNDLE.read_bytes()[:200_000])
    return Case(["bundle", "verify", str(path)], path, f / "models")


# -- other JSON inputs ------------------------------------------------------------------------------------


def _index(f: Path) -> Case:
    path = f / "index.json"
    path.write_bytes(b'{"models": ' + DEEP + b"}")
    args = ["install", "some-model", "--index", str(path), "--cache", str(f / "cache"), "--models", str(f / "models")]
    return Case(args, path, f / "models")


def _plan_json(f: Path) -> Case:
    work = f / "WORK"
    work.mkdir()
    (work / "plan.json").write_bytes(b'{"configurations": ' + DEEP + b"}")
    image = f / "image.nii"
    image.write_bytes(_nifti_bytes())
    args = ["predict", "-i", str(image), "-m", str(work), "-o", str(f / "out" / "pred.nii.gz")]
    return Case(args, work / "plan.json", f / "out")


OTHERS: dict[str, Builder] = {"index-json-deep": _index, "plan-json-deep": _plan_json}

ALL: dict[str, Builder] = {**IMAGES, **DATASETS, **BUNDLES, **OTHERS}
