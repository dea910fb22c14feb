"""Planning: pure decisions from a fingerprint (spacing, patch size, network, normalization)."""

from voxseg.planning.normalization import SCHEMES, Normalization

__all__ = ["Normalization", "SCHEMES"]
