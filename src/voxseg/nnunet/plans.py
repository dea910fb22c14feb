"""nnU-Net v2 ``plans.json`` + ``dataset.json`` -> a voxseg :class:`~voxseg.planning.Plan` (no torch).

What is translated (see docs/nnunet.md):

* ``transpose_forward``: voxseg keeps the image's own axis order. Spacing, patch size and mirror
  axes are mapped back to it, and the network spec carries ``transpose`` so the network itself
  sees nnU-Net's axis order (the tiles are the same, only addressed in the other order).
* normalization: ``ZScoreNormalization`` -> ``zscore`` (``use_mask_for_norm`` -> ``use_nonzero_mask``),
  ``CTNormalization`` -> ``ct`` with the plans' ``foreground_intensity_properties_per_channel``
  (clip to percentiles 0.5/99.5, dataset mean/std), ``RescaleTo01Normalization`` ->
  ``percentile_minmax`` at percentile 100, ``NoNormalization`` -> ``none``.
* the architecture entry -> ``nnunet_plain_unet`` / ``nnunet_resenc_unet`` (see :mod:`voxseg.nnunet.network`),
  with layer types taken from a fixed list (never imported by name).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from voxseg.errors import BundleError
from voxseg.planning import ConfigurationPlan, Normalization, Plan

__all__ = ["translate_plans", "network_kwargs", "SUPPORTED_CONFIGURATIONS"]

SUPPORTED_CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres")
ANISOTROPY_THRESHOLD = 3.0  # nnU-Net's ANISO_THRESHOLD

_ARCHITECTURES = {
    "PlainConvUNet": "nnunet_plain_unet",
    "ResidualEncoderUNet": "nnunet_resenc_unet",
}
_NORMS = {"InstanceNorm": "instance", "BatchNorm": "batch"}
_NONLINS = {"LeakyReLU": "leakyrelu", "ReLU": "relu"}


def _last(name: Any) -> str:
    return str(name).rsplit(".", 1)[-1] if name else ""


def _resolve_configuration(plans: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The configuration's entry with ``inherits_from`` applied (as nnU-Net does)."""
    confs = plans.get("configurations") or {}
    if name not in confs:
        raise BundleError(f"plans.json has no configuration {name!r} (it has {', '.join(sorted(confs)) or 'none'})")
    entry = dict(confs[name])
    seen = {name}
    while "inherits_from" in entry:
        parent = entry.pop("inherits_from")
        if parent in seen or parent not in confs:
            raise BundleError(f"plans.json: configuration {name!r} inherits from unknown {parent!r}")
        seen.add(parent)
        entry = {**confs[parent], **entry}
    return entry


