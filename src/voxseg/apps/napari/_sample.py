"""Sample data: one case of each voxseg phantom (image channels + ground-truth labels).

Generated in memory from :func:`voxseg.dataset.phantoms.generate_case` (deterministic, well
under a second each); nothing is downloaded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from voxseg.apps.napari._layers import METADATA_KEY, label_dtype, volume_layer_kwargs

__all__ = ["phantom_layers", "SAMPLES"]

#: Sample key -> phantom name (one napari sample-data entry each, see napari.yaml).
SAMPLES = {
    "mouse_lung_ct": "mouse-lung-ct",
    "soft_tissue_mri": "soft-tissue-mri",
    "pet_mip": "pet-mip",
    "mouse_spinal_cord": "mouse-spinal-cord",
    "brain_swi_cmb": "brain-swi-cmb",
}
#: Phantom name -> modality (in the layers' metadata: the Segment widget offers a model of it).
MODALITIES = {
    "mouse-lung-ct": "CT",
    "soft-tissue-mri": "MRI",
    "pet-mip": "PET",
    "mouse-spinal-cord": "MRI",
    "brain-swi-cmb": "SWI",
}


def phantom_layers(name: str, *, index: int = 0, seed: int = 0) -> list[tuple[Any, dict[str, Any], str]]:
    """Layer data for case ``index`` of phantom ``name``: its image channels, then its labels."""
    from voxseg.dataset.phantoms import PHANTOMS, generate_case

    spec = PHANTOMS.get(name)
    case = generate_case(name, index, seed=seed)
    layers: list[tuple[Any, dict[str, Any], str]] = []
    for k, volume in enumerate(case.images):
        channel = spec.channel_names.get(k, f"channel {k}")
        kwargs = volume_layer_kwargs(volume, name=f"{name} {channel}")
        kwargs["metadata"][METADATA_KEY]["modality"] = MODALITIES.get(name, "")
        if channel.lower() == "mask":
            layers.append(((volume.array > 0).astype(np.uint8), {**kwargs, "opacity": 0.3}, "labels"))
            continue
        lo, hi = (float(v) for v in _window(volume.array))
        layers.append((volume.array, {**kwargs, "contrast_limits": (lo, hi), "colormap": "gray"}, "image"))
    label_kwargs = volume_layer_kwargs(case.label, name=f"{name} ground truth")
    layers.append((label_dtype(case.label.array), {**label_kwargs, "opacity": 0.5}, "labels"))
    return layers


def _window(array) -> tuple[float, float]:
    lo, hi = np.percentile(array, [0.5, 99.5])
    return (float(lo), float(hi)) if hi > lo else (float(lo), float(lo) + 1.0)


def mouse_lung_ct() -> list[tuple[Any, dict[str, Any], str]]:
    """Mouse thorax micro-CT with lung nodules."""
    return phantom_layers(SAMPLES["mouse_lung_ct"])


def soft_tissue_mri() -> list[tuple[Any, dict[str, Any], str]]:
    """Limb MRI with one soft-tissue tumour (anisotropic voxels)."""
    return phantom_layers(SAMPLES["soft_tissue_mri"])


def pet_mip() -> list[tuple[Any, dict[str, Any], str]]:
    """2D whole-body PET maximum-intensity projection."""
    return phantom_layers(SAMPLES["pet_mip"])


def mouse_spinal_cord() -> list[tuple[Any, dict[str, Any], str]]:
    """Mouse spinal cord MRI with white and grey matter."""
    return phantom_layers(SAMPLES["mouse_spinal_cord"])


def brain_swi_cmb() -> list[tuple[Any, dict[str, Any], str]]:
    """SWI head MRI with cerebral microbleeds (and a brain mask)."""
    return phantom_layers(SAMPLES["brain_swi_cmb"])
