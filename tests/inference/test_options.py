"""PredictOptions: one frozen value for how to predict, with the --fast preset every front end shares."""

from __future__ import annotations

import dataclasses

import pytest

from voxseg.errors import ConfigError
from voxseg.inference.options import FAST_OVERLAP, PredictOptions


def test_defaults_and_fast_preset():
    assert PredictOptions().chosen_folds((0, 1, 2)) == (0, 1, 2)
    fast = PredictOptions.fast()
    assert (fast.tta, fast.overlap, fast.max_folds) == (False, FAST_OVERLAP, 1)
    assert fast.chosen_folds((0, 1, 2)) == (0,)
    # explicit choices win over the preset; given folds are used as given
    assert PredictOptions.fast(tta=True).tta is True
    assert PredictOptions.fast(folds=[1, 2]).chosen_folds((0, 1, 2)) == (1, 2)
    assert PredictOptions.fast(overlap=None).overlap == FAST_OVERLAP  # "not given" keeps the preset


def test_frozen_and_validated():
    opts = PredictOptions(folds=[0, 1])
    assert opts.folds == (0, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.tta = False  # type: ignore[misc]
    with pytest.raises(ConfigError, match="overlap must be in"):
        PredictOptions(overlap=1.0)
    with pytest.raises(ConfigError, match="unknown precision"):
        PredictOptions(precision="fp8")
    with pytest.raises(ConfigError, match="backend 'tensorrt'"):
        PredictOptions(backend="tensorrt")
    with pytest.raises(ConfigError, match=r"unknown prediction option\(s\) ttta"):
        opts.replace(ttta=False)


def test_kwargs_for_each_backend():
    opts = PredictOptions(tta=False, overlap=0.3, precision="fp32", num_threads=2)
    assert opts.predictor_kwargs()["precision"] == "fp32"
    onnx = opts.onnx_kwargs()
    assert onnx["overlap"] == 0.3 and onnx["backend"] == "onnxruntime" and onnx["precision"] == "fp32"
    bf16 = PredictOptions(precision="bf16", backend="onnxruntime").onnx_kwargs()
    assert bf16["precision"] == "fp32"  # onnxruntime computes fp32
    int8 = PredictOptions(precision="int8", backend="openvino").onnx_kwargs()
    assert int8["backend"] == "openvino" and int8["precision"] == "int8"
    with pytest.raises(ConfigError, match="int8 needs the openvino backend"):
        PredictOptions(precision="int8")
