"""Writing ``model_fold_K.onnx`` for a bundle (needs torch and the ``[onnx]`` extra at export time
only; running the ONNX models does not need torch, see :mod:`voxseg.bundle.onnx_backend`)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from voxseg.bundle.manifest import BundleManifest
from voxseg.errors import BundleError

__all__ = ["onnx_bytes", "ONNX_OPSET", "INPUT_NAME", "OUTPUT_NAME"]

ONNX_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def onnx_bytes(manifest: BundleManifest, weights: Path | bytes) -> bytes:
    """The network of ``manifest`` with the safetensors ``weights``, as an ONNX model.

    Input ``image`` ``(B, C, *patch_size)`` float32 (the tiles of the sliding window, which also
    tiles a fixed input shape) (the batch axis is dynamic), output
    ``logits`` ``(B, K, *patch_size)``. Uses the TorchScript-based exporter (``dynamo=False``),
    which keeps the weights inside the one ``.onnx`` file.
    """
    try:
        import torch
        from safetensors.torch import load, load_file
    except ImportError as exc:  # pragma: no cover - torch is a core dependency
        raise BundleError(f"ONNX export needs torch ({exc})") from None
    from voxseg.nets import build_network

    cfg = manifest.config
    net = build_network(cfg.network)
    net.load_state_dict(load(weights) if isinstance(weights, bytes) else load_file(str(weights)), strict=True)
    net.eval()
    shape = tuple(cfg.patch_size)  # the sliding window's tiles, also inside a fixed input shape
    dummy = torch.zeros((1, cfg.network.in_channels, *shape), dtype=torch.float32)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # instance_norm "train=True" is right: it uses the input's statistics
        try:
            torch.onnx.export(
                net,
                (dummy,),
                buf,
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
        except Exception as exc:  # the exporter raises many types
            raise BundleError(
                f"ONNX export of network {cfg.network.name!r} failed ({' '.join(str(exc).split())[:200]})"
            ) from None
    return buf.getvalue()
