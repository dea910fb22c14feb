import numpy as np
import pytest
import torch

from voxseg.errors import VoxsegError
from voxseg.training.checkpoint import TrainState, has_checkpoint, load_checkpoint, save_checkpoint


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 2, 1))


def _train(model, opt, rng, steps):
    for _ in range(steps):
        x = torch.from_numpy(rng.normal(size=(2, 1, 6, 6, 6)).astype(np.float32)) + torch.randn(2, 1, 6, 6, 6)
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
def test_resume_equals_uninterrupted(tmp_path, opt_name):
    def make():
        m = _model()
        if opt_name == "sgd":
            o = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.99, nesterov=True)
        else:
            o = torch.optim.AdamW(m.parameters(), lr=1e-3)
        return m, o

    torch.manual_seed(1)
    m1, o1 = make()
    rng1 = np.random.default_rng(5)
    torch.manual_seed(1)
    _train(m1, o1, rng1, 6)

    torch.manual_seed(1)
    m2, o2 = make()
    rng2 = np.random.default_rng(5)
    torch.manual_seed(1)
    _train(m2, o2, rng2, 3)
    save_checkpoint(tmp_path / "ck", m2, o2, TrainState(epoch=1, step=3, history=[{"loss": 1.0}]), np_rng=rng2)
    _train(m2, o2, rng2, 2)  # work after the checkpoint is lost ("interrupted")

    m3, o3 = make()
    rng3 = np.random.default_rng(999)
    state = load_checkpoint(tmp_path / "ck", m3, o3, np_rng=rng3)
    assert state.epoch == 1 and state.step == 3 and state.history == [{"loss": 1.0}]
    _train(m3, o3, rng3, 3)
    for a, b in zip(m1.state_dict().values(), m3.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_incomplete_or_corrupt_checkpoint_is_refused(tmp_path):
    m = _model()
    o = torch.optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(VoxsegError, match="no complete checkpoint"):
        load_checkpoint(tmp_path / "none", m, o)
    folder = save_checkpoint(tmp_path / "ck", m, o, TrainState())
    assert has_checkpoint(folder)
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(VoxsegError, match="checksum mismatch"):
        load_checkpoint(folder, m, o)
    assert not any(p.suffix == ".pkl" or p.name.endswith(".pt") for p in folder.iterdir())


def test_an_interrupted_replacement_keeps_the_last_good_checkpoint(tmp_path):
    """The states a kill inside save_checkpoint can leave (see its module docstring), made by hand."""
    import shutil

    from voxseg.training.checkpoint import latest_checkpoint, recover_checkpoint

    m = _model()
    o = torch.optim.SGD(m.parameters(), lr=0.1)
    ck = tmp_path / "checkpoint"
    save_checkpoint(ck, m, o, TrainState(epoch=1))
    # killed while writing epoch 2: a partial new folder beside the complete old one
    partial = tmp_path / "checkpoint.tmp-4242"
    shutil.copytree(ck, partial)
    (partial / "state.json").unlink()
    assert latest_checkpoint(ck) == ck and load_checkpoint(ck, m, o).epoch == 1
    # killed between the two renames: no checkpoint/, the old and the new one complete beside it
    save_checkpoint(tmp_path / "new", m, o, TrainState(epoch=2))
    shutil.rmtree(partial)
    ck.rename(tmp_path / "checkpoint.old-4242")
    (tmp_path / "new").rename(partial)
    assert has_checkpoint(ck) and load_checkpoint(ck, m, o).epoch == 2  # the newest complete one
    assert recover_checkpoint(ck) and load_checkpoint(ck, m, o).epoch == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # leftovers cleaned
    save_checkpoint(ck, m, o, TrainState(epoch=3))
    assert load_checkpoint(ck, m, o).epoch == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
