"""Postprocessing of label maps (numpy, scipy, cc3d, fastremap; never torch).

* Components, per class: :func:`remove_small_objects`, :func:`keep_largest`, :func:`fill_holes`,
  :func:`connected_components`.
* Instances: :func:`instances` (ids 1..N by size) and :func:`postprocess` (``mask -> instances``,
  objects under 150 voxels dropped: the nodule workflow's one call).
* Per-object table: :func:`object_table` and :func:`write_object_table` (CSV).
* Postprocessing as data: :class:`PostprocessingSpec` (JSON), :func:`apply_postprocessing`, the op
  registry :data:`OPS`, and :func:`choose_postprocessing` from cross-validation predictions.

See ``docs/postprocessing.md``.
"""

from voxseg.postprocessing.choose import choose_postprocessing, size_grid
from voxseg.postprocessing.components import connected_components, fill_holes, keep_largest, remove_small_objects
from voxseg.postprocessing.instances import instances, postprocess
from voxseg.postprocessing.spec import OPS, Op, PostprocessingSpec, Step, apply_postprocessing, for_plan
from voxseg.postprocessing.table import ObjectRow, object_table, table_columns, write_object_table

__all__ = [
    "connected_components",
    "remove_small_objects",
    "keep_largest",
    "fill_holes",
    "instances",
    "postprocess",
    "ObjectRow",
    "object_table",
    "write_object_table",
    "table_columns",
    "PostprocessingSpec",
    "for_plan",
    "Step",
    "Op",
    "OPS",
    "apply_postprocessing",
    "choose_postprocessing",
    "size_grid",
]
