"""Tiny nnU-Net v2 trained-model folders, written the way nnU-Net writes them (no nnunetv2 needed).

For tests, benchmarks and demos of :func:`voxseg.nnunet.import_nnunet`: ``plans.json``,
``dataset.json`` and ``fold_K/checkpoint_final.pth`` holding the dict ``nnUNetTrainer.save_checkpoint``
writes (network weights from dynamic-network-architectures, optimizer state, logging with numpy
scalars, ``init_args``, trainer name, mirroring axes). Needs the ``[nnunet]`` extra.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

TRAINER = "nnUNetTrainer"
PLANS = "nnUNetPlans"


def architecture(
    ndim: int, *, features=(4, 8, 16), resenc: bool = False, kernel_z: int = 3, stride_z: int = 2
) -> dict[str, Any]:
    n = len(features)
    if ndim == 3:
        kernels = [[kernel_z, 3, 3]] + [[3, 3, 3]] * (n - 1)
        strides = [[1, 1, 1]] + [[stride_z, 2, 2]] * (n - 1)
    else:
        kernels, strides = [[3, 3]] * n, [[1, 1]] + [[2, 2]] * (n - 1)
    kw: dict[str, Any] = {
        "n_stages": n,
        "features_per_stage": list(features),
        "conv_op": f"torch.nn.modules.conv.Conv{ndim}d",
        "kernel_sizes": kernels,
        "strides": strides,
        "n_conv_per_stage": [1] * n if resenc else [2] * n,
        "n_conv_per_stage_decoder": [1] * (n - 1) if resenc else [2] * (n - 1),
        "conv_bias": True,
        "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{ndim}d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    if resenc:
        kw["n_blocks_per_stage"] = kw.pop("n_conv_per_stage")
    cls = "ResidualEncoderUNet" if resenc else "PlainConvUNet"
    return {
        "network_class_name": f"dynamic_network_architectures.architectures.unet.{cls}",
        "arch_kwargs": kw,
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def plans_json(
    configuration: str,
    *,
    patch_size: Sequence[int],
    spacing: Sequence[float],
    channels: int = 1,
    schemes: Sequence[str] | None = None,
    transpose: Sequence[int] = (0, 1, 2),
    arch: dict[str, Any] | None = None,
    use_mask: bool = False,
) -> dict[str, Any]:
    ndim = len(patch_size)
    schemes = list(schemes or ["ZScoreNormalization"] * channels)
    backward = [list(transpose).index(k) for k in range(3)]
    conf = {
        "data_identifier": f"{PLANS}_{configuration}",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "patch_size": list(patch_size),
        "median_image_size_in_voxels": [32] * ndim,
        "spacing": list(spacing),
        "normalization_schemes": schemes,
        "use_mask_for_norm": [use_mask] * channels,
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": arch or architecture(ndim),
        "batch_dice": True,
    }
    props = {
        str(c): {
            "max": 400.0,
            "mean": 120.0 + c,
            "median": 118.0,
            "min": -50.0,
            "percentile_00_5": 10.0,
            "percentile_99_5": 300.0,
            "std": 40.0,
        }
        for c in range(channels)
    }
    return {
        "dataset_name": "Dataset999_Tiny",
        "plans_name": PLANS,
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
        "original_median_shape_after_transp": [1 if ndim == 2 else 32, 32, 32],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": list(transpose),
        "transpose_backward": backward,
        "configurations": {configuration: conf},
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": props,
    }


def dataset_json(channels: int = 1, classes: int = 2, file_ending: str = ".nii.gz") -> dict[str, Any]:
    names = ["CT", "T2", "T1", "FLAIR"]
    labels = {"background": 0, **{f"class{k}": k for k in range(1, classes)}}
    return {
        "channel_names": {str(c): names[c] for c in range(channels)},
        "labels": labels,
        "numTraining": 4,
        "file_ending": file_ending,
        "name": "Tiny",
    }


def build_network(plans: dict[str, Any], configuration: str, channels: int, classes: int) -> torch.nn.Module:
    """nnU-Net's network for the plans (as its trainer builds it), with fresh He-initialised weights."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
    from dynamic_network_architectures.initialization.weight_init import InitWeights_He

    arch = plans["configurations"][configuration]["architecture"]
    kw = dict(arch["arch_kwargs"])
    nd = int(kw["conv_op"][-2])
    kw["conv_op"] = {2: torch.nn.Conv2d, 3: torch.nn.Conv3d}[nd]
    kw["norm_op"] = {2: torch.nn.InstanceNorm2d, 3: torch.nn.InstanceNorm3d}[nd]
    kw["nonlin"] = torch.nn.LeakyReLU
    cls = ResidualEncoderUNet if arch["network_class_name"].endswith("ResidualEncoderUNet") else PlainConvUNet
    net = cls(input_channels=channels, num_classes=classes, deep_supervision=True, **kw)
    net.apply(InitWeights_He(1e-2))
    return net


