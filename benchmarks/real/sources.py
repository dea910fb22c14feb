"""The real images, read from the packages that ship them (no data download at run time).

| source      | package (how to get it)                                   | what                          |
|-------------|-----------------------------------------------------------|-------------------------------|
| colin27     | Debian ``mricron-data`` (``apt-get install mricron-data``) | Colin27 T1, ch2bet, AAL 116   |
| cranium     | Debian ``invesalius-examples``                             | head CT (HU), 0.957²×1.5 mm   |
| inia19      | Debian ``mricron-data``                                    | macaque T1 0.5 mm, NeuroMaps  |
| stardist    | PyPI ``stardist`` wheel (``pip download --no-deps``)       | 2D nuclei + 125 instance ids  |

A missing package raises :class:`MissingSource` with the command that installs it; the driver prints
it and skips the task. The stardist wheel is the one thing fetched if absent: ``pip download`` into the
cache (the wheel only, never installed), and only when ``allow_pip`` is true.
"""

from __future__ import annotations

import glob
import logging
import plistlib
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxseg.io import Volume, read_image

__all__ = ["MissingSource", "Colin27", "Cranium", "Inia19", "Nuclei", "colin27", "cranium", "inia19", "nuclei"]

log = logging.getLogger(__name__)
MRICRON = Path("/usr/share/mricron/templates")
CRANIUM = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")
BONE_HU = 226  # the package's bone mask is exactly HU >= 226 (checked voxel by voxel)


class MissingSource(Exception):
    """A package holding a task's images is not installed; the message says how to install it."""


@dataclass(frozen=True)
class Colin27:
    t1: Volume
    brain: np.ndarray  # bool, ch2bet > 0
    aal: np.ndarray  # int16, 0 and 1..116 (renumbered in the order of aal.nii.txt)
    aal_names: tuple[str, ...]


@dataclass(frozen=True)
class Inia19:
    t1: Volume  # rhesus macaque T1, brain extracted, 0.5 mm
    regions: np.ndarray  # int32 NeuroMaps region ids (0 outside), same grid


@dataclass(frozen=True)
class Cranium:
    ct: Volume  # int16 HU, array order (z, y, x)
    bone: np.ndarray  # bool, the package's mask_0 (HU >= 226)


@dataclass(frozen=True)
class Nuclei:
    image: np.ndarray  # (512, 512) uint16
    instances: np.ndarray  # (512, 512) instance ids


def colin27(root: Path = MRICRON) -> Colin27:
    files = {k: root / f"{k}.nii.gz" for k in ("ch2", "ch2bet", "aal")}
    if not all(f.is_file() for f in files.values()):
        raise MissingSource(f"{root}: Colin27 files missing; install them with 'apt-get install -y mricron-data'")
    t1 = read_image(files["ch2"])
    bet = read_image(files["ch2bet"]).array
    aal = read_image(files["aal"]).array
    if bet.shape != t1.shape or aal.shape != t1.shape:
        raise MissingSource(f"{root}: ch2, ch2bet and aal are not on one grid ({t1.shape}, {bet.shape}, {aal.shape})")
    rows = [ln.split() for ln in (root / "aal.nii.txt").read_text().splitlines() if len(ln.split()) >= 3]
    names = [r[1] for r in rows]
    # aal.nii.txt: "index name code"; mricron's aal.nii.gz holds the indices (1..116), other AAL
    # releases the codes (2001..9170): map whichever the image holds to 1..116
    column = 0 if int(aal.max()) <= max(int(r[0]) for r in rows) else 2
    values = [int(r[column]) for r in rows]
    lut = np.zeros(int(max(values)) + 1, np.int16)
    lut[values] = np.arange(1, len(values) + 1, dtype=np.int16)
    aal_i = np.rint(aal).astype(np.int64)
    aal_i[(aal_i < 0) | (aal_i >= lut.size)] = 0
    return Colin27(t1, bet > 0, lut[aal_i], tuple(names))


def inia19(root: Path = MRICRON) -> Inia19:
    files = {k: root / f"inia19-{k}.nii.gz" for k in ("t1-brain", "NeuroMaps")}
    if not all(f.is_file() for f in files.values()):
        raise MissingSource(f"{root}: INIA19 macaque files missing; install with 'apt-get install -y mricron-data'")
    t1 = read_image(files["t1-brain"])
    regions = np.rint(read_image(files["NeuroMaps"]).array).astype(np.int32)
    if regions.shape != t1.shape:
        raise MissingSource(f"{root}: inia19 T1 and NeuroMaps are not on one grid ({t1.shape}, {regions.shape})")
    return Inia19(t1, np.maximum(regions, 0))


def cranium(path: Path = CRANIUM, *, cache: Path) -> Cranium:
    if not path.is_file():
        raise MissingSource(f"{path}: missing; install it with 'apt-get install -y invesalius-examples'")
    folder = cache / "cranium"
    if not (folder / "matrix.dat").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "r:gz") as tar:
            for m in tar.getmembers():
                name = Path(m.name).name
                if m.isfile() and name in {"main.plist", "matrix.dat", "mask_0.plist", "mask_0.dat"}:
                    data = tar.extractfile(m)
                    if data is not None:
                        (folder / (name + ".part")).write_bytes(data.read())
                        (folder / (name + ".part")).replace(folder / name)
    main = plistlib.loads((folder / "main.plist").read_bytes())
    shape = tuple(int(n) for n in main["matrix"]["shape"])
    ct = np.fromfile(folder / "matrix.dat", dtype=np.dtype(main["matrix"]["dtype"])).reshape(shape)
    sx, sy, sz = (float(s) for s in main["spacing"])  # InVesalius: x, y, z; the matrix is (z, y, x)
    mask_meta = plistlib.loads((folder / "mask_0.plist").read_bytes())
    mshape = tuple(int(n) for n in mask_meta["mask_shape"])
    mask = np.fromfile(folder / "mask_0.dat", dtype=np.uint8).reshape(mshape)[1:, 1:, 1:] > 127  # row 0: a header
    return Cranium(Volume(ct, spacing=(sz, sy, sx)), mask)


def stardist_wheel(cache: Path, *, allow_pip: bool) -> Path:
    found = sorted(glob.glob(str(cache / "wheels" / "stardist-*.whl")))
    if found:
        return Path(found[-1])
    if not allow_pip:
        raise MissingSource(f"{cache / 'wheels'}: no stardist wheel; get one with 'pip download --no-deps stardist'")
    log.warning("note: fetching the stardist wheel once with 'pip download --no-deps stardist' (not installed)")
    (cache / "wheels").mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "stardist", "-d", str(cache / "wheels")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    found = sorted(glob.glob(str(cache / "wheels" / "stardist-*.whl")))
    if done.returncode or not found:
        raise MissingSource(f"pip download --no-deps stardist failed: {(done.stderr or done.stdout).strip()[-300:]}")
    return Path(found[-1])


def nuclei(cache: Path, *, allow_pip: bool = True) -> Nuclei:
    import tifffile

    wheel = stardist_wheel(cache, allow_pip=allow_pip)
    with zipfile.ZipFile(wheel) as zf:
        try:
            img = tifffile.imread(zf.open("stardist/data/images/img2d.tif"))
            inst = tifffile.imread(zf.open("stardist/data/images/mask2d.tif"))
        except KeyError:
            raise MissingSource(f"{wheel}: no stardist/data/images/img2d.tif or mask2d.tif in this wheel") from None
    return Nuclei(np.asarray(img), np.asarray(inst))
