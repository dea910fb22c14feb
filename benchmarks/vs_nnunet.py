"""voxseg vs ``nnUNetv2_predict`` on the same nnU-Net model, cases and settings (one command, one table).

    python benchmarks/vs_nnunet.py --work /tmp/vs_nnunet [--nnunet-bin PATH] [--cases 2] [--size 32,64,64]
    python benchmarks/vs_nnunet.py --work /tmp/vs_real --real-size [--sizes 160,256] [--backends ...]

(``--real-size``: nnU-Net plans its own network, cases of 160^3 and 256^3; see ``vs_nnunet_real.py``.)

1. writes a small nnU-Net v2 model folder (plans.json, dataset.json, fold_0/checkpoint_final.pth saved
   the way nnU-Net saves it; :mod:`tests.nnunet.synthetic`) and trains it briefly on
   ``mouse-spinal-cord`` phantom cases (3 classes), so its outputs are confident and structured;
2. writes held-out phantom cases as ``CASE_0000.nii.gz``;
3. runs ``nnUNetv2_predict_from_modelfolder`` (nnunetv2 lives in its own venv: it is not a voxseg
   dependency), then ``voxseg import-nnunet`` once and voxseg's prediction of the folder
   (``load_predictor`` + ``predict_folder``, what ``voxseg predict`` runs; and
   :class:`~voxseg.nnunet.exact.NnunetExactPredictor`) as separate processes, each timed end to end
   (process start, imports, reading, writing) with the peak RSS of its whole process tree (psutil,
   polled every 50 ms), and compares the label maps voxel by voxel.

Rows: TTA on (nnU-Net's default), TTA off, and voxseg's ``--fast`` profile (no TTA, overlap 0.25, bf16
where supported). Both sides get the same thread count. The CPU load at start is printed: on a shared
machine the absolute times move, the ratios much less.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

from voxseg.dataset.phantoms import generate_case
from voxseg.io import Volume, read_image, write_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tests.nnunet.synthetic import make_model_folder, train_briefly
from vs_nnunet_real import add_arguments, real_size

PHANTOM = "mouse-spinal-cord"


def _default_nnunet_bin() -> str:
    found = shutil.which("nnUNetv2_predict_from_modelfolder")
    return found or "/work/venv-nnunet/bin/nnUNetv2_predict_from_modelfolder"


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, peak RSS in MiB of the process and all its children)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    continue
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    if proc.returncode:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{out[-3000:]}")
    return wall, peak / 2**20


def build_model(work: Path, size: tuple[int, ...], iterations: int) -> Path:
    models = work / "models"
    if models.exists():
        shutil.rmtree(models)
    folder = make_model_folder(
        models, classes=3, spacing=(1.0, 1.0, 1.0), patch_size=(16, 32, 32), mirror_axes=(0, 1, 2)
    )
    cases = [generate_case(PHANTOM, i, size=size) for i in range(3)]
    train_briefly(
        folder,
        [c.images[0].array.astype(np.float32) for c in cases],
        [c.label.array for c in cases],
        iterations=iterations,
    )
    return folder


def write_cases(work: Path, n: int, size: tuple[int, ...]) -> Path:
    inp = work / "images"
    if inp.exists():
        shutil.rmtree(inp)
    inp.mkdir(parents=True)
    spacings = [(1.0, 1.0, 1.0), (0.8, 0.7, 0.7), (3.0, 0.8, 0.8)]
    for k in range(n):
        case = generate_case(PHANTOM, 100 + k, size=size)
        vol = Volume(case.images[0].array.astype(np.float32), spacings[k % len(spacings)])
        write_image(vol, inp / f"case{k:02d}_0000.nii.gz")
    return inp


def agreement(a: Path, b: Path) -> float:
    names = sorted(p.name for p in a.glob("*.nii.gz"))
    same = total = 0
    for name in names:
        x, y = read_image(a / name).array, read_image(b / name).array
        same += int(np.count_nonzero(x == y))
        total += x.size
    return same / total


def run_exact(bundle: str, inp: str, out: str, tta: str, threads: str) -> None:
    """Subprocess mode: NnunetExactPredictor over a folder of CASE_0000.nii.gz files."""
    import torch

    from voxseg.nnunet.exact import NnunetExactPredictor

    torch.set_num_threads(int(threads))
    predictor = NnunetExactPredictor.from_bundle(bundle, tta=tta == "tta")
    Path(out).mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(inp).glob("*_0000.nii.gz")):
        labels = predictor.predict(read_image(path)).labels
        write_image(labels, Path(out) / path.name.replace("_0000.nii.gz", ".nii.gz"))


def run_voxseg(bundle: str, inp: str, out: str, mode: str, threads: str) -> None:
    """Subprocess mode: what ``voxseg predict -m BUNDLE`` does (load_predictor + predict_folder).

    ``voxseg predict -m`` takes work folders only at the time of writing (bundle models through
    ``load_predictor``); this runs the same library calls in a fresh process.
    """
    from voxseg.inference.batch import predict_folder
    from voxseg.inference.runtime import configure_threads
    from voxseg.models import load_predictor

    configure_threads(int(threads))
    options = {"tta": mode == "tta", "precision": "fp32", "overlap": 0.5}
    if mode == "fast":  # voxseg predict --fast: no TTA, overlap 0.25, first fold, precision auto (bf16)
        options = {"tta": False, "precision": "auto", "overlap": 0.25}
    predictor = load_predictor(bundle, **options)
    if mode == "fast":
        predictor = predictor.first_folds(1)
    predict_folder(inp, out, predictor, resume=False)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("--exact-worker", "--voxseg-worker"):
        (run_exact if sys.argv[1] == "--exact-worker" else run_voxseg)(*sys.argv[2:7])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--nnunet-bin", default=_default_nnunet_bin())
    ap.add_argument("--cases", type=int, default=2)
    ap.add_argument("--size", default="32,64,64")
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    add_arguments(ap)
    args = ap.parse_args()
    if args.real_size:
        if args.nnunet_bin.endswith("nnUNetv2_predict_from_modelfolder"):
            args.nnunet_bin = str(Path(args.nnunet_bin).parent)
        real_size(args)
        return
    size = tuple(int(v) for v in args.size.split(","))
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(f"CPU: {os.cpu_count()} cores, load average at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    folder = build_model(work, size, args.iterations)
    inp = write_cases(work, args.cases, size)
    threads = str(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, nnUNet_raw=str(work), nnUNet_preprocessed=str(work))
    env["nnUNet_results"] = str(work)
    voxseg = [sys.executable, "-m", "voxseg"]
    bundle = work / "model.zip"
    t_import, _ = run_measured([*voxseg, "-q", "import-nnunet", str(folder), "-o", str(bundle)], env)
    print(f"voxseg import-nnunet: {t_import:.1f} s")
    rows = []
    head = f"{'setting':36} {'nnU-Net s':>9} {'voxseg s':>9} {'speed-up':>8} {'nnU-Net MiB':>11} {'voxseg MiB':>10}"
    print(
        f"\n{args.cases} cases of {size} ({PHANTOM}; spacings 1, 0.8x0.7x0.7, 3x0.8x0.8 mm), fold 0, {threads} threads"
    )
    print(head + f" {'RSS ratio':>9} {'agreement':>9}", flush=True)

    def row(label, t_nn, m_nn, t_vx, m_vx, agree):
        rows.append(label)
        print(
            f"{label:36} {t_nn:9.1f} {t_vx:9.1f} {t_nn / t_vx:7.2f}x {m_nn:11.0f} {m_vx:10.0f} "
            f"{m_vx / m_nn:9.2f} {100 * agree:8.3f}%",
            flush=True,
        )

    for label, nn_flags in [("TTA off", ["--disable_tta"]), ("TTA on", [])]:
        tag = label.split()[-1]
        nn_out, vx_out, ex_out = work / f"nn_{tag}", work / f"vx_{tag}", work / f"exact_{tag}"
        for d in (nn_out, vx_out, ex_out):
            shutil.rmtree(d, ignore_errors=True)
        nn_cmd = [args.nnunet_bin, "-i", str(inp), "-o", str(nn_out), "-m", str(folder), "-f", "0", "-device", "cpu"]
        t_nn, m_nn = run_measured([*nn_cmd, "--disable_progress_bar", *nn_flags], env)
        vx_cmd = [sys.executable, __file__, "--voxseg-worker", str(bundle), str(inp), str(vx_out)]
        t_vx, m_vx = run_measured([*vx_cmd, "tta" if label == "TTA on" else "notta", threads], env)
        row(f"{label}: voxseg predict (fp32)", t_nn, m_nn, t_vx, m_vx, agreement(nn_out, vx_out))
        ex_cmd = [sys.executable, __file__, "--exact-worker", str(bundle), str(inp), str(ex_out)]
        t_ex, m_ex = run_measured([*ex_cmd, "tta" if label == "TTA on" else "notta", threads], env)
        row(f"{label}: NnunetExactPredictor", t_nn, m_nn, t_ex, m_ex, agreement(nn_out, ex_out))
        if label == "TTA off":
            fast_out = work / "vx_fast"
            shutil.rmtree(fast_out, ignore_errors=True)
            cmd = [sys.executable, __file__, "--voxseg-worker", str(bundle), str(inp), str(fast_out), "fast"]
            t_f, m_f = run_measured([*cmd, threads], env)
            row("voxseg --fast vs nnU-Net TTA off", t_nn, m_nn, t_f, m_f, agreement(nn_out, fast_out))


if __name__ == "__main__":
    main()