def save_checkpoint(
    path: Path,
    net: torch.nn.Module,
    *,
    configuration: str,
    fold: int,
    plans: dict[str, Any],
    dataset: dict[str, Any],
    mirror_axes: Sequence[int] | None,
    trainer: str = TRAINER,
    extra: dict[str, Any] | None = None,
) -> None:
    """``torch.save`` the dict nnU-Net's ``nnUNetTrainer.save_checkpoint`` writes."""
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.99, nesterov=True)
    checkpoint = {
        "network_weights": net.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "grad_scaler_state": None,
        "logging": {
            "mean_fg_dice": [np.float64(0.5), np.float64(0.6)],
            "ema_fg_dice": [np.float64(0.5), np.float64(0.55)],
            "dice_per_class_or_region": [[np.float64(0.5)], [np.float64(0.6)]],
            "train_losses": [np.float32(-0.1), np.float32(-0.2)],
            "val_losses": [np.float32(-0.1), np.float32(-0.2)],
            "lrs": [0.01, 0.0099],
            "epoch_start_timestamps": [1.0, 2.0],
            "epoch_end_timestamps": [1.5, 2.5],
        },
        "_best_ema": np.float64(0.55),
        "current_epoch": 2,
        "init_args": {
            "plans": plans,
            "configuration": configuration,
            "fold": fold,
            "dataset_json": dataset,
            "device": torch.device("cpu"),
        },
        "trainer_name": trainer,
        "inference_allowed_mirroring_axes": None if mirror_axes is None else tuple(mirror_axes),
        **(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)


def make_model_folder(
    root: Path,
    *,
    configuration: str = "3d_fullres",
    channels: int = 1,
    classes: int = 2,
    folds: Sequence[int] = (0,),
    patch_size: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    transpose: Sequence[int] = (0, 1, 2),
    resenc: bool = False,
    schemes: Sequence[str] | None = None,
    mirror_axes: Sequence[int] | None = "all",  # type: ignore[assignment]
    trainer: str = TRAINER,
    arch: dict[str, Any] | None = None,
    seed: int = 0,
    postprocessing: tuple[list[Any], list[dict[str, Any]]] | None = None,
    kernel_z: int = 3,
    stride_z: int = 2,
) -> Path:
    """Write ``root/Dataset999_Tiny/<trainer>__nnUNetPlans__<configuration>/`` and return that folder."""
    ndim = 2 if configuration == "2d" else 3
    patch_size = list(patch_size or ([32, 32] if ndim == 2 else [16, 32, 32]))
    spacing = list(spacing or [1.0] * ndim)
    arch = arch or architecture(ndim, resenc=resenc, kernel_z=kernel_z, stride_z=stride_z)
    plans = plans_json(
        configuration,
        patch_size=patch_size,
        spacing=spacing,
        channels=channels,
        schemes=schemes,
        transpose=transpose,
        arch=arch,
    )
    dataset = dataset_json(channels, classes)
    folder = root / "Dataset999_Tiny" / f"{trainer}__{PLANS}__{configuration}"
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    axes = tuple(range(ndim)) if mirror_axes == "all" else mirror_axes
    for fold in folds:
        torch.manual_seed(seed + fold)
        net = build_network(plans, configuration, channels, classes)
        save_checkpoint(
            folder / f"fold_{fold}" / "checkpoint_final.pth",
            net,
            configuration=configuration,
            fold=fold,
            plans=plans,
            dataset=dataset,
            mirror_axes=axes,
            trainer=trainer,
        )
    if postprocessing is not None:
        with open(folder / "postprocessing.pkl", "wb") as fh:
            pickle.dump(postprocessing, fh)
    return folder


def train_briefly(
    folder: Path,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    *,
    iterations: int = 40,
    fold: int = 0,
    seed: int = 0,
    lr: float = 1e-2,
    patch_size: Sequence[int] | None = None,
) -> None:
    """Fit fold ``fold`` of a :func:`make_model_folder` model a little (cross-entropy, Adam), in place.

    Random weights give near-tied class scores almost everywhere, so comparisons of two inference
    pipelines on them measure noise; a few dozen steps on phantom data give confident, structured
    outputs. ``images`` are z-scored per case (the plans' ZScoreNormalization) and sampled in
    patches of the plans' patch size (``patch_size``: smaller ones, for a real-sized network whose
    full-patch step takes many seconds on a CPU); the checkpoint is saved back in nnU-Net's format.
    """
    path = folder / f"fold_{fold}" / "checkpoint_final.pth"
    plans = json.loads((folder / "plans.json").read_text())
    dataset = json.loads((folder / "dataset.json").read_text())
    cfg = folder.name.split("__")[-1]
    from voxseg.nnunet.checkpoint import _load  # the allow-listed safe loader, as for any nnU-Net checkpoint

    ckpt = _load(path)
    net = build_network(plans, cfg, len(dataset["channel_names"]), len(dataset["labels"]))
    net.load_state_dict(ckpt["network_weights"])
    net.decoder.deep_supervision = False
    patch = list(patch_size or plans["configurations"][cfg]["patch_size"])
    rng = np.random.default_rng(seed)
    data = [((x - x.mean()) / max(float(x.std()), 1e-8)).astype(np.float32) for x in images]
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(iterations):
        k = int(rng.integers(len(data)))
        start = [int(rng.integers(0, max(1, s - p + 1))) for s, p in zip(data[k].shape, patch, strict=True)]
        box = tuple(slice(a, a + p) for a, p in zip(start, patch, strict=True))
        x = torch.from_numpy(np.ascontiguousarray(data[k][box]))[None, None]
        y = torch.from_numpy(np.ascontiguousarray(labels[k][box]).astype(np.int64))[None]
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.decoder.deep_supervision = True
    ckpt["network_weights"] = net.state_dict()
    torch.save(ckpt, path)
