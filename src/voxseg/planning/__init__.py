"""Planning: pure decisions from a fingerprint (spacing, patch size, network, normalization). No torch."""

from voxseg.planning.normalization import SCHEMES, Normalization
from voxseg.planning.overrides import apply_overrides, parse_value, translate_network
from voxseg.planning.plan import PLAN_SCHEMA_VERSION, ConfigurationPlan, Plan
from voxseg.planning.planner import (
    BUDGETS,
    BudgetDefaults,
    PlannerDefaults,
    make_plan,
    plan_normalization,
    target_spacing,
)
from voxseg.planning.topology import Topology, fit_patch, pool_topology

__all__ = [
    "Normalization",
    "SCHEMES",
    "Plan",
    "ConfigurationPlan",
    "PLAN_SCHEMA_VERSION",
    "make_plan",
    "PlannerDefaults",
    "BudgetDefaults",
    "BUDGETS",
    "target_spacing",
    "plan_normalization",
    "apply_overrides",
    "parse_value",
    "translate_network",
    "Topology",
    "pool_topology",
    "fit_patch",
]
