"""``vs_nnunet.py --real-size``: voxseg against ``nnUNetv2_predict`` on a network nnU-Net planned itself.

1. writes an nnU-Net raw dataset (``Dataset{ID}_VoxsegReal``: ``--train-cases`` phantom cases of
   ``--train-size`` voxels, 3 classes) and runs ``nnUNetv2_plan_and_preprocess -d ID -c 3d_fullres
   --no_pp`` (nnunetv2 in its own venv: ``--nnunet-bin`` names its ``bin`` folder): nnU-Net picks the
   patch (96^3 and 32-320 features for 96^3+ cases) and the network;
2. builds that network, trains it briefly on patches of ``--train-patch`` (a full-patch step takes
   6-23 s on a CPU; the weights only need structured outputs) and saves ``checkpoint_final.pth`` the
   way nnU-Net's trainer does, then ``voxseg import-nnunet --onnx``;
3. for every ``--sizes`` (default 160 and 256: cubes), ``--cases`` held-out phantom cases, and TTA
   off / on, runs as separate processes, each timed end to end with the peak PSS summed over its
   process tree (psutil, polled every 0.2 s): ``nnUNetv2_predict_from_modelfolder`` with glibc malloc
   and with tcmalloc preloaded (``--tcmalloc``; skipped when absent), and ``voxseg predict`` with each
   ``--backends`` (torch, onnxruntime, openvino, auto; precision as the CLI's default);
4. prints per row: seconds, peak PSS (MiB), label agreement with nnU-Net (glibc, same TTA setting),
   mean foreground Dice with the phantom's reference labels.
"""

from __future__ import annotations

import json
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
from tests.nnunet.synthetic import build_network, save_checkpoint, train_briefly

PHANTOM = "mouse-spinal-cord"
CLASSES = 3
TRAINER, PLANS, CONFIG = "nnUNetTrainer", "nnUNetPlans", "3d_fullres"
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
BACKENDS = ("torch", "onnxruntime", "openvino", "auto")


def tree_memory(root: psutil.Process, pss: bool = True) -> int:
    """Bytes of PSS (or RSS) summed over ``root`` and all its children (0 for a vanished process)."""
    total = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_full_info().pss if pss else p.memory_info().rss
        except psutil.Error:
            continue
    return total


def run_pss(cmd: list[str], env: dict[str, str], poll: float = 0.2) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, peak PSS in MiB summed over its process tree)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_memory(root))
        time.sleep(poll)
    wall = time.perf_counter() - t0
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    if proc.returncode:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{out[-3000:]}")
    return wall, peak / 2**20


def mean_dice(pred: np.ndarray, ref: np.ndarray, classes: int = CLASSES) -> float:
    """Mean Dice over the foreground classes present in either map (1.0 when none is)."""
    scores = []
    for c in range(1, classes):
        a, b = pred == c, ref == c
        total = int(a.sum()) + int(b.sum())
        if total:
            scores.append(2.0 * int(np.logical_and(a, b).sum()) / total)
    return float(np.mean(scores)) if scores else 1.0


def write_dataset(raw: Path, n: int, size: tuple[int, ...], spacing: tuple[float, ...]) -> list:
    """nnU-Net raw layout: imagesTr/CASE_0000.nii.gz, labelsTr/CASE.nii.gz, dataset.json."""
    for sub in ("imagesTr", "labelsTr"):
        (raw / sub).mkdir(parents=True, exist_ok=True)
    cases = [generate_case(PHANTOM, i, size=size) for i in range(n)]
    for i, case in enumerate(cases):
        write_image(
            Volume(case.images[0].array.astype(np.float32), spacing), raw / "imagesTr" / f"tr{i:03d}_0000.nii.gz"
        )
        write_image(Volume(case.label.array.astype(np.uint8), spacing), raw / "labelsTr" / f"tr{i:03d}.nii.gz")
    labels = {"background": 0, **{f"class{c}": c for c in range(1, CLASSES)}}
    dataset = {"channel_names": {"0": "MRI"}, "labels": labels, "numTraining": n, "file_ending": ".nii.gz"}
    (raw / "dataset.json").write_text(json.dumps(dataset, indent=2))
    return cases


