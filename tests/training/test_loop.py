import json

import numpy as np
import pytest
import torch
from monai.networks.nets import UNet

from voxseg.errors import ConfigError
from voxseg.io import Volume
from voxseg.planning import Normalization
from voxseg.preprocessing import preprocess_case
from voxseg.preprocessing.store import write_preprocessed
from voxseg.training.config import TrainConfig
from voxseg.training.loop import train


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    rng = np.random.default_rng(0)
    prefixes = []
    for i in range(3):
        lab = np.zeros((16, 24, 24), np.uint8)
        c = rng.integers(6, 14, 3)
        lab[c[0] - 3 : c[0] + 3, c[1] - 4 : c[1] + 4, c[2] - 4 : c[2] + 4] = 1
        img = Volume(rng.normal(0, 1, lab.shape).astype(np.float32) + 2 * lab + 5, (1, 1, 1))
        case = preprocess_case(
            [img], Volume(lab, (1, 1, 1)), target_spacing=(1, 1, 1), normalization=[Normalization("zscore")]
        )
        write_preprocessed(root / f"c{i}", case)
        prefixes.append(str(root / f"c{i}"))
    return prefixes


def _net():
    torch.manual_seed(0)
    return UNet(3, 1, 2, channels=(4, 8), strides=(2,), num_res_units=0)


CFG = TrainConfig(epochs=2, iterations_per_epoch=3, batch_size=2, augmentation="light", seed=3)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_train_writes_run_and_resume_is_exact(tmp_path, cases):
    full = _net()
    state = train(tmp_path / "full", full, cases, patch_size=(16, 16, 16), config=CFG, meta={"fold": 0})
    assert state.epoch == 2 and state.step == 6 and len(state.history) == 2
    run = json.loads((tmp_path / "full" / "run.json").read_text())
    assert run["status"] == "finished" and run["fold"] == 0 and run["config"]["seed"] == 3
    assert (tmp_path / "full" / "progress.png").is_file()
    assert (tmp_path / "full" / "checkpoint" / "model.safetensors").is_file()

    def interrupt(info):
        if info.epoch == 1 and info.iteration == 2:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the second epoch

    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "part", _net(), cases, patch_size=(16, 16, 16), config=CFG, progress=interrupt)
    assert json.loads((tmp_path / "part" / "run.json").read_text())["epoch"] == 1
    resumed = _net()  # a fresh process would rebuild the network like this
    train(tmp_path / "part", resumed, cases, patch_size=(16, 16, 16), config=CFG, resume=True)
    for k, v in _weights(full).items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0)


def test_refuses_to_overwrite_or_resume_with_other_settings(tmp_path, cases):
    train(tmp_path / "r", _net(), cases, patch_size=(16, 16, 16), config=CFG.with_overrides(epochs=1))
    with pytest.raises(ConfigError, match="--resume"):
        train(tmp_path / "r", _net(), cases, patch_size=(16, 16, 16), config=CFG)
    with pytest.raises(ConfigError, match="lr"):
        train(tmp_path / "r", _net(), cases, patch_size=(16, 16, 16), config=CFG.with_overrides(lr=0.5), resume=True)


def test_loss_decreases_on_an_easy_task(tmp_path, cases):
    cfg = TrainConfig(
        epochs=4, iterations_per_epoch=6, batch_size=2, augmentation="none", optimizer="adamw", lr=3e-3, seed=0
    )
    state = train(tmp_path / "easy", _net(), cases, patch_size=(16, 16, 16), config=cfg)
    losses = [h["loss"] for h in state.history]
    assert losses[-1] < losses[0]


@pytest.mark.slow
def test_workers_give_the_same_batches(tmp_path, cases):
    a, b = _net(), _net()
    train(tmp_path / "w0", a, cases, patch_size=(16, 16, 16), config=CFG.with_overrides(epochs=1))
    train(tmp_path / "w2", b, cases, patch_size=(16, 16, 16), config=CFG.with_overrides(epochs=1, num_workers=2))
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v, rtol=0, atol=0)
