"""Bad nnU-Net model folders: one-line errors naming what is missing or refused."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("dynamic_network_architectures")

from tests.nnunet.synthetic import architecture, make_model_folder
from voxseg.cli.main import main
from voxseg.errors import BundleError, ConfigError
from voxseg.nnunet import import_nnunet, load_checkpoint, read_postprocessing_pkl


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("nn"), patch_size=(8, 16, 16), folds=(0, 1))


def _copy(folder: Path, tmp_path: Path) -> Path:
    dest = tmp_path / folder.name
    shutil.copytree(folder, dest)
    return dest


def test_missing_plans_json(folder, tmp_path):
    bad = _copy(folder, tmp_path)
    (bad / "plans.json").unlink()
    with pytest.raises(BundleError) as exc:
        import_nnunet(bad, tmp_path / "x.zip")
    assert "plans.json: missing" in _one_line(exc)


def test_missing_fold(folder, tmp_path):
    with pytest.raises(BundleError) as exc:
        import_nnunet(folder, tmp_path / "x.zip", folds=[0, 4])
    assert "fold_4/checkpoint_final.pth: missing" in _one_line(exc) and "folds present: 0, 1" in str(exc.value)


def test_unknown_trainer(tmp_path):
    bad = make_model_folder(tmp_path, patch_size=(8, 16, 16), trainer="MyFancyTrainer")
    with pytest.raises(BundleError) as exc:
        import_nnunet(bad, tmp_path / "x.zip")
    assert "unknown trainer 'MyFancyTrainer'" in _one_line(exc)


def test_unknown_architecture(folder, tmp_path):
    bad = _copy(folder, tmp_path)
    plans = json.loads((bad / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "my_nets.SwinUNETR"
    (bad / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(BundleError) as exc:
        import_nnunet(bad, tmp_path / "x.zip")
    assert "architecture class 'my_nets.SwinUNETR' is not supported" in _one_line(exc)


def test_weights_of_another_architecture(folder, tmp_path):
    bad = _copy(folder, tmp_path)
    plans = json.loads((bad / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"] = architecture(3, features=(4, 8, 32))
    (bad / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(BundleError) as exc:
        import_nnunet(bad, tmp_path / "x.zip")
    assert "do not fit the network of plans.json" in _one_line(exc)


class Payload:
    """Stands for anything a malicious checkpoint could carry."""

    def __reduce__(self):  # a harmless call standing for any code (print may be patched by other tests)
        return (os.getpid, ())


def test_checkpoint_with_unexpected_objects_refused(folder, tmp_path):
    bad = _copy(folder, tmp_path)
    path = bad / "fold_0" / "checkpoint_final.pth"
    ck = torch.load(path, weights_only=False)
    ck["logging"]["hook"] = Payload()
    torch.save(ck, path)
    with pytest.raises(BundleError) as exc:
        load_checkpoint(path)
    text = _one_line(exc)
    assert "refused: the checkpoint contains a pickled" in text and "getpid" in text
    with pytest.raises(BundleError):
        import_nnunet(bad, tmp_path / "x.zip")


def test_checkpoint_numpy_scalars_and_device_allowed(folder):
    ck = load_checkpoint(folder / "fold_0" / "checkpoint_final.pth")
    assert ck.trainer == "nnUNetTrainer" and ck.configuration == "3d_fullres" and ck.mirror_axes == (0, 1, 2)


def test_postprocessing_with_other_function_or_code_refused(tmp_path, nnunet_pp):
    functions, kwargs = nnunet_pp([1])
    path = tmp_path / "postprocessing.pkl"
    path.write_bytes(pickle.dumps(([len], kwargs)))
    with pytest.raises(BundleError) as exc:
        read_postprocessing_pkl(path)
    assert "builtins.len is not one voxseg knows" in _one_line(exc)
    path.write_bytes(pickle.dumps((functions, [{"labels_or_regions": Payload()}])))
    with pytest.raises(BundleError) as exc:
        read_postprocessing_pkl(path)
    assert "refused" in _one_line(exc)
    path.write_bytes(pickle.dumps((functions, kwargs), protocol=2))
    fns, kws = read_postprocessing_pkl(path)
    assert fns[0].name == "remove_all_but_largest_component_from_segmentation" and kws == [{"labels_or_regions": 1}]


def test_several_models_need_configuration(folder, tmp_path):
    root = tmp_path / "Dataset999_Tiny"
    _copy(folder, root)
    shutil.copytree(folder, root / folder.name.replace("3d_fullres", "3d_lowres"))
    with pytest.raises(ConfigError) as exc:
        import_nnunet(root, tmp_path / "x.zip")
    assert "choose one with --configuration" in _one_line(exc)


def test_cli_one_line_error_and_success(folder, tmp_path, capsys):
    code = main(["import-nnunet", str(folder), "-o", str(tmp_path / "m.zip"), "--folds", "7"])
    err = capsys.readouterr().err
    assert code == 1 and "fold_7/checkpoint_final.pth: missing" in " ".join(err.split())
    assert main(["import-nnunet", str(folder), "-o", str(tmp_path / "m.zip"), "--name", "tiny-ct"]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "m.zip").is_file()


def test_no_torchvision_or_timm_on_the_import_path(folder, tmp_path):
    code = (
        "import sys\n"
        "from voxseg.nnunet import import_nnunet\n"
        "from voxseg.models import load_predictor\n"
        f"p = load_predictor(import_nnunet({str(folder)!r}, {str(tmp_path / 'n.zip')!r}), folds=[0])\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('timm', 'torchvision'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
