"""voxseg's one sliding window (numpy, no torch): every backend goes through it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from voxseg.errors import ConfigError
from voxseg.inference.window import importance_weights, sliding_window


def test_window_is_exact_for_voxelwise_functions_and_batches():
    rng = np.random.default_rng(0)
    for shape, patch in [((2, 21, 30, 9), (8, 16, 16)), ((1, 5, 70), (16, 32))]:
        image = rng.normal(0, 1, shape).astype(np.float32)
        calls = []

        def run(x, calls=calls):
            calls.append(x.shape[0])
            assert x.dtype == np.float32
            return np.concatenate([x[:, :1] * 2, -x[:, :1]], axis=1)

        out = sliding_window(image, run, patch, overlap=0.5, batch_size=3)
        assert out.shape == (2, *shape[1:]) and out.dtype == np.float32 and max(calls) <= 3
        np.testing.assert_allclose(out[0], 2 * image[0], atol=1e-5)
        np.testing.assert_allclose(out[1], -image[0], atol=1e-5)


def test_torch_adapter_gives_the_numpy_window_result():
    torch = pytest.importorskip("torch")
    from voxseg.inference.sliding_window import importance_map
    from voxseg.inference.sliding_window import sliding_window as torch_window

    rng = np.random.default_rng(1)
    image = rng.normal(0, 1, (1, 20, 24, 18)).astype(np.float32)
    conv = torch.nn.Conv3d(1, 3, 3, padding=1).eval()
    ours = sliding_window(image, lambda x: conv(torch.from_numpy(x)).detach().numpy(), (16, 16, 16), overlap=0.5)
    adapted = torch_window(image, conv, (16, 16, 16), overlap=0.5)
    as_tensor = torch_window(torch.from_numpy(image), conv, (16, 16, 16), overlap=0.5)
    np.testing.assert_array_equal(ours, adapted)
    assert torch.is_tensor(as_tensor) and np.array_equal(as_tensor.numpy(), ours)
    np.testing.assert_array_equal(importance_map((8, 12)).numpy(), importance_weights((8, 12)))


def test_foreign_grid_and_weights_are_used_as_given():
    image = np.arange(2 * 10 * 10, dtype=np.float32).reshape(2, 10, 10)
    seen = []

    def run(x):
        seen.append(x[0, 0, 0, 0])
        return x[:, :1] * 0 + 1

    w = np.full((6, 6), 3, dtype=np.float16)
    out = sliding_window(image, run, (6, 6), grid=[[0, 4], [-1, 5]], weights=w, out_dtype=np.float16)
    assert out.dtype == np.float16 and np.all(out == 1)
    assert seen == [0, 5, 0, 45]  # tiles at x = -1 start with a padding column; (0, 5) and (4, 5) read the image
    with pytest.raises(ConfigError, match="do not match the patch"):
        sliding_window(image, run, (6, 6), weights=np.ones((5, 6), np.float32))


def test_bad_runner_output_is_named():
    image = np.zeros((1, 8, 8), np.float32)
    with pytest.raises(ConfigError, match=r"returned shape \(1, 2, 4, 4\)"):
        sliding_window(image, lambda x: np.zeros((1, 2, 4, 4)), (8, 8))


def test_window_imports_no_torch():
    code = "import sys, voxseg.inference.window, voxseg.inference.tiling; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
