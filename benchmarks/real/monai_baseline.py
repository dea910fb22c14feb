"""The fixed MONAI U-Net baseline: one configuration for every task, trained in-process to a budget.

- network: ``monai.networks.nets.UNet`` channels (16, 32, 64, 128), strides 2, 2 residual units;
- loss DiceCE (softmax, one-hot target), Adam 1e-3, batch 2;
- data: every case resampled to the training set's median spacing (image linear, label nearest),
  z-scored per image (CT too: no HU window, the same recipe everywhere);
- patches 96³ (3D) or 128² (2D), uniformly random crops (no foreground oversampling), images
  smaller than a patch zero-padded;
- prediction: MONAI ``sliding_window_inference`` (overlap 0.5, no TTA) on the resampled grid, argmax,
  labels brought back to the original grid by nearest neighbour;
- instance datasets (nuclei): trained on the foreground mask, objects are its connected parts.

Not tuned per task, on purpose: it is the reference a user gets from MONAI's tutorials.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from voxseg.dataset.layout import Case, read_dataset
from voxseg.io import Volume, read_image, write_image

__all__ = ["run_baseline"]

log = logging.getLogger(__name__)
CHANNELS = (16, 32, 64, 128)
BATCH = 2


def _resample(arr: np.ndarray, spacing: Sequence[float], target: Sequence[float], order: int) -> np.ndarray:
    shape = [max(1, round(n * s / t)) for n, s, t in zip(arr.shape, spacing, target, strict=True)]
    return _resize(arr, shape, order)


def _resize(arr: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    if tuple(shape) == arr.shape:
        return arr
    axes = [np.linspace(0, n - 1, m, dtype=np.float32) for n, m in zip(arr.shape, shape, strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"))
    out = arr.dtype if order == 0 else np.float32
    return ndimage.map_coordinates(arr if order == 0 else arr.astype(np.float32), grid, order=order, output=out)


def _zscore(arr: np.ndarray) -> np.ndarray:
    a = arr.astype(np.float32)
    return (a - a.mean()) / (a.std() + 1e-6)


def _load(case: Case, target: Sequence[float], instances: bool = False) -> tuple[np.ndarray, np.ndarray]:
    img = read_image(case.images[0])
    lab = read_image(case.label).array if case.label is not None else None
    if lab is not None and instances:  # the tutorial way: a semantic mask, objects from connected parts
        lab = lab > 0
    x = _zscore(_resample(img.array, img.spacing, target, 1))
    y = _resample(lab.astype(np.int64), img.spacing, target, 0) if lab is not None else None
    return x, y


def connected_parts(labels: np.ndarray) -> np.ndarray:
    """One id per connected part of the foreground (4-/6-connected): instances from a semantic mask."""
    from voxseg.postprocessing import instances

    return np.asarray(instances(labels > 0, connectivity=4 if labels.ndim == 2 else 6)).astype(np.int32)


def _pad_to(arr: np.ndarray, patch: Sequence[int]) -> np.ndarray:
    pad = [(0, max(0, p - n)) for n, p in zip(arr.shape, patch, strict=True)]
    return np.pad(arr, pad) if any(b for _, b in pad) else arr


def _crop(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, patch: Sequence[int]):
    start = [int(rng.integers(0, n - p + 1)) for n, p in zip(x.shape, patch, strict=True)]
    sl = tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))
    return x[sl], y[sl]


def run_baseline(
    dataset: Path,
    out: Path,
    *,
    minutes: float,
    train_cases: Sequence[str] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Train on ``dataset``'s training cases for ``minutes`` (wall clock), predict ``imagesTs`` into ``out``.

    Returns iterations, training seconds and prediction seconds.
    """
    import torch
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ds = read_dataset(dataset)
    cases = [c for c in ds.training if train_cases is None or c.case_id in set(train_cases)]
    spacings = np.array([read_image(c.images[0]).spacing for c in cases])
    target = tuple(float(s) for s in np.median(spacings, axis=0))
    ndim = spacings.shape[1]
    patch = (96,) * 3 if ndim == 3 else (128,) * 2
    classes = max(ds.spec.label_values) + 1
    data = [tuple(_pad_to(a, patch) for a in _load(c, target, ds.spec.instances)) for c in cases]
    net = UNet(ndim, 1, classes, channels=CHANNELS, strides=(2,) * (len(CHANNELS) - 1), num_res_units=2)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    t0, iterations = time.perf_counter(), 0
    while iterations == 0 or time.perf_counter() - t0 < minutes * 60:
        xs, ys = zip(*(_crop(rng, *data[int(rng.integers(len(data)))], patch) for _ in range(BATCH)), strict=True)
        x = torch.from_numpy(np.stack(xs)[:, None].copy())
        y = torch.from_numpy(np.stack(ys)[:, None].copy())
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        iterations += 1
    train_s = time.perf_counter() - t0
    log.info("MONAI baseline %s: %d iterations in %.0f s, last loss %.3f", ds.spec.name, iterations, train_s, loss)
    net.eval()
    t1 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        for case in ds.test:
            original = read_image(case.images[0])
            x, _ = _load(Case(case.case_id, case.images, None), target)
            shape = x.shape
            x = torch.from_numpy(_pad_to(x, patch)[None, None].copy())
            logits = sliding_window_inference(x, patch, 1, net, overlap=0.5, mode="gaussian")
            labels = logits[0].argmax(0).numpy().astype(np.int16)[tuple(slice(0, n) for n in shape)]
            labels = _resize(labels, original.shape, 0)
            if ds.spec.instances:
                labels = connected_parts(labels)
            geometry = {"spacing": original.spacing, "origin": original.origin, "direction": original.direction}
            write_image(Volume(labels, **geometry), out / f"{case.case_id}{ds.spec.file_ending}")
    return {"iterations": iterations, "train_s": train_s, "predict_s": time.perf_counter() - t1}
