"""Interactive segmentation building blocks: prompt simulation, point files, point encodings.

- :mod:`~voxseg.interactive.points`: simulated prompts from ground truth (extreme points,
  corrective clicks).
- :mod:`~voxseg.interactive.pointfile`: user prompts (``points.json``, napari CSV), world/voxel
  coordinates and the checks with one-line errors.
- :mod:`~voxseg.interactive.encoding`: the prompt channels (exponentialised geodesic map,
  Gaussian heat map), click channels, and cropping to the points.
- :mod:`~voxseg.interactive.config`: :class:`PromptConfig`, the ``plan.interactive`` settings.
- :mod:`~voxseg.interactive.sampling`: :class:`PromptSampler` (training pairs with fresh
  simulated points) and :func:`prompt_inputs` (crop + encode, shared with inference).
- :mod:`~voxseg.interactive.refine`: :class:`RefineSampler` (click-refinement training inputs
  from perturbed masks), :func:`perturb_mask`, :func:`simulate_clicks`.
- :mod:`~voxseg.interactive.session`: :func:`simulate_user`, the simulated user behind
  interactive evaluation (Dice after the points and after each corrective click).

numpy/scipy only: importing this package does not import torch.
"""

from voxseg.interactive.config import PromptConfig
from voxseg.interactive.encoding import (
    ENCODINGS,
    crop_to_points,
    encode_clicks,
    encode_points,
    gaussian_map,
    geodesic_map,
    seed_mask,
)
from voxseg.interactive.geodesic import geodesic_distance
from voxseg.interactive.pointfile import (
    SPACES,
    PointPrompt,
    load_points,
    points_from_preprocessed,
    points_to_preprocessed,
    points_to_voxel,
    read_points,
    validate_points,
    write_points,
)
from voxseg.interactive.points import Click, corrective_click, extreme_points, jitter_points
from voxseg.interactive.refine import RefineSampler, perturb_mask, simulate_clicks
from voxseg.interactive.sampling import PromptSampler, find_objects, prompt_inputs
from voxseg.interactive.session import InteractionCurve, mean_curve, simulate_user

__all__ = [
    "ENCODINGS",
    "SPACES",
    "Click",
    "InteractionCurve",
    "PointPrompt",
    "PromptConfig",
    "PromptSampler",
    "RefineSampler",
    "corrective_click",
    "crop_to_points",
    "encode_clicks",
    "encode_points",
    "extreme_points",
    "find_objects",
    "gaussian_map",
    "geodesic_distance",
    "geodesic_map",
    "jitter_points",
    "load_points",
    "mean_curve",
    "perturb_mask",
    "points_from_preprocessed",
    "points_to_preprocessed",
    "points_to_voxel",
    "prompt_inputs",
    "read_points",
    "seed_mask",
    "simulate_clicks",
    "simulate_user",
    "validate_points",
    "write_points",
]