def plan_and_train(work: Path, args, env: dict[str, str]) -> Path:
    """nnU-Net plans the dataset; its network is trained briefly and saved as nnU-Net's trainer does."""
    name = f"Dataset{args.dataset_id:03d}_VoxsegReal"
    raw = work / "nnUNet_raw" / name
    shutil.rmtree(raw, ignore_errors=True)
    size = (args.train_size,) * 3
    cases = write_dataset(raw, args.train_cases, size, (args.spacing,) * 3)
    plan_cmd = [str(Path(args.nnunet_bin) / "nnUNetv2_plan_and_preprocess"), "-d", str(args.dataset_id)]
    wall, _ = run_pss([*plan_cmd, "-c", CONFIG, "--no_pp", "-npfp", "1"], env)
    plans = json.loads((work / "nnUNet_preprocessed" / name / f"{PLANS}.json").read_text())
    cfg = plans["configurations"][CONFIG]
    kwargs = cfg["architecture"]["arch_kwargs"]
    print(f"nnU-Net planned in {wall:.0f} s: patch {cfg['patch_size']}, features {kwargs['features_per_stage']}")
    dataset = json.loads((raw / "dataset.json").read_text())
    folder = work / "nnUNet_results" / name / f"{TRAINER}__{PLANS}__{CONFIG}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    net = build_network(plans, CONFIG, 1, CLASSES)
    ckpt = folder / "fold_0" / "checkpoint_final.pth"
    save_checkpoint(ckpt, net, configuration=CONFIG, fold=0, plans=plans, dataset=dataset, mirror_axes=(0, 1, 2))
    patch = [min(p, args.train_patch) for p in cfg["patch_size"]]
    t0 = time.perf_counter()
    images = [c.images[0].array.astype(np.float32) for c in cases]
    train_briefly(folder, images, [c.label.array for c in cases], iterations=args.iterations, patch_size=patch)
    print(f"trained {args.iterations} steps on {patch} patches in {time.perf_counter() - t0:.0f} s")
    return folder


def write_cases(work: Path, side: int, n: int, spacing: float) -> tuple[Path, Path]:
    """``n`` held-out phantom cases of ``side``^3 voxels and their reference labels."""
    inp, refs = work / f"images_{side}", work / f"refs_{side}"
    for d in (inp, refs):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    for k in range(n):
        case = generate_case(PHANTOM, 100 + k, size=(side,) * 3)
        write_image(Volume(case.images[0].array.astype(np.float32), (spacing,) * 3), inp / f"c{k:02d}_0000.nii.gz")
        write_image(Volume(case.label.array.astype(np.uint8), (spacing,) * 3), refs / f"c{k:02d}.nii.gz")
    return inp, refs


def compare(out: Path, ref_out: Path | None, refs: Path) -> tuple[float | None, float]:
    """(label agreement with ``ref_out``, mean foreground Dice with the reference labels)."""
    same = total = 0
    dice = []
    for ref in sorted(refs.glob("*.nii.gz")):
        pred = read_image(out / ref.name).array
        dice.append(mean_dice(pred, read_image(ref).array))
        if ref_out is not None:
            other = read_image(ref_out / ref.name).array
            same += int(np.count_nonzero(pred == other))
            total += pred.size
    return (same / total if total else None), float(np.mean(dice))