def _old_style_architecture(conf: Mapping[str, Any]) -> dict[str, Any]:
    """nnU-Net < 2.4 plans (``UNet_class_name``...) -> the newer ``architecture`` entry."""
    n = len(conf["conv_kernel_sizes"])
    feats = [min(conf["UNet_base_num_features"] * 2**i, conf["unet_max_num_features"]) for i in range(n)]
    nd = len(conf["patch_size"])
    kw = {
        "n_stages": n,
        "features_per_stage": feats,
        "conv_op": f"torch.nn.modules.conv.Conv{nd}d",
        "kernel_sizes": conf["conv_kernel_sizes"],
        "strides": conf["pool_op_kernel_sizes"],
        "n_conv_per_stage": conf["n_conv_per_stage_encoder"],
        "n_conv_per_stage_decoder": conf["n_conv_per_stage_decoder"],
        "conv_bias": True,
        "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{nd}d",
        "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    if conf["UNet_class_name"] == "ResidualEncoderUNet":
        kw["n_blocks_per_stage"] = kw.pop("n_conv_per_stage")
    return {"network_class_name": conf["UNet_class_name"], "arch_kwargs": kw}


def network_kwargs(conf: Mapping[str, Any], *, in_channels: int, out_channels: int) -> tuple[str, dict[str, Any]]:
    """``(registered name, kwargs)`` of the network described by a configuration entry.

    Raises
    ------
    BundleError
        An architecture class or layer type voxseg does not know.
    """
    arch = conf.get("architecture")
    if arch is None and "UNet_class_name" in conf:
        arch = _old_style_architecture(conf)
    if not isinstance(arch, Mapping) or "network_class_name" not in arch:
        raise BundleError("plans.json: the configuration has no 'architecture' entry (not an nnU-Net v2 plan?)")
    cls = _last(arch["network_class_name"])
    if cls not in _ARCHITECTURES:
        raise BundleError(
            f"plans.json: architecture class {arch['network_class_name']!r} is not supported "
            f"(voxseg imports {', '.join(_ARCHITECTURES)})"
        )
    kw = dict(arch.get("arch_kwargs") or {})
    conv = _last(kw.pop("conv_op", ""))
    if conv not in ("Conv2d", "Conv3d"):
        raise BundleError(f"plans.json: conv_op {conv!r} is not supported (Conv2d or Conv3d)")
    norm = _last(kw.pop("norm_op", ""))
    norm_kind = next((v for k, v in _NORMS.items() if norm.startswith(k)), None)
    if norm_kind is None:
        raise BundleError(f"plans.json: norm_op {norm!r} is not supported (InstanceNorm or BatchNorm)")
    nonlin = _last(kw.pop("nonlin", ""))
    if nonlin not in _NONLINS:
        raise BundleError(f"plans.json: nonlin {nonlin!r} is not supported (LeakyReLU or ReLU)")
    if kw.pop("dropout_op", None) is not None:
        kw.pop("dropout_op_kwargs", None)  # dropout is the identity at inference
    kw.pop("dropout_op_kwargs", None)
    kw.update(
        spatial_dims=int(conv[-2]),
        in_channels=int(in_channels),
        out_channels=int(out_channels),
        norm=norm_kind,
        nonlin=_NONLINS[nonlin],
        norm_op_kwargs=dict(kw.get("norm_op_kwargs") or {}),
        nonlin_kwargs=dict(kw.get("nonlin_kwargs") or {}),
    )
    return _ARCHITECTURES[cls], kw


def _normalization(plans: Mapping[str, Any], conf: Mapping[str, Any], n_channels: int) -> list[Normalization]:
    schemes = list(conf.get("normalization_schemes") or [])
    masks = list(conf.get("use_mask_for_norm") or [False] * len(schemes))
    if len(schemes) != n_channels:
        raise BundleError(f"plans.json: {len(schemes)} normalization schemes for {n_channels} channels")
    props = plans.get("foreground_intensity_properties_per_channel") or {}
    out = []
    for c, (scheme, use_mask) in enumerate(zip(schemes, masks, strict=True)):
        if scheme == "ZScoreNormalization":
            out.append(Normalization("zscore", use_nonzero_mask=bool(use_mask)))
        elif scheme == "CTNormalization":
            p = props.get(str(c)) or props.get(c)
            if not p:
                raise BundleError(f"plans.json: CTNormalization of channel {c} without its intensity properties")
            out.append(
                Normalization(
                    "ct",
                    mean=float(p["mean"]),
                    std=max(float(p["std"]), 1e-8),
                    clip_low=float(p["percentile_00_5"]),
                    clip_high=float(p["percentile_99_5"]),
                )
            )
        elif scheme == "RescaleTo01Normalization":
            out.append(Normalization("percentile_minmax", percentile=100.0))
        elif scheme == "NoNormalization":
            out.append(Normalization("none"))
        else:
            raise BundleError(
                f"plans.json: normalization {scheme!r} of channel {c} is not supported (ZScore, CT, RescaleTo01, "
                "No normalization)"
            )
    return out


def _labels(dataset: Mapping[str, Any]) -> tuple[dict[str, int], int | None]:
    labels = dataset.get("labels")
    if not isinstance(labels, Mapping) or not labels:
        raise BundleError("dataset.json: no 'labels' mapping")
    out = {}
    for name, value in labels.items():
        if isinstance(value, (list, tuple)):
            raise BundleError(
                f"dataset.json: label {name!r} is a region {list(value)}; region-based nnU-Net models "
                "(sigmoid outputs) are not supported"
            )
        out[str(name)] = int(value)
    return out, out.get("ignore")


def _channels(dataset: Mapping[str, Any]) -> dict[int, str]:
    channels = dataset.get("channel_names") or dataset.get("modality")
    if not isinstance(channels, Mapping) or not channels:
        raise BundleError("dataset.json: no 'channel_names' mapping")
    return {int(k): str(v) for k, v in channels.items()}


def _permute(values: Sequence[Any], backward: Sequence[int]) -> list[Any]:
    """Values in nnU-Net's transposed order -> the image's own order."""
    return [values[b] for b in backward]


def _network_axes(plans: Mapping[str, Any], nd: int) -> list[int]:
    """Image axis of each network axis (``transpose_forward``; in-plane only for 2D networks)."""
    forward = [int(v) for v in plans.get("transpose_forward", [0, 1, 2])]
    backward = [int(v) for v in plans.get("transpose_backward", [0, 1, 2])]
    if sorted(forward) != [0, 1, 2] or [forward[b] for b in backward] != [0, 1, 2]:
        raise BundleError(f"plans.json: transpose_forward {forward} / transpose_backward {backward} are inconsistent")
    if nd == 3:
        return forward
    if forward[0] != 0:
        raise BundleError(
            f"plans.json: transpose_forward {forward} slices 2D models along axis {forward[0]}; voxseg runs 2D "
            "models along axis 0 only"
        )
    return [forward[1] - 1, forward[2] - 1]


def translate_plans(
    plans: Mapping[str, Any],
    dataset: Mapping[str, Any],
    configuration: str,
    *,
    mirror_axes: Sequence[int] | None = None,
) -> Plan:
    """A voxseg :class:`Plan` with one configuration (named as nnU-Net's) from nnU-Net's JSON files.

    Parameters
    ----------
    plans, dataset
        Parsed ``plans.json`` and ``dataset.json``.
    configuration
        ``2d``, ``3d_fullres`` or ``3d_lowres`` (cascade stages need a previous stage: refused).
    mirror_axes
        ``inference_allowed_mirroring_axes`` of the checkpoint, in nnU-Net's (transposed) network axes;
        None means no mirroring.
    """
    if configuration not in (plans.get("configurations") or {}):
        have = ", ".join(sorted(plans.get("configurations") or {})) or "none"
        raise BundleError(f"plans.json has no configuration {configuration!r} (it has {have})")
    conf = _resolve_configuration(plans, configuration)
    if conf.get("previous_stage") or "cascade" in configuration:
        raise BundleError(
            f"configuration {configuration!r} is a cascade stage (needs the low-resolution prediction as input); "
            "import 3d_lowres or 3d_fullres instead"
        )
    channels = _channels(dataset)
    labels, ignore = _labels(dataset)
    num_classes = len({v for v in labels.values() if v != ignore})
    patch = [int(v) for v in conf["patch_size"]]
    nd = len(patch)
    perm = _network_axes(plans, nd)
    spacing = [float(v) for v in conf["spacing"]]
    name, kwargs = network_kwargs(conf, in_channels=len(channels), out_channels=num_classes)
    axes = [int(a) for a in (mirror_axes or ())]
    back = [perm.index(k) for k in range(nd)]
    if perm != list(range(nd)):
        kwargs["transpose"] = perm
    cfg = ConfigurationPlan(
        name=configuration,
        target_spacing=_permute(spacing, back),
        patch_size=_permute(patch, back),
        batch_size=int(conf.get("batch_size", 2)),
        network={"name": name, "kwargs": kwargs},
        mirror_axes=sorted(perm[a] for a in axes),
        median_shape=_permute(conf.get("median_image_size_in_voxels") or [], back)
        if len(conf.get("median_image_size_in_voxels") or []) == nd
        else (),
    )
    median = plans.get("original_median_shape_after_transp") or []
    data_ndim = 2 if nd == 2 and len(median) == 3 and int(median[0]) == 1 else 3
    return Plan(
        dataset_name=str(dataset.get("name") or plans.get("dataset_name") or "nnunet"),
        channel_names=channels,
        labels=labels,
        normalization=tuple(_normalization(plans, conf, len(channels))),
        configurations={configuration: cfg},
        default_configuration=configuration,
        data_ndim=data_ndim,
        ignore_label=ignore,
        anisotropy_threshold=ANISOTROPY_THRESHOLD,
        seed=0,
        budget="gpu",
    )
