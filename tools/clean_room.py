#!/usr/bin/env python3
"""Clean-room install matrix: voxseg installed alone, and with each extra alone, in fresh venvs.

Every row gets a new virtual environment (no system site-packages, no PYTHONPATH), installs
voxseg's wheel with ``-c constraints.txt`` and runs the smoke commands of that row. The wheels
are built once into a wheelhouse (``pip wheel``, which reuses pip's cache) and every row installs
from it with ``--no-index --find-links``, so a row costs an unpack, not a download. pip's index
settings come from the user's pip configuration (``pip config list``), never from this script.

Prints a table (row, seconds, OK/FAIL) and exits 1 when a row failed. ``make test`` runs it.

    python tools/clean_room.py                 # every row
    python tools/clean_room.py base onnx       # some rows
    python tools/clean_room.py --keep          # keep the temporary folder (printed) to look at a failure
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints.txt"
NNUNET_PACKAGE = "dynamic-network-architectures>=0.4.4,<0.5"  # installed --no-deps, as the Makefile does
BIOIMAGEIO_SPEC = "bioimageio.spec>=0.5.14"  # over the 0.5.12 that bioimageio.core pins, --no-deps (pyproject.toml)

# --- the smoke checks (run with the row's python; $WORK is the row's scratch folder) ---------------

ONNX_SMOKE = """
import tempfile, zipfile
from importlib.resources import files
from pathlib import Path
import numpy as np, onnxruntime
from voxseg.bundle.load import open_bundle
from voxseg.bundle.onnx_export import INPUT_NAME, onnx_bytes
bundle = open_bundle(files("voxseg.bundle") / "models" / "pet-mip-tumors-v1.zip")
m = bundle.manifest
weights = Path(tempfile.mkdtemp()) / "fold.safetensors"
weights.write_bytes(bundle.read(m.weights_file(m.folds[0])))
session = onnxruntime.InferenceSession(onnx_bytes(m, weights), providers=["CPUExecutionProvider"])
shape = (1, m.config.network.in_channels, *(m.config.fixed_shape or m.config.patch_size))
(logits,) = session.run(None, {INPUT_NAME: np.zeros(shape, np.float32)})
assert logits.shape[2:] == shape[2:] and np.isfinite(logits).all(), logits.shape
print("onnxruntime ran the exported", m.name, "on", shape)
"""

BIOIMAGEIO_SMOKE = """
import os
from importlib.resources import files
from pathlib import Path
from bioimageio.spec import InvalidDescr, load_description
from voxseg.bundle.bioimageio import export_bioimageio
zip_path = files("voxseg.bundle") / "models" / "pet-mip-tumors-v1.zip"
out = export_bioimageio(zip_path, Path(os.environ["WORK"]) / "pet.zip")
descr = load_description(out)
assert not isinstance(descr, InvalidDescr), descr.validation_summary.format()
print("bioimage.io package valid:", out)
"""

DICOM_SMOKE = """
import os, sys
from pathlib import Path
import numpy as np, SimpleITK as sitk, pydicom, highdicom
from voxseg.io import read_image
folder = Path(os.environ["WORK"]) / "series"
folder.mkdir()
vol = np.arange(4 * 8 * 8, dtype=np.int16).reshape(4, 8, 8)
writer = sitk.ImageFileWriter()
writer.KeepOriginalImageUIDOn()
for k in range(vol.shape[0]):
    s = sitk.GetImageFromArray(vol[k])
    s.SetSpacing((0.5, 0.5))
    for tag, value in {"0008|0060": "CT", "0020|000e": "1.2.826.0.1.3680043.2.1125.1.1",
                       "0020|000d": "1.2.826.0.1.3680043.2.1125.1.2", "0020|0013": str(k + 1),
                       "0020|0032": f"0\\\\0\\\\{2.0 * k}", "0020|0037": "1\\\\0\\\\0\\\\0\\\\1\\\\0",
                       "0028|0030": "0.5\\\\0.5", "0018|0050": "2.0"}.items():
        s.SetMetaData(tag, value)
    writer.SetFileName(str(folder / f"{k:03d}.dcm"))
    writer.Execute(s)
