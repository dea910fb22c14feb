"""Licence and intended use, shown where people decide: at install and at a model's first prediction
on this machine (a marker per model sha256 under the cache folder). No torch here."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from voxseg.bundle.manifest import BundleManifest

__all__ = ["terms", "terms_line", "first_use_line"]

log = logging.getLogger(__name__)

NOT_STATED = "not stated"


def terms(manifest: BundleManifest) -> dict[str, Any]:
    """``{reference, license, intended_use}`` of a bundle (JSON-ready; what pickers and listings show)."""
    return {
        "reference": manifest.reference,
        "license": manifest.license or NOT_STATED,
        "intended_use": manifest.intended_use or NOT_STATED,
    }


def terms_line(info: dict[str, Any]) -> str:
    """One line: ``NAME@VERSION: licence X; intended use: Y (voxseg bundle show NAME)``."""
    return (
        f"{info['reference']}: licence {info['license']}; intended use: {info['intended_use']} "
        f"(model card: voxseg bundle show {info['reference']})"
    )


def first_use_line(info: dict[str, Any] | None, model_sha256: str | None, cache: str | Path) -> str | None:
    """The terms line the first time the model ``model_sha256`` predicts here, else None.

    Records the first use as ``CACHE/notices/<sha256>`` (an empty file); an unwritable cache only
    means the line is shown again next time.
    """
    if not info or not model_sha256:
        return None
    marker = Path(cache) / "notices" / model_sha256
    if marker.exists():
        return None
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError as exc:
        log.debug("cannot record the first use of %s (%s)", info.get("reference"), exc)
    return terms_line(info)
