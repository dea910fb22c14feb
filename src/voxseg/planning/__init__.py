"""Planning: pure decisions from a fingerprint (spacing, patch size, network, normalization). No torch."""

from voxseg.planning.normalization import SCHEMES, Normalization
from voxseg.planning.plan import PLAN_SCHEMA_VERSION, ConfigurationPlan, Plan

__all__ = ["Normalization", "SCHEMES", "Plan", "ConfigurationPlan", "PLAN_SCHEMA_VERSION"]
