"""Sliding-window inference with a **torch** patch predictor (a network or a wrapper of networks).

A thin adapter over voxseg's one sliding window, :func:`voxseg.inference.window.sliding_window`
(numpy; tiling rule, blending and memory are described there): :func:`torch_runner` turns a torch
predictor into a patch runner (tiles sent to ``device``, run under ``torch.inference_mode``, results
back as float32 numpy), and :func:`sliding_window` accepts numpy arrays or torch tensors and returns
the same kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch

from voxseg.errors import ConfigError, InputImageError
from voxseg.inference import window
from voxseg.inference.tiling import tile_grid, tile_starts

__all__ = ["sliding_window", "tile_starts", "tile_grid", "importance_map", "PatchPredictor", "torch_runner"]

#: A predictor maps a batch ``(B, C, *patch)`` to ``(B, K, *patch)`` (logits or probabilities).
PatchPredictor = Callable[[torch.Tensor], torch.Tensor]

_TORCH_DTYPES = {torch.float32: np.float32, torch.float16: np.float16}


def importance_map(
    patch_size: Sequence[int],
    *,
    blend: Literal["gaussian", "constant"] = "gaussian",
    sigma_scale: float | Sequence[float] = 0.125,
) -> torch.Tensor:
    """:func:`voxseg.inference.window.importance_weights` as a torch tensor (a copy)."""
    return torch.from_numpy(window.importance_weights(patch_size, blend=blend, sigma_scale=sigma_scale).copy())


def torch_runner(predictor: PatchPredictor, device: str | torch.device | None = None) -> window.PatchRunner:
    """A patch runner for the window: numpy tiles → ``predictor`` on ``device`` → float32 numpy."""
    target = None if device is None else torch.device(device)

    def run(tiles: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(tiles)
            pred = predictor(x if target is None else x.to(target))
            if not isinstance(pred, torch.Tensor):
                pred = torch.as_tensor(pred)
            return pred.detach().to(device="cpu", dtype=torch.float32).numpy()

    return run


def sliding_window(
    image: np.ndarray | torch.Tensor,
    predictor: PatchPredictor,
    patch_size: Sequence[int],
    *,
    overlap: float = 0.5,
    blend: Literal["gaussian", "constant"] = "gaussian",
    batch_size: int = 1,
    sigma_scale: float | Sequence[float] = 0.125,
    num_classes: int | None = None,
    device: str | torch.device | None = None,
    out_dtype: Any = np.float32,
    pad_value: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray | torch.Tensor:
    """Predict a whole image tile by tile with a torch predictor and blend the tiles' outputs.

    ``image`` is ``(C, *spatial)`` (numpy or torch, any real dtype; no batch axis); ``predictor`` is
    called on float32 batches ``(B, C, *patch_size)`` on ``device`` (default: where the image is) and
    returns ``(B, K, *patch_size)``. Blending happens on the CPU. Other parameters as for
    :func:`voxseg.inference.window.sliding_window`. Returns ``(K, *spatial)`` of the image's kind
    (numpy, or a torch tensor on the image's device).
    """
    if not isinstance(image, (np.ndarray, torch.Tensor)):
        raise InputImageError(None, f"sliding_window needs a numpy array or torch tensor, got {type(image).__name__}")
    if isinstance(out_dtype, torch.dtype):
        if out_dtype not in _TORCH_DTYPES:
            raise ConfigError(f"out_dtype must be float32 or float16, got {out_dtype!r}")
        out_dtype = _TORCH_DTYPES[out_dtype]
    if isinstance(image, torch.Tensor):
        if image.is_complex():
            raise InputImageError(None, f"complex image ({image.dtype}) cannot be predicted", "pass its magnitude")
        where = image.device
        device = where if device is None else device
        array = image.detach().cpu().numpy()
    else:
        where, array = None, image
    out = window.sliding_window(
        array,
        torch_runner(predictor, device),
        patch_size,
        overlap=overlap,
        blend=blend,
        batch_size=batch_size,
        sigma_scale=sigma_scale,
        num_classes=num_classes,
        out_dtype=out_dtype,
        pad_value=pad_value,
        progress=progress,
    )
    return out if where is None else torch.from_numpy(out).to(where)