def commands(args, folder: Path, bundle: Path, inp: Path, out: Path, tta: bool, env: dict[str, str]) -> list:
    """(label, command, environment) of every run for one input folder and TTA setting."""
    nn = [str(Path(args.nnunet_bin) / "nnUNetv2_predict_from_modelfolder"), "-i", str(inp), "-m", str(folder)]
    nn += ["-f", "0", "-device", "cpu", "--disable_progress_bar", *([] if tta else ["--disable_tta"])]
    runs = [("nnU-Net glibc", [*nn, "-o", str(out / "nn_glibc")], env)]
    if args.tcmalloc and Path(args.tcmalloc).is_file():
        runs.append(("nnU-Net tcmalloc", [*nn, "-o", str(out / "nn_tcmalloc")], {**env, "LD_PRELOAD": args.tcmalloc}))
    vx = [sys.executable, "-m", "voxseg", "-q", "predict", "-i", str(inp), "-m", str(bundle), "--no-resume"]
    vx += ["--tta" if tta else "--no-tta", "--threads", str(args.threads)]
    for backend in args.backends.split(","):
        runs.append((f"voxseg {backend}", [*vx, "--backend", backend, "-o", str(out / f"vx_{backend}")], env))
    return runs


def real_size(args) -> list[dict]:
    """The whole ``--real-size`` mode (see the module docstring); returns the table's rows."""
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    threads = str(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, nnUNet_n_proc_DA="1")
    env.update({k: str(work / k) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")})
    load = os.getloadavg()
    print(f"CPU: {os.cpu_count()} cores, load at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}", flush=True)
    folder = plan_and_train(work, args, env)
    bundle = work / "model.zip"
    voxseg = [sys.executable, "-m", "voxseg", "-q", "import-nnunet", str(folder), "-o", str(bundle), "--onnx"]
    wall, _ = run_pss(voxseg, env)
    print(f"voxseg import-nnunet --onnx: {wall:.0f} s", flush=True)
    print(f"{'size':>5} {'TTA':>4} {'run':<22} {'s':>8} {'PSS MiB':>8} {'agree':>8} {'Dice':>7}", flush=True)
    rows = []
    for side in (int(s) for s in args.sizes.split(",")):
        inp, refs = write_cases(work, side, args.cases, args.spacing)
        for tta in (False, True):
            out = work / f"out_{side}_{'tta' if tta else 'notta'}"
            shutil.rmtree(out, ignore_errors=True)
            for label, cmd, run_env in commands(args, folder, bundle, inp, out, tta, env):
                wall, pss = run_pss(cmd, run_env)
                agree, dice = compare(Path(cmd[cmd.index("-o") + 1]), out / "nn_glibc", refs)
                row = {"size": side, "tta": tta, "run": label, "seconds": round(wall, 1), "pss_mib": round(pss)}
                rows.append({**row, "agreement": agree, "dice": round(dice, 4)})
                a = "-" if agree is None else f"{100 * agree:.3f}%"
                print(
                    f"{side:>5} {'on' if tta else 'off':>4} {label:<22} {wall:8.1f} {pss:8.0f} {a:>8} {dice:7.4f}",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps({"load_at_start": load, "rows": rows}, indent=2))
    return rows


def add_arguments(ap) -> None:
    """The ``--real-size`` mode's options (``vs_nnunet.py`` parses them)."""
    ap.add_argument("--real-size", action="store_true", help="nnU-Net plans the network; 160^3 and 256^3 cases")
    ap.add_argument("--sizes", default="160,256", help="--real-size: case sizes (cubes), comma-separated")
    ap.add_argument("--train-size", type=int, default=128, help="--real-size: training case side (voxels)")
    ap.add_argument("--train-cases", type=int, default=4, help="--real-size: training cases nnU-Net plans from")
    ap.add_argument("--train-patch", type=int, default=48, help="--real-size: training patch side (at most)")
    ap.add_argument("--spacing", type=float, default=1.0, help="--real-size: isotropic voxel spacing (mm)")
    ap.add_argument("--dataset-id", type=int, default=917, help="--real-size: nnU-Net dataset id")
    ap.add_argument("--tcmalloc", default=TCMALLOC, help="--real-size: libtcmalloc_minimal.so.4 to preload")
    ap.add_argument("--backends", default=",".join(BACKENDS), help="--real-size: voxseg backends to run")
    ap.add_argument("--json", type=Path, default=None, help="--real-size: also write the rows here")
