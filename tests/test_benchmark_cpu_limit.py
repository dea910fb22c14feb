"""benchmarks/cpu_limit.py (FLOPs counted from the convolutions, the quick run's tables) and
benchmarks/cpu_less_arithmetic.py (variants compared with the reference on a built-in's golden case)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("dynamic_network_architectures")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import cpu_limit  # noqa: E402


def test_conv_flops_are_counted_from_the_layers():
    net = torch.nn.Sequential(
        torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.ConvTranspose3d(4, 3, 2, stride=2), torch.nn.Conv3d(3, 3, 1)
    )
    x = np.zeros((1, 2, 4, 4, 4), np.float32)
    conv = 4 * 64 * 2 * 27  # output voxels x output channels x (input channels x kernel)
    transposed = 4 * 64 * 3 * 8  # each input value scatters to 3 channels x 2³ taps
    pointwise = 3 * 512 * 3
    assert cpu_limit.conv_gflop(net, x) == pytest.approx(2 * (conv + transposed + pointwise) / 1e9)


@pytest.mark.slow
def test_quick_run_measures_the_limit_and_every_engine(capsys):
    result = cpu_limit.main(["--quick", "--repeats", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert "flags avx2" in out and "GFLOP per tile" in out
    assert result["limit_gflops"]["fp32"] > 0
    engines = {(r["engine"], r["precision"]) for r in result["network"]["rows"]}
    assert ("torch eager", "fp32") in engines
    limits = result["limit_gflops"]
    assert all(r["fraction_of_limit"] > 0 for r in result["network"]["rows"] if r["precision"] in limits)


@pytest.mark.slow
def test_less_arithmetic_rows_compare_every_variant_with_the_reference():
    pytest.importorskip("openvino")
    import cpu_less_arithmetic

    rows = cpu_less_arithmetic.measure_bundle("pet-mip-tumors-v1.zip", "pet-mip", 0, 1)
    assert [r["variant"] for r in rows] == list(cpu_less_arithmetic.VARIANTS)
    by = {r["variant"]: r for r in rows}
    assert by["reference"]["labels_per_million"] == 0 and by["reference"]["calls"] == 1
    assert by["ov-fp32"]["labels_per_million"] <= 200 and 0 <= by["skip"]["calls"] <= 1
