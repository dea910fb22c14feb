"""Fingerprint: measure a dataset (spacings, shapes, crop, intensities, class sizes); numpy only.

``compute_fingerprint(dataset)`` -> :class:`Fingerprint` (``fingerprint.json``), the input of
:func:`voxseg.planning.make_plan`. See ``docs/planning.md``.
"""

from voxseg.fingerprint.compute import MAX_INTENSITY_SAMPLES, compute_fingerprint
from voxseg.fingerprint.model import (
    FINGERPRINT_SCHEMA_VERSION,
    CaseFingerprint,
    ChannelStats,
    Fingerprint,
    modality_of,
)

__all__ = [
    "compute_fingerprint",
    "Fingerprint",
    "CaseFingerprint",
    "ChannelStats",
    "modality_of",
    "FINGERPRINT_SCHEMA_VERSION",
    "MAX_INTENSITY_SAMPLES",
]
