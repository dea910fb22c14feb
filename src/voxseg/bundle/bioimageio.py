"""A voxseg bundle as a bioimage.io model package (``bioimageio.yaml`` + ONNX weights + test
tensors + cover image + documentation), for deepImageJ/Fiji, ilastik, QuPath and bioimageio.core.

What the format expresses is written as its operations: per-channel normalization when every
channel uses the same scheme (``zscore`` -> ``zero_mean_unit_variance``; ``ct`` -> ``clip`` +
``fixed_zero_mean_unit_variance``; ``percentile_minmax`` without a mask channel -> ``scale_range``
+ ``clip``; ``mask`` -> ``binarize``), then ``softmax`` / ``sigmoid`` on the output (and
``binarize`` at 0.5 for a one-channel sigmoid model). What it cannot express -- resampling to the
target spacing, the sliding window with Gaussian blending, mirror TTA, the fold ensemble (the
package holds the first fold), the fixed input shape, masked normalization statistics and the
postprocessing (connected components, instances) -- is said in the package's ``README.md``, with
how to run the network. When the normalization cannot be expressed, the package's test input is
given already normalized and the README says so.

The ONNX network comes from the bundle (``model_fold_K.onnx``) or is exported (needs torch).
"""

from __future__ import annotations

import io
import json
import logging
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.bundle._util import sha256_bytes
from voxseg.bundle.load import Bundle, open_bundle
from voxseg.errors import BundleError
from voxseg.inference.tiling import fit_shape
from voxseg.io import atomic_path

__all__ = ["export_bioimageio", "bioimageio_preprocessing"]

log = logging.getLogger(__name__)

INPUT_ID = "image"
OUTPUT_ID = "probabilities"
_AXES3 = ("z", "y", "x")


def _space_axes(nd: int) -> tuple[str, ...]:
    return _AXES3[-nd:]


