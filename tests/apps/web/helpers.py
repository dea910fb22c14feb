"""A tiny real model for the web app tests: a hand-made 2D plan, pet-mip phantoms, a few training steps.

Everything is real: phantoms from ``voxseg.dataset.phantoms``, ``preprocess_case`` and the case
store, a MONAI U-Net from the network registry, ``voxseg.training.loop.train`` writing a finished
run with its safetensors checkpoint into the work folder layout that ``Predictor.from_work`` reads,
and a postprocessing spec where ``voxseg crossval`` puts it.
About 5-10 s on 2 CPU cores.
"""

from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from voxseg.dataset.phantoms import generate_case
from voxseg.io import Volume
from voxseg.nets import NetworkSpec, build_network
from voxseg.planning import ConfigurationPlan, Normalization, Plan
from voxseg.postprocessing import PostprocessingSpec, Step
from voxseg.preprocessing import preprocess_case
from voxseg.preprocessing.store import write_preprocessed
from voxseg.training.config import TrainConfig
from voxseg.training.loop import train
from voxseg.workdir.layout import WorkDir

PET_SIZE = (128, 64)
PET_SPACING = (4.0, 4.0)


def pet_case(index: int) -> tuple[Volume, Volume]:
    """Case ``index`` of the 2D pet-mip phantom at the tests' size: (image, label)."""
    case = generate_case("pet-mip", index, size=PET_SIZE)
    return case.images[0], case.label


def make_work_2d(root: Path, *, cases: int = 3, iterations: int = 24) -> Path:
    """Plan, preprocess and train (one short epoch) a 2D U-Net on pet-mip phantoms in ``root``."""
    network = NetworkSpec(
        "unet",
        {
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": 2,
            "channels": [8, 16, 32],
            "strides": [2, 2],
            "num_res_units": 1,
        },
    )
    config = ConfigurationPlan(
        name="2d",
        target_spacing=PET_SPACING,
        patch_size=(64, 64),
        batch_size=4,
        network=network,
        mirror_axes=(1,),
    )
    plan = Plan(
        dataset_name="pet-mip-web-test",
        channel_names={0: "PET"},
        labels={"background": 0, "tumor": 1},
        normalization=(Normalization("zscore"),),
        configurations={"2d": config},
        default_configuration="2d",
        data_ndim=2,
    )
    wd = WorkDir(root)
    plan.save(wd.plan_path)
    prefixes = []
    for i in range(cases):
        image, label = pet_case(i)
        case = preprocess_case([image], label, target_spacing=config.target_spacing, normalization=plan.normalization)
        prefix = wd.preprocessed_dir("2d") / f"pet_{i:03d}"
        write_preprocessed(prefix, case)
        prefixes.append(str(prefix))
    torch.manual_seed(0)
    model = build_network(network)
    cfg = TrainConfig(
        epochs=1,
        iterations_per_epoch=iterations,
        batch_size=4,
        optimizer="adamw",
        lr=3e-3,
        augmentation="none",
        oversample_foreground=0.66,
    )
    train(wd.run_dir("2d", 0), model, prefixes, patch_size=config.patch_size, config=cfg)
    # as `voxseg crossval` would choose for a noisy model: drop specks under 12 pixels
    PostprocessingSpec(classes={1: [Step.of("remove_small", min_size=12)]}).save(wd.postprocessing_path("2d"))
    return root


def as_uint8(image: Volume) -> Volume:
    """The image scaled to 0..255 uint8 (for PNG uploads)."""
    arr = np.asarray(image.array, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    return image.with_array(np.round((arr - lo) / max(hi - lo, 1e-9) * 255).astype(np.uint8))


@contextmanager
def running_server(model: str, env: dict[str, str]):
    """``voxseg web`` for ``model`` on a free port of 127.0.0.1 (yields its URL; stopped afterwards)."""
    from voxseg.apps.web.logic import WebConfig
    from voxseg.apps.web.server import start_server, url_for, wait_ready

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = start_server(WebConfig(model=model), port=port, env=env, quiet=True)
    url = url_for("127.0.0.1", port)
    try:
        wait_ready(proc, url, timeout=90)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
