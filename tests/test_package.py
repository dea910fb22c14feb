"""The package surface: lazy public API, registry behaviour, settings resolution."""

import subprocess
import sys

import pytest

import voxseg
from voxseg.errors import InputImageError, UnknownNameError, VoxsegError
from voxseg.registry import Registry
from voxseg.settings import resolve_paths


def test_import_is_light_and_lazy():
    code = (
        "import sys, voxseg; assert 'torch' not in sys.modules; assert 'voxseg.io' not in sys.modules;"
        "voxseg.read_image; voxseg.verify_dataset; voxseg.make_phantom; assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_public_names_resolve():
    for name in voxseg.__all__:
        assert getattr(voxseg, name) is not None
    with pytest.raises(AttributeError):
        voxseg.no_such_thing  # noqa: B018


def test_registry_did_you_mean():
    reg: Registry[int] = Registry("network")
    reg.register("attention_unet", 1)
    reg.register("unet")(2)
    assert reg.get("unet") == 2 and reg.names() == ["attention_unet", "unet"] and "unet" in reg
    with pytest.raises(UnknownNameError, match="did you mean attention_unet") as err:
        reg.get("atention_unet")
    assert isinstance(err.value, VoxsegError)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("unet", 3)


def test_input_image_error_is_one_line():
    err = InputImageError("/data/ct.nii.gz", "truncated NIfTI", "download it again")
    assert str(err) == "/data/ct.nii.gz: truncated NIfTI (download it again)"


def test_paths_flag_over_env_over_default(monkeypatch, tmp_path):
    monkeypatch.delenv("VOXSEG_CACHE", raising=False)
    assert resolve_paths().sources["cache"] == "default"
    monkeypatch.setenv("VOXSEG_CACHE", str(tmp_path / "env"))
    p = resolve_paths()
    assert p.cache == tmp_path / "env" and p.sources["cache"] == "$VOXSEG_CACHE"
    p = resolve_paths(cache=tmp_path / "flag")
    assert p.cache == tmp_path / "flag" and p.sources["cache"] == "flag"