def bioimageio_preprocessing(normalization, axes: tuple[str, ...]) -> list[dict[str, Any]] | None:
    """The bioimage.io preprocessing steps equal to voxseg's ``normalization`` (one per channel),
    or None when the format cannot express it (mixed schemes, masked statistics)."""
    schemes = {n.scheme for n in normalization}
    if len(schemes) != 1:
        return None
    (scheme,) = schemes
    steps: list[dict[str, Any]] = [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}]
    if scheme == "none":
        return steps
    if scheme == "zscore":
        if any(n.use_nonzero_mask for n in normalization):
            return None
        return [*steps, {"id": "zero_mean_unit_variance", "kwargs": {"axes": list(axes), "eps": 1e-6}}]
    if scheme == "mask":
        return [*steps, {"id": "binarize", "kwargs": {"threshold": 0.0}}]
    if scheme == "ct":
        lows, highs = {n.clip_low for n in normalization}, {n.clip_high for n in normalization}
        if len(lows) != 1 or len(highs) != 1:
            return None
        fixed: dict[str, Any]
        if len(normalization) == 1:
            fixed = {"mean": float(normalization[0].mean), "std": float(normalization[0].std)}
        else:
            fixed = {"axis": "channel", "mean": [n.mean for n in normalization], "std": [n.std for n in normalization]}
        return [
            *steps,
            {"id": "clip", "kwargs": {"min": float(lows.pop()), "max": float(highs.pop())}},
            {"id": "fixed_zero_mean_unit_variance", "kwargs": fixed},
        ]
    if scheme == "percentile_minmax":
        if any(n.mask_channel is not None for n in normalization) or len({n.percentile for n in normalization}) != 1:
            return None
        pct = float(normalization[0].percentile)
        return [
            *steps,
            {"id": "scale_range", "kwargs": {"axes": list(axes), "min_percentile": 0.0, "max_percentile": pct}},
            {"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}},
        ]
    return None


def _network_input(bundle: Bundle) -> np.ndarray:
    """One network patch ``(1, C, *patch)`` of raw intensities: the golden input, centre-cropped or
    zero-padded to the patch (no resampling), or a smooth synthetic image without a golden test."""
    m = bundle.manifest
    cfg = m.config
    nd = len(cfg.patch_size)
    if m.golden is not None:
        from voxseg.bundle.golden import read_golden

        _, images, _ = read_golden(bundle)
        data = np.stack([np.asarray(v.array, dtype=np.float32) for v in images])
        if data.ndim - 1 > nd:  # 2D configuration of 3D data: the middle slice
            data = data[:, data.shape[1] // 2]
    else:
        rng = np.random.default_rng(0)
        data = rng.normal(0, 1, (m.plan.num_channels, *cfg.patch_size)).astype(np.float32)
    return fit_shape(data, cfg.patch_size)[None]


def _expected(bundle: Bundle, onnx: bytes, x: np.ndarray, pre: list | None) -> tuple[np.ndarray, np.ndarray]:
    """(network input as given to the package, expected output) with voxseg's own normalization."""
    import onnxruntime as ort

    from voxseg.preprocessing.intensity import normalize

    m = bundle.manifest
    normalized = normalize(x[0], m.plan.normalization)[None]
    given = x if pre is not None else normalized
    sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: normalized.astype(np.float32)})[0]
    if logits.shape[1] == 1:
        out = 1.0 / (1.0 + np.exp(-logits))
        out = (out > 0.5).astype(np.float32)
    else:
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        out = e / e.sum(axis=1, keepdims=True)
    return given.astype(np.float32), out.astype(np.float32)


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _cover(x: np.ndarray, y: np.ndarray) -> bytes:
    """A PNG: the middle slice of the first input channel beside the last output channel."""
    from PIL import Image

    def grey(a: np.ndarray) -> np.ndarray:
        a = a[a.shape[0] // 2] if a.ndim == 3 else a
        lo, hi = np.percentile(a, [1, 99]) if np.ptp(a) > 0 else (0.0, 1.0)
        return (np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)

    left, right = grey(x[0, 0]), (np.clip(y[0, -1], 0, 1) * 255).astype(np.uint8)
    right = right[right.shape[0] // 2] if right.ndim == 3 else right
    img = Image.fromarray(np.concatenate([left, right], axis=1)).convert("RGB")
    scale = max(1, math.ceil(256 / img.height))
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _readme(bundle: Bundle, pre: list | None, fold: int) -> str:
    m = bundle.manifest
    cfg = m.config
    labels = ", ".join(f"{k} = {v}" for k, v in m.plan.labels.items())
    norm = ", ".join(
        f"{m.plan.channel_names[i]}: {n.scheme}"
        for i, n in zip(sorted(m.plan.channel_names), m.plan.normalization, strict=True)
    )
    lines = [
        f"# {m.name} {m.version} (voxseg model, bioimage.io package)",
        "",
        m.description or "A voxseg segmentation model.",
        "",
        f"Licence: {m.license or 'not stated'}. Intended use: {m.intended_use or 'not stated'}.",
        "",
        "## What this package runs",
        "",
        f"The network of fold {fold} (ONNX, opset 17) on one {'x'.join(map(str, cfg.patch_size))} patch "
        f"({len(cfg.patch_size)}D; tools that tile larger images feed it patch by patch), "
        f"input channels {norm}; output: class probabilities ({labels})"
        + (" binarized at 0.5." if cfg.network.out_channels == 1 else " after a softmax over the channels."),
        "",
        "Normalization: "
        + (
            "expressed as the package's preprocessing steps."
            if pre is not None
            else "**not expressible in this format** (mixed schemes or statistics inside a mask): give the "
            "network input already normalized as voxseg does (`voxseg.preprocessing.normalize`); the test "
            "input of this package is given normalized."
        ),
        "",
        *_not_expressed(m, fold),
    ]
    lines += [
        "",
        "For voxseg's exact pipeline use the voxseg bundle: `voxseg predict -m BUNDLE.zip` (torch) or "
        "`--backend onnxruntime` (no torch).",
        "",
        "## Validation",
        "",
        "`test_output.npy` was computed from `test_input.npy` by voxseg's own normalization, this ONNX "
        "network (onnxruntime) and the output activation; `bioimageio.core`'s model test reproduces it with "
        "the preprocessing and postprocessing declared here."
        + (
            f" The voxseg bundle's golden test ({m.golden.get('source', '')}) checks the full pipeline: "
            f"`voxseg bundle test {m.name}`."
            if m.golden is not None
            else ""
        ),
        "",
    ]
    return "\n".join(lines)


def _not_expressed(m, fold: int) -> list[str]:
    """The README section on what voxseg does and the bioimage.io format cannot say."""
    cfg = m.config
    lines = [
        "## What the format cannot express (voxseg does it; this package does not)",
        "",
        f"- **Resampling**: voxseg resamples the image to {list(cfg.target_spacing)} mm first; give this "
        "network images at that spacing.",
        f"- **Sliding window**: voxseg tiles the image in {list(cfg.patch_size)} patches with 50% overlap and "
        "Gaussian blending; tools that tile (deepImageJ, bioimageio.core's blockwise prediction) approximate it.",
        f"- **Test-time augmentation** (mirroring over axes {list(cfg.mirror_axes)}) and the **fold "
        f"ensemble** (folds {list(m.folds)} averaged): this package holds fold {fold} only, without TTA.",
    ]
    if cfg.fixed_shape:
        lines.append(f"- **Fixed input shape** {list(cfg.fixed_shape)}: voxseg centre-crops or zero-pads to it.")
    if not m.postprocessing.is_identity:
        lines.append(
            f"- **Postprocessing** `{json.dumps(m.postprocessing.to_json())}` (connected components, "
            "small-object removal, instances): not applied here."
        )
    return lines


def _rdf(bundle: Bundle, pre: list | None, files: dict[str, bytes], out_channels: int) -> dict[str, Any]:
    from bioimageio.spec.model.v0_5 import ModelDescr

    m = bundle.manifest
    cfg = m.config
    nd = len(cfg.patch_size)
    axes = _space_axes(nd)
    channel_names = [m.plan.channel_names[i] for i in sorted(m.plan.channel_names)]
    space_in = [  # the ONNX network has fixed spatial sizes: one patch
        {"type": "space", "id": a, "size": int(p), "scale": float(sp), "unit": "millimeter"}
        for a, p, sp in zip(axes, cfg.patch_size, cfg.target_spacing, strict=True)
    ]
    space_out = [
        {
            "type": "space",
            "id": a,
            "size": {"tensor_id": INPUT_ID, "axis_id": a},
            "scale": float(s),
            "unit": "millimeter",
        }
        for a, s in zip(axes, cfg.target_spacing, strict=True)
    ]
    classes = sorted(m.plan.labels, key=lambda k: m.plan.labels[k])
    out_names = classes[-1:] if out_channels == 1 else classes[:out_channels]
    post = (
        [{"id": "sigmoid"}, {"id": "binarize", "kwargs": {"threshold": 0.5}}]
        if out_channels == 1
        else [{"id": "softmax", "kwargs": {"axis": "channel"}}]
    )
    return {
        "type": "model",
        "format_version": ModelDescr.implemented_format_version,
        "name": f"voxseg {m.name} {m.version}",
        "description": (m.description or f"voxseg model {m.reference}")[:1000],
        "authors": [{"name": a} for a in m.authors] or [{"name": "voxseg user"}],
        "cite": [{"text": "voxseg, a Python segmentation toolkit", "url": "https://github.com/voxseg/voxseg"}],
        "license": m.license or "CC-BY-4.0",
        "documentation": {"source": "README.md", "sha256": sha256_bytes(files["README.md"])},
        "covers": [{"source": "cover.png", "sha256": sha256_bytes(files["cover.png"])}],
        "tags": ["voxseg", "segmentation", f"{nd}d", *(t.lower() for t in channel_names)],
        "inputs": [_tensor(INPUT_ID, [c.lower() for c in channel_names], space_in, files, "test_input.npy", pre)],
        "outputs": [
            _tensor(OUTPUT_ID, [c.lower().replace(" ", "_") for c in out_names], space_out, files, "test_output.npy")
            | {"postprocessing": post}
        ],
        "weights": {"onnx": {"source": "model.onnx", "sha256": sha256_bytes(files["model.onnx"]), "opset_version": 17}},
        "config": {
            "voxseg": {"bundle": m.reference, "bundle_sha256": bundle.sha256, "plan_configuration": m.configuration}
        },
    }


def _tensor(tid: str, channels: list[str], space: list, files: dict, test: str, pre: list | None = None) -> dict:
    """One input/output tensor description (batch, channel and space axes, its test tensor)."""
    out: dict[str, Any] = {
        "id": tid,
        "axes": [{"type": "batch"}, {"type": "channel", "channel_names": channels}, *space],
        "test_tensor": {"source": test, "sha256": sha256_bytes(files[test])},
        "data": {"type": "float32"},
    }
    if tid == INPUT_ID:
        out["preprocessing"] = pre or []
    return out


#: bioimageio.spec versions before this fail to write packages with pydantic 2.14 (core 0.11 pins 0.5.12)
SPEC_MIN_VERSION = (0, 5, 14)


def _require_spec() -> None:
    from importlib.metadata import PackageNotFoundError, version

    fix = "pip install 'voxseg[bioimageio]' && pip install --no-deps 'bioimageio.spec>=0.5.14'"
    try:
        found = version("bioimageio.spec")
    except PackageNotFoundError:
        raise BundleError(f"bioimage.io export needs bioimageio.spec and bioimageio.core ({fix})") from None
    numbers = tuple(int(p) for p in found.split(".")[:3] if p.isdigit())
    if numbers < SPEC_MIN_VERSION:
        raise BundleError(f"bioimageio.spec {found} cannot write packages with this pydantic; upgrade it ({fix})")


def export_bioimageio(bundle: Bundle | str | Path, out: str | Path, *, fold: int | None = None) -> Path:
    """Write ``out`` (a ``.zip``): the bundle's network as a bioimage.io model package.

    Parameters
    ----------
    bundle
        A bundle (folder, ``.zip`` or opened). Interactive models are refused (their prompt
        channels are computed from points, which the format cannot describe).
    fold
        The fold whose network is packaged (default: the first).
    """
    _require_spec()
    bundle = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
    m = bundle.manifest
    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise BundleError(f"{out}: a bioimage.io package is written as a .zip")
    if m.task == "interactive":
        raise BundleError(f"{m.reference}: interactive models cannot be exported to bioimage.io (prompts)")
    fold = m.folds[0] if fold is None else int(fold)
    if fold not in m.folds:
        raise BundleError(f"{m.reference} has folds {list(m.folds)}, not {fold}")
    if m.onnx_file(fold) in m.files:
        onnx = bundle.read(m.onnx_file(fold))
    else:
        from voxseg.bundle.onnx_export import onnx_bytes

        onnx = onnx_bytes(m, bundle.read(m.weights_file(fold)))
    cfg = m.config
    pre = bioimageio_preprocessing(m.plan.normalization, _space_axes(len(cfg.patch_size)))
    x, y = _expected(bundle, onnx, _network_input(bundle), pre)
    files = {"model.onnx": onnx, "test_input.npy": _npy(x), "test_output.npy": _npy(y), "cover.png": _cover(x, y)}
    files["README.md"] = _readme(bundle, pre, fold).encode("utf-8")
    rdf = _rdf(bundle, pre, files, y.shape[1])
    files["bioimageio.yaml"] = (json.dumps(rdf, indent=2) + "\n").encode("utf-8")  # JSON is YAML
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    log.info("wrote bioimage.io package %s (%s, fold %d)", out, m.reference, fold)
    return out
