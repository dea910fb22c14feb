"""A thresholding "model" whose answer is known, as a real work folder (plan.json + safetensors weights).

BrightNet returns two-class logits ``(0, scale * (x - level))`` from its first input channel:
voxels brighter than ``level`` are foreground. Registered in voxseg's network registry, saved
with the real checkpoint code, it runs through the real predictor, pipeline and apps. With
``interactive=True`` the plan is an extreme-point plan (image + point encoding in): BrightNet
ignores the encoding, so the prompt's crop and the mask's clip box decide which bright object
comes out. No napari or Qt import here (the napari and web tests share it).
"""

from __future__ import annotations

# ---- a real work folder whose model's answer is known ---------------------------------------
BRIGHT_NET = "vx_test_napari_bright"
SPACING = (2.0, 0.5, 0.5)
ORIGIN = (-20.0, 7.5, 3.0)
SPHERES = (((8, 20, 20), 4.0), ((14, 40, 44), 5.0), ((6, 44, 14), 3.0))  # (centre voxel, radius mm)


def _bright_net_class():
    import torch

    class BrightNet(torch.nn.Module):
        """Two-class logits ``(0, scale * (x - level))``: voxels brighter than ``level`` are foreground."""

        def __init__(self, spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 2, level: float = 0.5):
            super().__init__()
            self.level = torch.nn.Parameter(torch.tensor(float(level)))
            self.scale = torch.nn.Parameter(torch.tensor(10.0))

        def forward(self, x):
            fg = self.scale * (x[:, :1] - self.level)
            return torch.cat([torch.zeros_like(fg), fg], dim=1)

    return BrightNet


def spheres_image(shape=(20, 56, 56)):
    """Bright spheres (1.0) on a dark noisy background, with anisotropic spacing; and its true mask."""
    import numpy as np

    from voxseg.io import Volume

    grids = np.indices(shape, dtype=np.float64)
    mask = np.zeros(shape, bool)
    for centre, radius in SPHERES:
        d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, SPACING, strict=True))
        mask |= d2 <= radius**2
    rng = np.random.default_rng(0)
    image = (mask * 1.0 + rng.normal(0, 0.05, shape)).astype(np.float32)
    return Volume(image, SPACING, ORIGIN), Volume(mask.astype(np.uint8), SPACING, ORIGIN)


def write_bright_work(
    root,
    *,
    ndim: int = 3,
    level: float = 0.5,
    spacing=SPACING,
    dataset_name: str = "bright-spheres",
    labels: dict[str, int] | None = None,
    channel: str = "CT",
    interactive: bool = False,
):
    """Write a BrightNet work folder (threshold at ``level``, 16³ or 64² patches) at ``root``; return ``root``."""
    import torch

    from voxseg.io import write_json_atomic
    from voxseg.nets import NETWORKS, NetworkSpec, build_network
    from voxseg.planning import ConfigurationPlan, Normalization, Plan
    from voxseg.training.checkpoint import TrainState, save_checkpoint
    from voxseg.workdir.layout import WorkDir

    if BRIGHT_NET not in NETWORKS:
        NETWORKS.register(BRIGHT_NET, _bright_net_class())
    # interactive: image + point encoding in; BrightNet reads channel 0 only, so the prompt's crop and the
    # mask's clip box (the points' box + 3 mm) decide which bright object is segmented
    inputs = 2 if interactive else 1
    spec = NetworkSpec(BRIGHT_NET, {"spatial_dims": ndim, "in_channels": inputs, "out_channels": 2, "level": level})
    cfg = f"{ndim}d"
    config = ConfigurationPlan(
        name=cfg,
        target_spacing=tuple(spacing),
        patch_size=(16, 16, 16) if ndim == 3 else (64, 64),
        batch_size=2,
        network=spec,
        mirror_axes=tuple(range(ndim)),
    )
    plan = Plan(
        dataset_name=dataset_name,
        channel_names={0: channel},
        labels=labels or {"background": 0, "nodule": 1},
        normalization=(Normalization("none"),),
        configurations={cfg: config},
        default_configuration=cfg,
        data_ndim=ndim,
        interactive={"prompt": "extreme_points", "encoding": "gaussian"} if interactive else None,
    )
    wd = WorkDir(root)
    plan.save(wd.plan_path)
    model = build_network(spec)
    save_checkpoint(wd.checkpoint_dir(cfg, 0), model, torch.optim.SGD(model.parameters(), lr=0.1), TrainState(1, 1))
    write_json_atomic(wd.run_dir(cfg, 0) / "run.json", {"schema_version": 1, "status": "finished"})
    return root
