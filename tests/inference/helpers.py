"""Hand-built plans, a deterministic registered test network and work folders for inference tests.

``vx_test_threshold`` is a real network in the registry whose output is known: for each class
``k`` the logit is ``-scale * (x[channel] - centers[k])**2`` (the nearest centre wins; one output
channel gives the sigmoid logit ``scale * (x - centers[0])``). With ``normalization="none"`` a
binary model with centres (0, 1) labels voxels above 0.5 as foreground, so tests know exactly
which voxels a prediction must mark.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from voxseg.io import write_json_atomic
from voxseg.nets import NETWORKS, NetworkSpec, build_network
from voxseg.planning import ConfigurationPlan, Normalization, Plan
from voxseg.postprocessing import PostprocessingSpec
from voxseg.training.checkpoint import TrainState, save_checkpoint
from voxseg.workdir.layout import WorkDir

TEST_NET = "vx_test_threshold"


class ThresholdNet(torch.nn.Module):
    def __init__(self, spatial_dims, in_channels, out_channels, centers=None, channel=0, scale=8.0):
        super().__init__()
        if centers is None:
            centers = [float(k) for k in range(max(out_channels, 2))][:out_channels] if out_channels > 1 else [0.5]
        self.centers = torch.nn.Parameter(torch.tensor(centers, dtype=torch.float32))
        self.scale = torch.nn.Parameter(torch.tensor(float(scale)))
        self.channel = channel
        self.out_channels = out_channels

    def forward(self, x):
        v = x[:, self.channel : self.channel + 1]
        shape = (1, -1) + (1,) * (x.ndim - 2)
        c = self.centers.reshape(shape)
        if self.out_channels == 1:
            return self.scale * (v - c)
        return -self.scale * (v - c) ** 2


if TEST_NET not in NETWORKS:
    NETWORKS.register(TEST_NET, ThresholdNet)


def threshold_spec(ndim=3, in_channels=1, out_channels=2, **kw) -> NetworkSpec:
    return NetworkSpec(TEST_NET, {"spatial_dims": ndim, "in_channels": in_channels, "out_channels": out_channels, **kw})


def unet_spec(ndim=3, in_channels=1, out_channels=2) -> NetworkSpec:
    return NetworkSpec(
        "unet",
        {
            "spatial_dims": ndim,
            "in_channels": in_channels,
            "out_channels": out_channels,
            "channels": [4, 8],
            "strides": [2],
            "num_res_units": 0,
        },
    )


def make_plan(
    *,
    ndim: int = 3,
    channels: Sequence[str] = ("CT",),
    labels: dict[str, int] | None = None,
    target_spacing: Sequence[float] | None = None,
    patch_size: Sequence[int] | None = None,
    network: NetworkSpec | None = None,
    normalization: Sequence[Normalization] | None = None,
    mirror_axes: Sequence[int] | None = None,
    fixed_shape: Sequence[int] | None = None,
    data_ndim: int | None = None,
    name: str | None = None,
) -> Plan:
    labels = labels or {"background": 0, "tumor": 1}
    nd = ndim
    network = network or threshold_spec(nd, len(channels), len([v for v in labels.values()]))
    config = ConfigurationPlan(
        name=name or f"{nd}d",
        target_spacing=tuple(target_spacing or (1.0,) * nd),
        patch_size=tuple(patch_size or (16,) * nd),
        batch_size=2,
        network=network,
        mirror_axes=tuple(range(nd)) if mirror_axes is None else tuple(mirror_axes),
        fixed_shape=None if fixed_shape is None else tuple(fixed_shape),
    )
    norms = tuple(normalization or [Normalization("none")] * len(channels))
    return Plan(
        dataset_name="test",
        channel_names=dict(enumerate(channels)),
        labels=labels,
        normalization=norms,
        configurations={config.name: config},
        default_configuration=config.name,
        data_ndim=data_ndim or nd,
    )


def write_work(
    root: Path,
    plan: Plan,
    *,
    folds: Sequence[int] = (0,),
    fold_kwargs: dict[int, dict] | None = None,
    unfinished: Sequence[int] = (),
    postprocessing: PostprocessingSpec | None = None,
    seed: int = 0,
) -> Path:
    """A work folder with plan.json and finished runs whose checkpoints hold the networks' weights.

    ``fold_kwargs[k]`` overrides network kwargs for fold ``k`` (e.g. other centres); the plan keeps
    its own kwargs, so those folds' weights differ but load into the plan's network.
    """
    wd = WorkDir(root)
    plan.save(wd.plan_path)
    cfg = plan.configuration()
    for fold in folds:
        torch.manual_seed(seed + fold)
        spec = cfg.network
        if fold_kwargs and fold in fold_kwargs:
            spec = NetworkSpec(spec.name, {**spec.kwargs, **fold_kwargs[fold]})
        model = build_network(spec)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        save_checkpoint(wd.checkpoint_dir(cfg.name, fold), model, opt, TrainState(epoch=1, step=1))
        status = "running" if fold in unfinished else "finished"
        write_json_atomic(wd.run_dir(cfg.name, fold) / "run.json", {"schema_version": 1, "status": status})
    if postprocessing is not None:
        postprocessing.save(wd.postprocessing_path(cfg.name))
    return root


def sphere(shape, centre, radius, spacing=None) -> np.ndarray:
    spacing = spacing or (1.0,) * len(shape)
    grids = np.indices(shape, dtype=np.float64)
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing, strict=True))
    return d2 <= radius**2


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