read = read_image(folder)
assert read.array.shape == vol.shape, read.array.shape
assert np.array_equal(read.array, vol)
print("read a", read.array.shape, "DICOM series; pydicom", pydicom.__version__, "highdicom", highdicom.__version__)
"""

WEB_SMOKE = """
import voxseg.apps.web.app as app
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(app.__file__, default_timeout=120).run()
assert not at.exception, [e.message for e in at.exception]
print("the web app's page ran:", len(at.main), "elements")
"""

NAPARI_SMOKE = """
import npe2
import voxseg.apps.napari.segment, voxseg.apps.napari.objects, voxseg.apps.napari.interactive  # noqa
manifest = npe2.PluginManifest.from_distribution("voxseg")
print("napari plug-in", manifest.name, "with", len(manifest.contributions.commands or []), "commands")
"""

OPENVINO_SMOKE = """
from importlib.resources import files
from voxseg.bundle.golden import run_golden
from voxseg.bundle.load import open_bundle
bundle = open_bundle(files("voxseg.bundle") / "models" / "mouse-lung-nodules-v2.zip")
(result,) = run_golden(bundle, backends=["openvino"])
assert result.ok and not result.skipped, result.line()
print(result.line())
"""

NNUNET_SMOKE = f"""
import sys
import dynamic_network_architectures  # noqa: F401
import voxseg.nnunet.network  # noqa: F401
sys.path.insert(0, {str(Path(__file__).resolve().parents[1] / "tests" / "nnunet")!r})  # test fixtures, not shipped
import synthetic
plans = synthetic.plans_json("3d_fullres", patch_size=(16, 32, 32), spacing=(1.0, 1.0, 1.0))
net = synthetic.build_network(plans, "3d_fullres", 1, 2)
print("built nnU-Net's", type(net).__name__)
"""


@dataclass(frozen=True)
class Row:
    name: str
    extra: str | None  # None: voxseg alone
    checks: tuple[tuple[str, ...], ...]
    expect: tuple[str, ...] = field(default=())  # paths under $WORK that the checks must create
    no_deps: tuple[str, ...] = ()  # packages installed afterwards with --no-deps


def _py(code: str) -> tuple[str, ...]:
    return ("python", "-c", code)


ROWS = (
    Row(
        "base",
        None,
        (
            ("voxseg", "--help"),
            ("voxseg", "demo", "-o", "$WORK/demo"),
            ("voxseg", "dataset", "phantom", "pet-mip", "$WORK/phantom", "-n", "1"),
            ("voxseg", "predict", "-m", "pet-mip-tumors@v1", "-i", "$WORK/phantom/imagesTr", "-o", "$WORK/pred"),
        ),
        expect=(
            "demo/demo_overview.png",
            "demo/demo_objects.csv",
            "demo/demo_nodules.nii.gz",
            "pred/pet_mip_000.nii.gz",
            "pred/predictions.json",
        ),
    ),
    Row("web", "web", (_py(WEB_SMOKE), ("voxseg", "web", "--help"))),
    Row("napari", "napari", (_py(NAPARI_SMOKE),)),
    Row(
        "onnx",
        "onnx",
        (
            _py(ONNX_SMOKE),
            ("voxseg", "dataset", "phantom", "pet-mip", "$WORK/phantom", "-n", "1"),
            (
                "voxseg",
                "predict",
                "--backend",
                "onnxruntime",
                "-m",
                "pet-mip-tumors@v1",
                "-i",
                "$WORK/phantom/imagesTr",
                "-o",
                "$WORK/pred",
            ),
        ),
        expect=("pred/pet_mip_000.nii.gz",),
    ),
    Row("bioimageio", "bioimageio", (_py(BIOIMAGEIO_SMOKE),), no_deps=(BIOIMAGEIO_SPEC,)),
    Row("dicom", "dicom", (_py(DICOM_SMOKE),)),
    Row("openvino", "openvino", (_py(OPENVINO_SMOKE),)),
    Row("mlflow", "mlflow", (_py("import mlflow, voxseg.experiment.tracking; print('mlflow', mlflow.__version__)"),)),
    Row("ray", "ray", (_py("import ray, voxseg.distributed.ray_engine; print('ray', ray.__version__)"),)),
    Row(
        "nnunet",
        None,
        (_py(NNUNET_SMOKE), ("voxseg", "import-nnunet", "--help")),
        no_deps=(NNUNET_PACKAGE,),
    ),
)
ALL_EXTRAS = sorted({r.extra for r in ROWS if r.extra})


@dataclass
class Result:
    row: str
    seconds: float
    ok: bool
    detail: str = ""


def _run(cmd: list[str], *, log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> bool:
    start = time.perf_counter()
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, check=False)
        out.write(f"[exit {done.returncode}, {time.perf_counter() - start:.1f} s]\n")
    return done.returncode == 0


def _pip(*args: str, python: str | Path = sys.executable) -> list[str]:
    return [str(python), "-m", "pip", *args]


def build_wheelhouse(tmp: Path, rows: list[Row], log: Path) -> tuple[Path, Path]:
    """voxseg's wheel and every wheel the rows need, once; returns (voxseg wheel, wheelhouse)."""
    dist, house = tmp / "dist", tmp / "wheelhouse"
    if not _run(_pip("wheel", "--quiet", "--no-deps", "-w", str(dist), str(ROOT)), log=log):
        raise SystemExit(f"clean room: building voxseg's wheel failed; see {log}")
    wheel = next(dist.glob("voxseg-*.whl"))
    extras = ",".join(sorted({r.extra for r in rows if r.extra}))
    spec = f"{wheel}[{extras}]" if extras else str(wheel)
    if not _run(_pip("wheel", "--quiet", "-c", str(CONSTRAINTS), "-w", str(house), spec), log=log):
        raise SystemExit(f"clean room: collecting the wheels failed; see {log}")
    for pkg in {p for r in rows for p in r.no_deps}:
        if not _run(_pip("wheel", "--quiet", "--no-deps", "-w", str(house), pkg), log=log):
            raise SystemExit(f"clean room: collecting {pkg} failed; see {log}")
    return wheel, house


def _row_env(venv: Path, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "VOXSEG_"))}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        WORK=str(work),
        HOME=str(work / "home"),  # settings and caches of this row only
        VOXSEG_CACHE=str(work / "cache"),
        VOXSEG_MODELS=str(work / "models"),
        MPLCONFIGDIR=str(work / "mpl"),
        RAY_USAGE_STATS_ENABLED="0",
        MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}",
    )
    return env


def run_row(row: Row, *, tmp: Path, wheel: Path, house: Path) -> Result:
    start = time.perf_counter()
    venv, work = tmp / "venvs" / row.name, tmp / "work" / row.name
    (work / "home").mkdir(parents=True)
    log = tmp / "logs" / f"{row.name}.log"
    py = venv / "bin" / "python"
    # --no-compile: byte-compiling all of torch costs more than the install; imports compile what they use
    offline = ["--no-compile", "--no-index", "--find-links", str(house), "-c", str(CONSTRAINTS)]
    spec = f"{wheel}[{row.extra}]" if row.extra else str(wheel)
    steps: list[tuple[str, list[str]]] = [
        ("venv", [sys.executable, "-m", "venv", "--without-pip", str(venv)]),
        ("install", _pip("--python", str(py), "install", "--quiet", *offline, spec)),
    ]
    for pkg in row.no_deps:
        steps.append(("install", _pip("--python", str(py), "install", "--quiet", "--no-deps", *offline, pkg)))
    env = _row_env(venv, work)
    for cmd in row.checks:
        steps.append((cmd[1] if cmd[0] == "voxseg" else "smoke", [c.replace("$WORK", str(work)) for c in cmd]))
    try:
        for what, cmd in steps:
            if not _run(cmd, log=log, env=env, cwd=work):
                return Result(row.name, time.perf_counter() - start, False, f"{what} failed; see {log}")
        missing = [p for p in row.expect if not (work / p).exists()]
        if missing:
            return Result(row.name, time.perf_counter() - start, False, f"missing {', '.join(missing)}; see {log}")
        return Result(row.name, time.perf_counter() - start, True)
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # one venv on disk at a time


def print_table(results: list[Result], total: float) -> None:
    width = max(len(r.row) for r in [*results, Result("total", 0, True)])
    print(f"\n{'row':<{width}}  {'seconds':>7}  result")
    for r in results:
        print(f"{r.row:<{width}}  {r.seconds:7.1f}  {'OK' if r.ok else 'FAIL'}{'  ' + r.detail if r.detail else ''}")
    print(f"{'total':<{width}}  {total:7.1f}  {'OK' if all(r.ok for r in results) else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", nargs="*", help=f"rows to run (default: all): {', '.join(r.name for r in ROWS)}")
    parser.add_argument("--jobs", "-j", type=int, default=1, help="rows run at the same time (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (venvs are removed)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.rows) - {r.name for r in ROWS})
    if unknown:
        parser.error(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(r.name for r in ROWS)}")
    rows = [r for r in ROWS if not args.rows or r.name in args.rows]
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="voxseg-clean-room-"))
    (tmp / "logs").mkdir()
    print(f"clean room in {tmp}: {', '.join(r.name for r in rows)}", flush=True)
    try:
        wheel, house = build_wheelhouse(tmp, rows, tmp / "logs" / "wheelhouse.log")
        results = [Result("wheelhouse", time.perf_counter() - start, True)]
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for result in pool.map(lambda row: run_row(row, tmp=tmp, wheel=wheel, house=house), rows):
                print(f"{result.row}: {'OK' if result.ok else 'FAIL'} ({result.seconds:.0f} s)", flush=True)
                results.append(result)
        print_table(results, time.perf_counter() - start)
        if not all(r.ok for r in results):
            for r in results:
                if not r.ok:
                    print(f"\n--- {r.row} log (last lines) ---")
                    print("\n".join(Path(r.detail.rsplit("see ", 1)[-1]).read_text().splitlines()[-25:]))
            return 1
        return 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
